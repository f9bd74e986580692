// The model page's versions (templates/models_app/_versions.html): while a version is
// queued or building, one loop polls its status and build log (the API's
// /versions/<n>/status?include=log, with the session) and shows the log's last line on
// its row. When a version's status changes, the section is swapped for the server's
// rendering (no second copy of the rows here); when that moves the live version, the
// "Version N live" marker follows and model.js is told ("model:live-changed") so that the
// status, build log and details become the new live version's. No reload. A status
// change is announced in one short line (common.js announce(): "Version 2: Deployed"), as
// the section, replaced whole, is no live region.
"use strict";
(() => {
  const IN_PROGRESS = ["Ready", "Building"];
  const POLL_MS = 1500;
  const $ = (id) => document.getElementById(id);
  if (!$("versions")) return;

  async function getJSON(url) {
    const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  const followed = () => [...$("versions").querySelectorAll("tr[data-status-url]")];

  async function refreshSection() {
    const response = await fetch(window.location.href, { credentials: "same-origin", headers: { Accept: "text/html" } });
    if (!response.ok) throw new Error(`the page answered ${response.status}`);
    const fresh = new DOMParser().parseFromString(await response.text(), "text/html");
    const section = fresh.getElementById("versions");
    if (!section) return;
    const liveBefore = $("versions").dataset.live;
    $("versions").replaceWith(document.importNode(section, true));
    const marker = fresh.getElementById("live-version");
    if (marker && $("live-version")) $("live-version").replaceWith(document.importNode(marker, true));
    if (section.dataset.live !== liveBefore) {
      document.dispatchEvent(new CustomEvent("model:live-changed", { detail: { version: Number(section.dataset.live) } }));
    }
  }

  async function poll() {
    let changed = false;
    const news = [];
    for (const row of followed()) {
      try {
        const current = await getJSON(`${row.dataset.statusUrl}?include=log`);
        const lines = current.build && current.build.log ? current.build.log.trimEnd().split("\n") : [];
        const last = row.querySelector(".version-log");
        if (last) last.textContent = lines.length ? lines[lines.length - 1] : "";
        if (current.status !== row.dataset.status) {
          changed = true;
          // The state's name as the API writes it (docs/portal.md).
          news.push(interpolate(gettext("Version %(number)s: %(status)s"), { number: row.dataset.version, status: current.status }, true));
        }
      } catch (error) {
        console.warn("version status poll failed; retrying", error); // a network blip or a restarting server
      }
    }
    if (changed) {
      try {
        await refreshSection();
      } catch (error) {
        console.warn("could not refresh the versions", error);
      }
      announce(news.join("; "));
    }
    if (followed().length) setTimeout(poll, POLL_MS);
  }
  if (followed().length) setTimeout(poll, 1000);
})();
