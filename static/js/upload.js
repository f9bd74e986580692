// The model upload form: hints that follow the chosen operation, size checks before
// sending, and an XMLHttpRequest upload with a progress bar. Without JavaScript the form
// posts normally and the server shows the same errors next to the fields.
"use strict";
(() => {
  const form = document.getElementById("upload-form");
  if (!form) return;
  const maxFile = Number(form.dataset.maxFileBytes);
  const maxTotal = Number(form.dataset.maxTotalBytes);
  const submit = document.getElementById("upload-submit");
  const progress = document.getElementById("upload-progress");
  const bar = progress.querySelector(".progress-bar");
  const summary = document.getElementById("form-summary");
  const inputType = form.elements.input_type;
  const sample = form.elements.sample;

  const size = (bytes) => {
    const units = [["GB", 1 << 30], ["MB", 1 << 20], ["KB", 1 << 10]];
    for (const [unit, scale] of units) if (bytes >= scale) return `${(bytes / scale).toFixed(1)} ${unit}`;
    return `${bytes} bytes`;
  };
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
    inputType.options[0].textContent = op === "Sync" ? "Default: json" : "Default: csv";
  }
  for (const radio of form.querySelectorAll("input[name=operation]")) radio.addEventListener("change", applyOperation);
  applyOperation();

  // --- Errors next to the fields --------------------------------------------------
  function clearErrors() {
    summary.replaceChildren();
    for (const box of form.querySelectorAll(".field-errors")) box.replaceChildren();
    for (const el of form.querySelectorAll(".has-error")) el.classList.remove("has-error");
    for (const el of form.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }

  function fieldError(name, messages) {
    const box = document.getElementById(`id_${name}_error`);
    if (!box) return false;
    for (const message of messages) {
      const p = document.createElement("p");
      p.className = "error";
      p.textContent = message;
      box.append(p);
    }
    const wrapper = form.querySelector(`[data-field="${name}"]`);
    if (wrapper) wrapper.classList.add("has-error");
    for (const input of form.querySelectorAll(`[name="${name}"]`)) {
      input.setAttribute("aria-invalid", "true");
      const described = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
      described.add(box.id);
      input.setAttribute("aria-describedby", [...described].join(" "));
    }
    return true;
  }

  function showErrors(errors, general) {
    clearErrors();
    const loose = [...(general || [])];
    let count = 0;
    for (const [name, messages] of Object.entries(errors)) {
      if (name !== "__all__" && fieldError(name, messages)) count += 1;
      else loose.push(...messages);
    }
    const box = document.createElement("div");
    box.className = "msg msg-error";
    box.id = "form-errors";
    box.setAttribute("role", "alert");
    for (const message of loose) {
      const p = document.createElement("p");
      p.textContent = message;
      box.append(p);
    }
    if (count) {
      const p = document.createElement("p");
      p.textContent = `Please correct the ${count} field${count === 1 ? "" : "s"} marked below.`;
      box.append(p);
    }
    summary.append(box);
    const first = form.querySelector("[aria-invalid=true]");
    if (first) first.focus({ preventScroll: true });
    summary.scrollIntoView({ behavior: "smooth", block: "center" });
  }

  // --- Size checks before sending -------------------------------------------------
  const totalLabel = document.getElementById("upload-total");
  function checkSizes() {
    const errors = {};
    let total = 0;
    for (const input of form.querySelectorAll("input[type=file]")) {
      for (const file of input.files) {
        total += file.size;
        if (file.size > maxFile) {
          (errors[input.name] ||= []).push(`'${file.name}' is ${size(file.size)}; each file is limited to ${size(maxFile)}.`);
        }
      }
    }
    if (total > maxTotal) errors.__all__ = [`The files add up to ${size(total)}; an upload is limited to ${size(maxTotal)}.`];
    totalLabel.textContent = total ? `${size(total)} to upload` : "";
    return { errors, total };
  }
  form.addEventListener("change", (event) => { if (event.target.type === "file") checkSizes(); });

  // --- Upload with progress ---------------------------------------------------------
  form.addEventListener("submit", (event) => {
    if (!window.FormData || !window.XMLHttpRequest) return; // plain post
    event.preventDefault();
    const { errors, total } = checkSizes();
    if (Object.keys(errors).length) return showErrors(errors);
    clearErrors();
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.responseType = "json";
    progress.hidden = false;
    submit.disabled = true;
    submit.textContent = "Uploading…";
    const setProgress = (loaded, all) => {
      const percent = all ? Math.round((loaded / all) * 100) : 0;
      bar.firstElementChild.style.width = `${percent}%`;
      bar.setAttribute("aria-valuenow", String(percent));
      document.getElementById("progress-bytes").textContent = all ? `${size(loaded)} of ${size(all)} · ${percent}%` : "";
    };
    setProgress(0, total);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) setProgress(e.loaded, e.total); });
    xhr.upload.addEventListener("load", () => {
      document.getElementById("progress-label").textContent = "Uploaded. Checking the files…";
    });
    const done = () => {
      submit.disabled = false;
      submit.textContent = "Upload and build";
      progress.hidden = true;
    };
    xhr.addEventListener("load", () => {
      const body = xhr.response || {};
      if (xhr.status === 201 && body.redirect) {
        document.getElementById("progress-label").textContent = "Uploaded. Opening the model…";
        window.location.assign(body.redirect);
        return;
      }
      done();
      if (xhr.status === 400 && body.errors) showErrors(body.errors);
      else if (xhr.status === 413) showErrors({}, ["The upload is larger than the server accepts."]);
      else if (xhr.status === 403) showErrors({}, ["The server refused the upload (your session may have expired): reload the page and log in again."]);
      else showErrors({}, [`The server answered ${xhr.status}. Try again; if it persists, tell your admin.`]);
    });
    xhr.addEventListener("error", () => {
      done();
      showErrors({}, ["The connection was lost during the upload. Check your network and send it again: your files are still selected."]);
    });
    xhr.send(new FormData(form));
  });
})();
