// The upload forms' one way to send: size checks before sending, an XMLHttpRequest
// upload with a progress bar, and every error (the size checks' or the server's) shown at
// its field. Used by the model upload page (upload.js) and the training run page
// (training.js), and by the forms marked data-upload-form; the form ends with
// templates/portal/_upload_actions.html. Progressive
// enhancement: without JavaScript the form posts normally and the server shows the same
// errors next to the fields.
"use strict";

const fileSize = (bytes) => {
  for (const [unit, scale] of [["GB", 2 ** 30], ["MB", 2 ** 20], ["KB", 2 ** 10]]) {
    if (bytes >= scale) return `${formatNumber(bytes / scale, 1)} ${unit}`;
  }
  return interpolate(ngettext("%s byte", "%s bytes", bytes), [bytes]);
};

// Enhances `form`; answers { checkSizes } for pages whose other inputs change what is sent.
// A form that needs no options says so in its markup instead: <form data-upload-form
// data-opening="…"> (the monitoring registration, a run's promotion).
//   opening: the progress label once the server has accepted the upload (required).
//   sentInputs(): the inputs whose files are sent (default: every file input).
//   body(): the FormData to send (default: the whole form).
//   reveal: a selector of hidden sections to show when a field inside has an error.
function uploadForm(form, { opening, sentInputs, body, reveal } = {}) {
  const maxFile = Number(form.dataset.maxFileBytes);
  const maxTotal = Number(form.dataset.maxTotalBytes);
  const summary = form.querySelector("#form-summary");
  const idPrefix = form.dataset.idPrefix || "id_"; // of the fields' ids, so of their error boxes
  const progress = form.querySelector(".progress");
  const bar = progress.querySelector(".progress-bar");
  const progressLabel = progress.querySelector(".progress-label");
  const progressBytes = progress.querySelector(".progress-bytes");
  const submit = form.querySelector("button[type=submit]");
  const submitLabel = submit.textContent;
  const totalLabel = form.querySelector(".upload-total");
  const paragraph = (textContent, props = {}) => Object.assign(document.createElement("p"), { textContent, ...props });

  function clearErrors() {
    summary.replaceChildren();
    for (const box of form.querySelectorAll(".field-errors")) box.replaceChildren();
    for (const node of form.querySelectorAll(".has-error")) node.classList.remove("has-error");
    for (const node of form.querySelectorAll("[aria-invalid]")) node.removeAttribute("aria-invalid");
  }

  function fieldError(name, messages) {
    const box = document.getElementById(`${idPrefix}${name}_error`);
    if (!box) return false;
    for (const message of messages) box.append(paragraph(message, { className: "error" }));
    const wrapper = form.querySelector(`[data-field="${name}"]`);
    if (wrapper) wrapper.classList.add("has-error");
    for (const input of form.querySelectorAll(`[name="${name}"]`)) {
      input.setAttribute("aria-invalid", "true");
      const described = new Set((input.getAttribute("aria-describedby") || "").split(" ").filter(Boolean));
      described.add(box.id);
      input.setAttribute("aria-describedby", [...described].join(" "));
    }
    const section = reveal && box.closest(reveal);
    if (section) section.hidden = false;
    return true;
  }

  function showErrors(errors, general = []) {
    clearErrors();
    const loose = [...general];
    let count = 0;
    for (const [name, messages] of Object.entries(errors)) {
      if (name !== "__all__" && fieldError(name, messages)) count += 1;
      else loose.push(...messages);
    }
    const box = Object.assign(document.createElement("div"), { className: "msg msg-error", id: "form-errors" });
    box.setAttribute("role", "alert");
    for (const message of loose) box.append(paragraph(message));
    if (count) box.append(paragraph(interpolate(ngettext("Please correct the field marked below.", "Please correct the %s fields marked below.", count), [count])));
    summary.append(box);
    const first = form.querySelector("[aria-invalid=true]");
    if (first && !first.closest("[hidden]")) first.focus({ preventScroll: true });
    summary.scrollIntoView({ behavior: "smooth", block: "center" });
  }

  function checkSizes() {
    const errors = {};
    let total = 0;
    for (const input of sentInputs ? sentInputs() : form.querySelectorAll("input[type=file]")) {
      for (const file of input.files || []) {
        total += file.size;
        if (file.size > maxFile) {
          (errors[input.name] ||= []).push(interpolate(gettext("'%(name)s' is %(size)s; each file is limited to %(limit)s."), { name: file.name, size: fileSize(file.size), limit: fileSize(maxFile) }, true));
        }
      }
    }
    if (total > maxTotal) errors.__all__ = [interpolate(gettext("The files add up to %(size)s; an upload is limited to %(limit)s."), { size: fileSize(total), limit: fileSize(maxTotal) }, true)];
    totalLabel.textContent = total ? interpolate(gettext("%s to upload"), [fileSize(total)]) : "";
    return { errors, total };
  }
  form.addEventListener("change", (event) => { if (event.target.type === "file") checkSizes(); });

  form.addEventListener("submit", (event) => {
    if (!window.FormData || !window.XMLHttpRequest) return; // a plain post
    event.preventDefault();
    const { errors, total } = checkSizes();
    if (Object.keys(errors).length) { showErrors(errors); return; }
    clearErrors();
    const data = body ? body() : new FormData(form);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", form.action || window.location.href);
    xhr.setRequestHeader("X-Requested-With", "XMLHttpRequest");
    xhr.responseType = "json";
    progress.hidden = false;
    submit.disabled = true;
    submit.textContent = gettext("Uploading…");
    const setProgress = (loaded, all) => {
      const percent = all ? Math.round((loaded / all) * 100) : 0;
      bar.firstElementChild.style.width = `${percent}%`;
      bar.setAttribute("aria-valuenow", String(percent));
      progressBytes.textContent = all ? `${interpolate(gettext("%(loaded)s of %(total)s"), { loaded: fileSize(loaded), total: fileSize(all) }, true)} · ${percent}%` : "";
    };
    setProgress(0, total);
    xhr.upload.addEventListener("progress", (e) => { if (e.lengthComputable) setProgress(e.loaded, e.total); });
    xhr.upload.addEventListener("load", () => { progressLabel.textContent = gettext("Uploaded. Checking the files…"); });
    const done = () => {
      submit.disabled = false;
      submit.textContent = submitLabel;
      progress.hidden = true;
    };
    xhr.addEventListener("load", () => {
      const answer = xhr.response || {};
      if (xhr.status === 201 && answer.redirect) {
        progressLabel.textContent = opening;
        window.location.assign(answer.redirect);
        return;
      }
      done();
      if ((xhr.status === 400 || xhr.status === 409 || xhr.status === 507) && answer.errors) showErrors(answer.errors);
      else if (xhr.status === 413) showErrors({}, [gettext("The upload is larger than the server accepts.")]);
      else if (xhr.status === 507) showErrors({}, [gettext("The server's disk is full: nothing was saved.")]);
      else if (xhr.status === 403) showErrors({}, [gettext("The server refused the upload (your session may have expired): reload the page and log in again.")]);
      else showErrors({}, [interpolate(gettext("The server answered %s. Try again; if it persists, tell your admin."), [xhr.status])]);
    });
    xhr.addEventListener("error", () => {
      done();
      showErrors({}, [gettext("The connection was lost during the upload. Check your network and send it again: your files are still selected.")]);
    });
    xhr.send(data);
  });

  return { checkSizes };
}

for (const form of document.querySelectorAll("form[data-upload-form]")) uploadForm(form, { opening: form.dataset.opening });
