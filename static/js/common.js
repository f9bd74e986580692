// Behaviour shared by every page, all progressive enhancement: without JavaScript the
// pages still work (forms post, every tab panel is shown, confirmations are pages).
"use strict";

// --- Translations: gettext(), ngettext() and interpolate() come from the catalog the page
//     loads first (/jsi18n/, portal.i18n_views); without it, the English text stands.
if (typeof window.gettext !== "function") {
  window.gettext = (text) => text;
  window.ngettext = (one, many, count) => (count === 1 ? one : many);
  window.interpolate = (format, values, named) =>
    named ? format.replace(/%\(\w+\)s/g, (m) => String(values[m.slice(2, -2)])) : format.replace(/%s/g, () => String(values.shift()));
}

// --- The browser's time zone, for the server: pages show times in it unless the user chose
//     another on their account page (portal/i18n.py checks the name before using it).
(() => {
  const zone = Intl.DateTimeFormat().resolvedOptions().timeZone;
  // IANA names ("America/Sao_Paulo") are cookie-safe as they are: written unencoded.
  if (!zone || !/^[A-Za-z0-9_\/+-]+$/.test(zone)) return;
  if (document.cookie.split("; ").includes(`neomaril_tz=${zone}`)) return;
  document.cookie = `neomaril_tz=${zone}; path=/; max-age=31536000; SameSite=Lax`;
})();

// --- Times as the server writes them (groups/templatetags/portal_ui.py's `when`): in the
//     page's zone (<html data-time-zone>), in its language, with the zone named.
//     formatTime("2026-12-02T17:05:00Z") -> "2 Dec 2026 14:05 UTC-03" / "02/12/2026 14:05 UTC-03".
function zoneLabel(date, timeZone) {
  const part = new Intl.DateTimeFormat("en-US", { timeZone, timeZoneName: "shortOffset" })
    .formatToParts(date).find((item) => item.type === "timeZoneName");
  const offset = part ? part.value : "";
  const match = /^GMT([+-])(\d{1,2})(?::(\d\d))?$/.exec(offset);
  if (match) return `UTC${match[1]}${match[2].padStart(2, "0")}${match[3] ? `:${match[3]}` : ""}`;
  return offset === "GMT" && /^(Etc\/)?(UTC|UCT|Universal|Zulu)$/.test(timeZone) ? "UTC" : offset;
}
// eslint-disable-next-line no-unused-vars
function formatTime(iso, { seconds = false } = {}) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return iso;
  const html = document.documentElement;
  const timeZone = html.dataset.timeZone || "UTC";
  const portuguese = (html.lang || "en").toLowerCase().startsWith("pt");
  const parts = {};
  const format = new Intl.DateTimeFormat(portuguese ? "pt-BR" : "en-GB", {
    timeZone, year: "numeric", month: portuguese ? "2-digit" : "short", day: portuguese ? "2-digit" : "numeric",
    hour: "2-digit", minute: "2-digit", second: seconds ? "2-digit" : undefined, hourCycle: "h23",
  });
  for (const part of format.formatToParts(date)) parts[part.type] = part.value;
  const time = `${parts.hour}:${parts.minute}${seconds ? `:${parts.second}` : ""}`;
  const day = portuguese ? `${parts.day}/${parts.month}/${parts.year}` : `${parts.day} ${parts.month} ${parts.year}`;
  return `${day} ${time} ${zoneLabel(date, timeZone)}`;
}

// --- Numbers as the server writes them (training.display.localized): "0,2" in Portuguese,
//     "0.2" in English, grouped by thousands. formatNumber(16.73, 1) -> "16,7" / "16.7".
// eslint-disable-next-line no-unused-vars
function formatNumber(value, digits = 0) {
  const portuguese = (document.documentElement.lang || "en").toLowerCase().startsWith("pt");
  return new Intl.NumberFormat(portuguese ? "pt-BR" : "en-GB", {
    minimumFractionDigits: digits, maximumFractionDigits: digits,
  }).format(value);
}

// --- API errors in the page's language. The API answers in English (docs/api.md); its
//     stable `code` says which problem it is, so the page names the problem in its own
//     language and shows the API's message (marked lang="en") under it. "" for a code it
//     does not know: the caller says "Error".
// eslint-disable-next-line no-unused-vars
function apiProblem(code) {
  return {
    parse_error: gettext("The input is not readable JSON."),
    invalid: gettext("The input was refused."),
    not_authenticated: gettext("Your session ended: log in again."),
    authentication_failed: gettext("Your session ended: log in again."),
    permission_denied: gettext("You are not allowed to do this."),
    not_found: gettext("Not found: it may have been deleted, or you are no longer in its group."),
    files_removed: gettext("The files were removed by the retention policy."),
    request_timeout: gettext("The input arrived too slowly."),
    conflict: gettext("Not possible in the model's current state."),
    not_deployed: gettext("The model is not deployed right now."),
    too_large: gettext("The input is over the size limit."),
    insufficient_storage: gettext("The server's disk is full: nothing was saved."),
    group_storage_full: gettext("The group's storage quota is used up: nothing was saved."),
    unsupported_media_type: gettext("The input's type is not one this address reads."),
    error: gettext("The platform failed while serving the model."),
    runner_crashed: gettext("The model's process stopped while answering."),
    unavailable: gettext("The model cannot answer right now; try again in a moment."),
    timeout: gettext("The model took too long to answer."),
    busy: gettext("The server is answering many Try it calls: try again in a few seconds."),
  }[code] || "";
}

// --- Announcements for screen readers: one short line in base.html's polite #announcer
//     (a status a poll changed, the outcome of a call), instead of making a region that is
//     replaced or holds long text (a traceback) a live region itself. Emptied first, so the
//     same line said twice is read twice.
let announceTimer;
// eslint-disable-next-line no-unused-vars
function announce(text) {
  const region = document.getElementById("announcer");
  if (!region || !text) return;
  region.textContent = "";
  clearTimeout(announceTimer);
  announceTimer = setTimeout(() => { region.textContent = text; }, 100);
}

// --- Copy buttons: <button data-copy="#element-id"> copies an input's value or an element's text.
document.addEventListener("click", async (event) => {
  const button = event.target.closest("[data-copy]");
  if (!button) return;
  const source = document.querySelector(button.dataset.copy);
  if (!source) return;
  const text = "value" in source ? source.value : source.textContent;
  const label = button.dataset.label || button.textContent;
  button.dataset.label = label;
  try {
    await navigator.clipboard.writeText(text);
    button.textContent = gettext("Copied");
  } catch {
    // Clipboard API refused (plain HTTP on another host): select the text instead.
    if (source.select) source.select();
    else window.getSelection().selectAllChildren(source);
    button.textContent = gettext("Press Ctrl+C");
  }
  setTimeout(() => { button.textContent = label; }, 2000);
});

// --- Confirmation dialogs: <form data-confirm="Question?" data-confirm-body="…"
//     data-confirm-button="Delete" data-confirm-danger> asks before submitting. Forms with
//     data-confirm-field="confirm" get confirm=yes added, which the server requires (without
//     JavaScript the server answers with a confirmation page instead).
let dialog;
function confirmDialog() {
  if (dialog) return dialog;
  dialog = document.createElement("dialog");
  dialog.setAttribute("aria-labelledby", "confirm-title");
  dialog.innerHTML = `
    <form method="dialog">
      <div class="dialog-body"><h2 id="confirm-title"></h2><p class="confirm-body" id="confirm-body"></p></div>
      <div class="dialog-actions">
        <button class="btn" value="cancel" type="submit"></button>
        <button class="btn btn-primary confirm-ok" value="ok" type="submit"></button>
      </div>
    </form>`;
  dialog.querySelector("button[value=cancel]").textContent = gettext("Cancel");
  document.body.append(dialog);
  return dialog;
}

document.addEventListener("submit", (event) => {
  const form = event.target;
  if (!form.matches("form[data-confirm]") || form.dataset.confirmed === "yes") return;
  event.preventDefault();
  const d = confirmDialog();
  d.querySelector("#confirm-title").textContent = form.dataset.confirm;
  d.querySelector(".confirm-body").textContent = form.dataset.confirmBody || "";
  // The body (the consequence) is read with the question; a dialog without one describes nothing.
  if (form.dataset.confirmBody) d.setAttribute("aria-describedby", "confirm-body");
  else d.removeAttribute("aria-describedby");
  const ok = d.querySelector(".confirm-ok");
  ok.textContent = form.dataset.confirmButton || gettext("Confirm");
  ok.className = "btn confirm-ok " + ("confirmDanger" in form.dataset ? "btn-danger-solid" : "btn-primary");
  d.returnValue = "";
  d.onclose = () => {
    if (d.returnValue !== "ok") return;
    if (form.dataset.confirmField) {
      const input = document.createElement("input");
      input.type = "hidden";
      input.name = form.dataset.confirmField;
      input.value = "yes";
      form.append(input);
    }
    form.dataset.confirmed = "yes";
    form.requestSubmit(event.submitter || undefined);
  };
  d.showModal();
  d.querySelector("button[value=cancel]").focus();
});

// --- Tabs: <div class="tabs" data-tabs> with children [data-tab-panel][data-tab-label].
//     Without JavaScript every panel is shown, one under the other, with its title.
for (const container of document.querySelectorAll("[data-tabs]")) {
  const panels = [...container.querySelectorAll("[data-tab-panel]")];
  if (!panels.length) continue;
  const list = document.createElement("div");
  list.setAttribute("role", "tablist");
  list.setAttribute("aria-label", container.dataset.tabs || gettext("Tabs"));
  const tabs = panels.map((panel, index) => {
    const tab = document.createElement("button");
    tab.type = "button";
    tab.id = `${panel.id}-tab`;
    tab.textContent = panel.dataset.tabLabel;
    tab.setAttribute("role", "tab");
    tab.setAttribute("aria-controls", panel.id);
    panel.setAttribute("role", "tabpanel");
    panel.setAttribute("aria-labelledby", tab.id);
    panel.tabIndex = 0;
    tab.addEventListener("click", () => select(index));
    // The WAI-ARIA tabs pattern: arrows move to the next or previous tab (wrapping),
    // Home and End to the first and last; a tab is shown as it gets the focus.
    tab.addEventListener("keydown", (event) => {
      let next;
      if (event.key === "ArrowRight" || event.key === "ArrowLeft") {
        next = (index + (event.key === "ArrowRight" ? 1 : -1) + tabs.length) % tabs.length;
      } else if (event.key === "Home") {
        next = 0;
      } else if (event.key === "End") {
        next = tabs.length - 1;
      } else {
        return;
      }
      event.preventDefault();
      select(next);
      tabs[next].focus();
    });
    list.append(tab);
    return tab;
  });
  function select(chosen) {
    tabs.forEach((tab, index) => {
      const on = index === chosen;
      tab.setAttribute("aria-selected", String(on));
      tab.tabIndex = on ? 0 : -1;
      panels[index].hidden = !on;
    });
  }
  container.prepend(list);
  container.classList.add("enhanced");
  select(0);
}

// --- A table wider than its card scrolls sideways (a phone, a long name): its wrapper then
//     takes the keyboard's focus, so the arrow keys can scroll it, and is a region named by
//     its card's heading (else the page's). One that fits stays out of the tab order. Watched for size, so a
//     rotated phone or rows a poll redrew are seen too.
const scrollingTables = new ResizeObserver((entries) => {
  for (const { target } of entries) {
    const wrap = target.closest(".table-wrap");
    if (!wrap) continue;
    const scrolls = wrap.scrollWidth > wrap.clientWidth + 1;
    if (scrolls && !wrap.dataset.scrolls) {
      wrap.dataset.scrolls = "1";
      wrap.tabIndex = 0;
      const heading = wrap.closest("section, .card")?.querySelector("h2, h3") || document.querySelector("main h1");
      if (heading) {
        heading.id ||= `table-heading-${Math.random().toString(36).slice(2, 8)}`;
        wrap.setAttribute("role", "region");
        wrap.setAttribute("aria-labelledby", heading.id);
      }
    } else if (!scrolls && wrap.dataset.scrolls) {
      delete wrap.dataset.scrolls;
      for (const name of ["tabindex", "role", "aria-labelledby"]) wrap.removeAttribute(name);
    }
  }
});
for (const wrap of document.querySelectorAll(".table-wrap")) {
  scrollingTables.observe(wrap);
  const table = wrap.querySelector("table");
  if (table) scrollingTables.observe(table);
}
