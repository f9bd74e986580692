// One execution's page: follows its status and log until it has finished, then reloads
// once so the figures (result size, duration) come from the server.
"use strict";
(() => {
  const config = document.getElementById("execution-config");
  if (!config) return;
  const badge = document.getElementById("execution-status");
  const log = document.getElementById("execution-log");
  async function poll() {
    try {
      const [execution, logs] = await Promise.all(
        [config.dataset.url, config.dataset.logUrl].map((url) =>
          fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" }).then((r) => r.json())));
      badge.className = `badge badge-lg badge-${execution.status}`;
      badge.textContent = execution.status; // a state's name, as the API says it
      if (logs.log) {
        const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
        // Stored text stays English (docs/portal.md): marked so, inside the page's language.
        log.replaceChildren(Object.assign(document.createElement("span"), { lang: "en", textContent: logs.log }));
        if (nearBottom) log.scrollTop = log.scrollHeight;
      }
      if (execution.status === "Succeeded" || execution.status === "Failed") {
        window.location.reload();
        return;
      }
    } catch (error) {
      console.warn("poll failed; retrying", error);
    }
    setTimeout(poll, 1500);
  }
  setTimeout(poll, 1500);
})();
