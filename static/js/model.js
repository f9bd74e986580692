// The model page: live status and build log while a build runs, "try it" for Sync
// models, input uploads and a live executions list for Async models, warm runners.
// Everything is read from the REST API with the session; "try it" and uploads go to the
// run URL's session twin (<run URL>/try: the member's session and CSRF token, no group token).
"use strict";
(() => {
  const config = JSON.parse(document.getElementById("model-config").textContent);
  const IN_PROGRESS = ["Ready", "Building"];
  const FINISHED_EXECUTION = ["Succeeded", "Failed"];
  const LOG_TAIL_LINES = 400;
  let status = config.status;

  // --- helpers -------------------------------------------------------------------------
  const $ = (id) => document.getElementById(id);
  const el = (tag, props = {}, ...children) => {
    const node = Object.assign(document.createElement(tag), props);
    node.append(...children.filter((c) => c !== null && c !== undefined));
    return node;
  };
  // "Ready" (build queued) read as "done": the portal says "Queued", the API keeps "Ready".
  const statusLabel = (value) => (value === "Ready" ? "Queued" : value); // state names stay English
  const tryUrl = `${config.runUrl}/try`; // portal.run_api.try_model
  const csrfToken = () => document.querySelector("input[name=csrfmiddlewaretoken]").value;
  const badge = (value) => el("span", { className: `badge badge-${value}`, textContent: statusLabel(value) });
  const size = (bytes) => {
    for (const [unit, scale] of [["GB", 2 ** 30], ["MB", 2 ** 20], ["KB", 2 ** 10]]) {
      if (bytes >= scale) return `${formatNumber(bytes / scale, 1)} ${unit}`;
    }
    return interpolate(ngettext("%s byte", "%s bytes", bytes), [bytes]);
  };
  const ago = (iso) => {
    const seconds = (Date.now() - Date.parse(iso)) / 1000;
    if (seconds < 45) return gettext("just now");
    if (seconds < 3600) return interpolate(gettext("%s min ago"), [Math.round(seconds / 60)]);
    if (seconds < 86400) return interpolate(gettext("%s h ago"), [Math.round(seconds / 3600)]);
    return formatTime(iso); // common.js: in the page's zone, named
  };
  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  // --- status and build log ---------------------------------------------------------------
  const statusBadge = $("model-status");
  const statusMessage = $("status-message");
  const logBox = $("build-log");
  const buildMeta = $("build-meta");
  const messageClass = { Failed: "msg-error", Deployed: "msg-success", Ready: "msg-info", Building: "msg-info" };

  function setStatus(next, text) {
    statusBadge.className = `badge badge-lg badge-${next}`;
    statusBadge.textContent = statusLabel(next);
    statusMessage.className = `msg ${messageClass[next] || "msg-warning"}`;
    statusMessage.textContent = text || "";
    statusMessage.hidden = !text || next === "Deployed";
    for (const node of document.querySelectorAll("[data-show-when]")) {
      node.hidden = !node.dataset.showWhen.split(" ").includes(next);
    }
    if (next !== status) {
      status = next;
      document.title = document.title.replace(/^(\(\w+\) )?/, IN_PROGRESS.includes(next) ? `(${statusLabel(next)}) ` : "");
      if (next === "Deployed") refreshRunners();
    }
  }

  function showLog(build) {
    const nearBottom = logBox.scrollHeight - logBox.scrollTop - logBox.clientHeight < 60;
    const lines = build.log.split("\n");
    const skipped = lines.length > LOG_TAIL_LINES ? `${interpolate(gettext("… %s earlier lines …"), [lines.length - LOG_TAIL_LINES])}\n` : null;
    // The log is stored English (docs/portal.md): marked so; what the page adds is in its language.
    const english = (text) => el("span", { lang: "en", textContent: text });
    if (build.log) logBox.replaceChildren(...(skipped ? [skipped, english(lines.slice(-LOG_TAIL_LINES).join("\n"))] : [english(build.log)]));
    else logBox.replaceChildren(el("span", { className: "log-empty", textContent: gettext("Waiting for a worker to start the build…") }));
    buildMeta.textContent = `${interpolate(gettext("Build %s"), [build.number])} · ${build.status}`;
    if (nearBottom) logBox.scrollTop = logBox.scrollHeight;
  }

  // Parts of the page rendered by the server that a build or a call changes (deploy time,
  // history, call counts) are swapped for fresh ones, without reloading the page.
  async function refreshRegions() {
    try {
      const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
      if (!response.ok) return;
      const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
      for (const node of document.querySelectorAll("[data-refresh]")) {
        const replacement = fresh.getElementById(node.id);
        if (replacement) node.replaceWith(document.importNode(replacement, true));
      }
    } catch (error) {
      console.warn("could not refresh the page's details", error);
    }
  }

  async function pollBuild() {
    try {
      // One answer holds the status and the log, read together by the server: the badge
      // never says Deployed while the log still lacks its last lines (two requests could).
      const current = await getJSON(`${config.statusUrl}?include=log`);
      if (current.build) showLog(current.build);
      setStatus(current.status, current.status_message);
    } catch (error) {
      console.warn("status poll failed; retrying", error); // a network blip or a restarting server
    }
    if (IN_PROGRESS.includes(status)) {
      setTimeout(pollBuild, 1500);
      return;
    }
    $("log-follow-note").hidden = true;
    for (const flash of document.querySelectorAll(".messages-region, .messages")) flash.remove(); // "is being built" is over
    refreshRegions();
  }
  logBox.scrollTop = logBox.scrollHeight;
  if (IN_PROGRESS.includes(status)) setTimeout(pollBuild, 1000);
  // Another version went live (versions.js): the status, build log and details shown are
  // the live version's, so read them again. A build in progress is followed already.
  document.addEventListener("model:live-changed", () => { if (!IN_PROGRESS.includes(status)) pollBuild(); });

  // --- warm runners (Sync) ------------------------------------------------------------------
  async function refreshRunners() {
    const box = $("runners");
    if (!box || !config.runnersUrl) return;
    if (status !== "Deployed") {
      box.replaceChildren(el("p", { className: "muted small", textContent: gettext("None: the model is not deployed.") }));
      return;
    }
    let runners;
    try {
      runners = (await getJSON(config.runnersUrl)).runners.filter((r) => r.alive);
    } catch {
      box.replaceChildren(el("p", { className: "muted small", textContent: gettext("The model host did not answer.") }));
      return;
    }
    if (!runners.length) {
      box.replaceChildren(el("p", { className: "muted small", textContent: gettext("None warm: the next call starts one.") }));
      return;
    }
    const item = (r) => el("li", {},
      el("strong", { textContent: interpolate(gettext("Replica %s"), [r.replica]) }), " ",
      el("span", { className: "muted", textContent: [
        `pid ${r.pid}`,
        size(r.memory_bytes),
        interpolate(ngettext("%s request", "%s requests", r.requests), [r.requests]),
        interpolate(gettext("used %s"), [r.last_used ? ago(new Date(r.last_used * 1000).toISOString()) : gettext("never")]),
      ].join(" · ") }));
    box.replaceChildren(el("ul", { className: "list-plain small runner-list" }, ...runners.map(item)));
  }
  if (config.runnersUrl) {
    refreshRunners();
    setInterval(() => { if (!document.hidden && status === "Deployed") refreshRunners(); }, 10000);
  }

  // --- Try it (Sync) -------------------------------------------------------------------------
  const tryForm = $("try-form");
  // A block that may scroll is reached with the keyboard, and named.
  const scrollable = (node, label) => {
    node.tabIndex = 0;
    node.setAttribute("aria-label", label);
    return node;
  };
  if (tryForm) {
    const submit = $("try-submit");
    const result = $("try-result");
    submit.disabled = false;
    const show = (ok, head, ...blocks) => {
      result.hidden = false;
      result.className = `result ${ok ? "result-ok" : "result-error"}`;
      result.replaceChildren(el("div", { className: "result-head" }, ...head), ...blocks.filter(Boolean));
    };
    tryForm.addEventListener("submit", async (event) => {
      event.preventDefault();
      const body = $("try-body").value;
      try {
        JSON.parse(body);
      } catch (error) {
        show(false, [el("span", { textContent: gettext("The request body is not valid JSON") })], el("p", { className: "error", lang: "en", textContent: error.message }));
        announce(gettext("The request body is not valid JSON"));
        $("try-body").focus();
        return;
      }
      submit.disabled = true;
      submit.textContent = gettext("Sending…");
      const started = performance.now();
      let response;
      let text;
      try {
        response = await fetch(tryUrl, {
          method: "POST",
          headers: { "X-CSRFToken": csrfToken(), "Content-Type": "application/json", Accept: "application/json" },
          body,
          credentials: "same-origin", // the member's session authorises the call
          redirect: "manual", // a lost session answers a redirect to the login page
          cache: "no-store",
        });
        text = await response.text();
      } catch (error) {
        show(false, [el("span", { textContent: gettext("The request did not reach the server.") })], el("p", { lang: "en", textContent: String(error) }));
        announce(gettext("The request did not reach the server."));
        return;
      } finally {
        submit.disabled = false;
        submit.textContent = gettext("Send request");
      }
      if (response.type === "opaqueredirect") {
        show(false, [el("span", { textContent: gettext("Your session ended: log in again to try the model.") })]);
        announce(gettext("Your session ended: log in again to try the model."));
        return;
      }
      const ms = Math.round(performance.now() - started);
      let data = null;
      try { data = JSON.parse(text); } catch { /* not JSON: shown as text */ }
      const code = el("span", { className: `status-code ${response.ok ? "status-ok" : "status-bad"}`, textContent: `${response.status}` });
      const took = el("span", { className: "muted small", textContent: `${ms} ms` });
      if (response.ok) {
        show(true, [el("span", { textContent: gettext("Answer") }), code, took],
          scrollable(el("pre", { id: "try-answer", textContent: data === null ? text : JSON.stringify(data, null, 2) }), gettext("Answer")));
        announce(interpolate(gettext("Answer received: status %(code)s, %(ms)s ms."), { code: response.status, ms }, true));
        if (config.runnersUrl) refreshRunners();
        setTimeout(refreshRegions, 1200); // the call is recorded within a second
        return;
      }
      const detail = (data && data.detail) || text || response.statusText;
      const hint = { 403: gettext("Your session or its CSRF token expired: reload the page."), 404: gettext("You are no longer a member of this model's group.") }[response.status];
      const traceback = data && data.model_error && data.model_error.traceback;
      const headline = response.status === 422 ? gettext("The model raised an error") : apiProblem(data && data.code) || gettext("Error");
      show(false, [el("span", { id: "try-problem", textContent: headline }), code, took],
        el("p", { id: "try-error", className: "error", lang: "en", textContent: detail }),
        hint ? el("p", { className: "muted small", textContent: hint }) : null,
        traceback ? scrollable(el("pre", { className: "log", id: "try-traceback" }, el("span", { lang: "en", textContent: traceback })), gettext("Model traceback")) : null);
      // One line for screen readers (the problem and the status code), not the whole answer.
      announce(`${headline} (${response.status})`);
    });
  }

  // --- Executions (Async) ----------------------------------------------------------------------
  const executionsBody = $("executions-body");
  function executionRow(execution) {
    const page = config.executionPage.replace(/0\/$/, `${execution.execution_id}/`);
    const input = execution.input_url
      ? el("a", { href: execution.input_url, download: "", textContent: execution.input_file })
      : document.createTextNode(execution.input_file);
    let result;
    if (execution.result_url) {
      result = el("a", { className: "btn btn-small", href: execution.result_url, download: "", textContent: gettext("Download result") });
    } else if (execution.status === "Failed") {
      result = el("span", { className: "error small", lang: "en", title: execution.error_message, textContent: execution.error_message.slice(0, 70) });
    } else {
      result = el("span", { className: "muted", textContent: execution.files_available ? "—" : gettext("files removed") });
    }
    return el("tr", {},
      el("td", { className: "name-cell" }, el("a", { href: page, textContent: `#${execution.execution_id}` })),
      el("td", {}, badge(execution.status)),
      el("td", {}, input, el("span", { className: "sub", textContent: size(execution.input_size) })),
      el("td", { className: "nowrap" },
        el("time", { dateTime: execution.requested_at, title: formatTime(execution.requested_at), textContent: ago(execution.requested_at) }),
        execution.requested_by ? el("span", { className: "sub", textContent: execution.requested_by }) : null),
      el("td", { className: "num", textContent: execution.duration === null ? "—" : `${formatNumber(execution.duration, 1)} s` }),
      el("td", {}, result));
  }
  async function refreshExecutions() {
    const data = await getJSON(config.executionsUrl);
    // An execution whose status changed since the last look is announced, one short line
    // (the table itself is not a live region: it is replaced on every poll).
    const before = new Map([...executionsBody.querySelectorAll("tr[data-execution]")].map((row) => [row.dataset.execution, row.dataset.status]));
    const changed = data.results.filter((execution) => {
      const was = before.get(String(execution.execution_id));
      return was !== undefined && was !== execution.status;
    });
    if (changed.length) {
      // State names stay English (docs/portal.md).
      announce(changed.map((execution) => interpolate(gettext("Execution %(number)s: %(status)s"), { number: execution.execution_id, status: execution.status }, true)).join("; "));
    }
    if (data.results.length) {
      executionsBody.replaceChildren(...data.results.map((execution) => {
        const row = executionRow(execution);
        row.dataset.execution = execution.execution_id;
        row.dataset.status = execution.status;
        return row;
      }));
    }
    $("execution-count").textContent = data.count > data.results.length
      ? interpolate(gettext("%(count)s in all, latest %(shown)s shown"), { count: formatNumber(data.count), shown: data.results.length }, true)
      : interpolate(gettext("%s in all"), [formatNumber(data.count)]);
    return data.results.some((execution) => !FINISHED_EXECUTION.includes(execution.status));
  }
  let executionTimer;
  async function pollExecutions() {
    clearTimeout(executionTimer);
    let active = false;
    try { active = await refreshExecutions(); } catch (error) { console.warn(error); }
    executionTimer = setTimeout(pollExecutions, active ? 1500 : 15000);
  }
  if (executionsBody) {
    const active = [...executionsBody.querySelectorAll("tr[data-status]")].some((row) => !FINISHED_EXECUTION.includes(row.dataset.status));
    executionTimer = setTimeout(pollExecutions, active ? 1500 : 15000);
  }

  const executionForm = $("execution-form");
  if (executionForm) {
    const submit = $("execution-submit");
    const fileInput = $("execution-file");
    const outcome = $("execution-result");
    const progress = $("execution-progress");
    const bar = progress.querySelector(".progress-bar");
    submit.disabled = false;
    const say = (kind, ...children) => outcome.replaceChildren(el("div", { className: `msg msg-${kind}` }, ...children));
    executionForm.addEventListener("submit", (event) => {
      event.preventDefault();
      const file = fileInput.files[0];
      if (!file) { say("error", gettext("Choose the input file to score.")); fileInput.focus(); return; }
      if (file.size > Number(executionForm.dataset.maxBytes)) { say("error", interpolate(gettext("'%(name)s' is %(size)s: over the limit."), { name: file.name, size: size(file.size) }, true)); return; }
      const body = new FormData();
      body.append("file", file, file.name);
      const xhr = new XMLHttpRequest();
      xhr.open("POST", tryUrl);
      xhr.setRequestHeader("X-CSRFToken", csrfToken());
      xhr.setRequestHeader("Accept", "application/json");
      xhr.responseType = "json";
      progress.hidden = false;
      submit.disabled = true;
      outcome.replaceChildren();
      xhr.upload.addEventListener("progress", (e) => {
        if (!e.lengthComputable) return;
        const percent = Math.round((e.loaded / e.total) * 100);
        bar.firstElementChild.style.width = `${percent}%`;
        bar.setAttribute("aria-valuenow", String(percent));
        progress.querySelector(".progress-bytes").textContent = interpolate(gettext("%(loaded)s of %(total)s"), { loaded: size(e.loaded), total: size(e.total) }, true);
      });
      const finish = () => { progress.hidden = true; submit.disabled = false; };
      xhr.addEventListener("load", () => {
        finish();
        const data = xhr.response || {};
        if (xhr.status === 202) {
          const page = config.executionPage.replace(/0\/$/, `${data.execution_id}/`);
          say("success", el("span", { id: "execution-started", textContent: interpolate(gettext("Execution %s started."), [data.execution_id]) }), " ",
            el("a", { href: page, textContent: gettext("Follow it") }));
          fileInput.value = "";
          pollExecutions();
        } else {
          const headline = apiProblem(data.code) || interpolate(gettext("The server answered %s."), [xhr.status]);
          say("error", el("strong", { id: "execution-problem", textContent: headline }), " ", data.detail ? el("span", { lang: "en", textContent: data.detail }) : "");
        }
      });
      xhr.addEventListener("error", () => { finish(); say("error", gettext("The connection was lost during the upload; send it again.")); });
      xhr.send(body);
    });
  }
})();
