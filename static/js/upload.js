// The model upload form: hints that follow the chosen operation; size checks, the upload
// with a progress bar and errors at the fields are upload_form.js's. Without JavaScript
// the form posts normally and the server shows the same errors next to the fields.
"use strict";
(() => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const inputType = form.elements.input_type;
  const sample = form.elements.sample;

  const operation = () => (form.querySelector("input[name=operation]:checked") || {}).value || "Sync";

  // --- Hints that follow the operation --------------------------------------------
  function applyOperation() {
    const op = operation();
    for (const el of form.querySelectorAll("[data-operation]")) el.hidden = el.dataset.operation !== op;
    for (const option of inputType.options) {
      // Sync models take JSON only; Async ones take csv, parquet or json files.
      option.disabled = op === "Sync" && option.value !== "" && option.value !== "json";
    }
    if (inputType.selectedOptions[0] && inputType.selectedOptions[0].disabled) inputType.value = "";
    if (op === "Sync" && sample.value) sample.value = ""; // a sample is refused for Sync models
    inputType.options[0].textContent = op === "Sync" ? gettext("Default: json") : gettext("Default: csv");
  }
  for (const radio of form.querySelectorAll("input[name=operation]")) radio.addEventListener("change", applyOperation);
  applyOperation();

  uploadForm(form, { opening: gettext("Uploaded. Opening the model…") });
})();
