// The Monitoring tab of a model: charts of its compared periods, drawn with the vendored
// Chart.js (static/vendor/chartjs/) from the monitoring API with the session, and the
// follow-up of a validation or a period still running. The page is complete without
// this script (status, log, periods table); it only adds the charts and the live status.
"use strict";

(() => {
  const config = JSON.parse(document.getElementById("monitoring-config").textContent);
  const STATUS_COLORS = {
    stable: "#2e9e5b",
    warning: "#e0a100",
    drift: "#c8372d",
    insufficient: "#c5ccd6",
  };
  // Distinguishable line colours (Okabe–Ito, then a few more).
  const PALETTE = ["#0072b2", "#d55e00", "#009e73", "#cc79a7", "#56b4e9", "#e69f00", "#000000", "#7f3c8d", "#11a579", "#3969ac"];
  const FOLLOW_MS = 3000;
  const LOG_TAIL_LINES = 400;

  async function getJSON(url) {
    const response = await fetch(url, { credentials: "same-origin", headers: { Accept: "application/json" } });
    if (!response.ok) throw new Error(`${url} answered ${response.status}`);
    return response.json();
  }

  const periodUrl = (id) => config.periodUrl.replace(/\/0$/, `/${id}`);
  const day = (iso) => iso.slice(0, 10);
  // A period's label: its first day, and its last one when it spans several days.
  function periodLabel(period) {
    const last = new Date(new Date(period.end).getTime() - 1).toISOString().slice(0, 10);
    return last === day(period.start) ? day(period.start) : `${day(period.start)} – ${last}`;
  }
  const columnKey = (column) => `${column.role}:${column.column}`;
  const columnName = (column) => (column.role === "output" ? interpolate(gettext("%s (output)"), [column.column]) : column.column);
  const formatPsi = (psi) => (psi === null || psi === undefined ? "—" : formatNumber(psi, 3));
  // A count of rows, grouped the page's language's way ("12.345 linhas").
  const rowsText = (rows) => interpolate(ngettext("%s row", "%s rows", rows), [formatNumber(rows)]);
  // Chart.js writes its axes' numbers in this locale (the page's, not the browser's).
  const LOCALE = document.documentElement.lang || "en";

  function showError(message) {
    const box = document.getElementById("charts-error");
    if (!box) return;
    box.textContent = message;
    box.hidden = false;
  }

  // --- (a) PSI per input column over the periods, with the thresholds as lines ------------------
  function drawPsiChart(periods) {
    const canvas = document.getElementById("psi-chart");
    const names = [];
    for (const period of periods) {
      for (const column of period.columns) {
        if (column.role === "input" && !names.includes(column.column)) names.push(column.column);
      }
    }
    const psiOf = (period, name) => {
      const found = period.columns.find((c) => c.role === "input" && c.column === name);
      return found && found.psi !== null ? found.psi : null;
    };
    const threshold = (label, value, color) => ({
      label,
      data: periods.map(() => value),
      borderColor: color,
      backgroundColor: color,
      borderDash: [6, 4],
      borderWidth: 1.5,
      pointRadius: 0,
      pointHitRadius: 0,
      threshold: true,
    });
    return new Chart(canvas, {
      type: "line",
      data: {
        labels: periods.map(periodLabel),
        datasets: [
          ...names.map((name, index) => ({
            label: name,
            data: periods.map((period) => psiOf(period, name)),
            borderColor: PALETTE[index % PALETTE.length],
            backgroundColor: PALETTE[index % PALETTE.length],
            borderWidth: 2,
            pointRadius: 3,
            tension: 0,
          })),
          threshold(gettext("Warning threshold"), config.warning, STATUS_COLORS.warning),
          threshold(gettext("Drift threshold"), config.drift, STATUS_COLORS.drift),
        ],
      },
      options: {
        locale: LOCALE,
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        interaction: { mode: "nearest", intersect: false },
        scales: {
          y: { beginAtZero: true, title: { display: true, text: "PSI" } },
          x: { ticks: { maxRotation: 60, autoSkip: true }, title: { display: true, text: gettext("Period (first day, UTC)") } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: {
            filter: (item) => !item.dataset.threshold,
            callbacks: { label: (item) => `${item.dataset.label}: ${formatPsi(item.parsed.y)}` },
          },
        },
      },
    });
  }

  // --- (b) Heat map: columns × periods, coloured by status -------------------------------------
  function drawHeatmap(periods) {
    const canvas = document.getElementById("heatmap-chart");
    const columns = [];
    for (const period of periods) {
      for (const column of period.columns) {
        const name = columnName(column);
        if (!columns.includes(name)) columns.push(name);
      }
    }
    const labels = periods.map(periodLabel);
    const cells = periods.flatMap((period, index) =>
      period.columns.map((column) => ({
        x: labels[index],
        y: columnName(column),
        v: column.psi,
        status: column.status,
        rows: column.rows,
      }))
    );
    // A row per column, tall enough to read at any width.
    document.getElementById("heatmap-box").style.height = `${Math.max(160, columns.length * 30 + 90)}px`;
    const color = (cell) => STATUS_COLORS[cell && cell.status] || "#eef1f5";
    return new Chart(canvas, {
      type: "matrix",
      data: {
        datasets: [
          {
            label: "PSI",
            data: cells,
            backgroundColor: (context) => color(context.raw),
            // Insufficient cells get a dark outline on top of their grey: no verdict, not "fine".
            borderColor: (context) => (context.raw && context.raw.status === "insufficient" ? "#46536a" : "#ffffff"),
            borderWidth: (context) => (context.raw && context.raw.status === "insufficient" ? 2 : 1),
            width: ({ chart }) => Math.max(4, (chart.chartArea || {}).width / labels.length - 2),
            height: ({ chart }) => Math.max(4, (chart.chartArea || {}).height / columns.length - 2),
          },
        ],
      },
      options: {
        locale: LOCALE,
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          x: { type: "category", labels, offset: true, grid: { display: false }, ticks: { maxRotation: 60, autoSkip: true }, title: { display: true, text: gettext("Period (first day, UTC)") } },
          y: { type: "category", labels: columns, offset: true, grid: { display: false } },
        },
        plugins: {
          legend: { display: false },
          tooltip: {
            callbacks: {
              title: (items) => (items.length ? `${items[0].raw.y}, ${items[0].raw.x}` : ""),
              label: (item) => `PSI ${formatPsi(item.raw.v)} · ${item.raw.status} · ${rowsText(item.raw.rows)}`,
            },
          },
        },
      },
    });
  }

  // --- (c) Reference vs period proportions per bin, for a chosen column and period ----------------
  function setupHistogram(periods) {
    const canvas = document.getElementById("histogram-chart");
    const columnSelect = document.getElementById("histogram-column");
    const periodSelect = document.getElementById("histogram-period");
    const caption = document.getElementById("histogram-caption");
    const details = new Map();
    const newestFirst = [...periods].reverse();

    for (const period of newestFirst) {
      periodSelect.append(new Option(`${periodLabel(period)} (${period.drift_status || "—"})`, String(period.id)));
    }
    const seen = new Set();
    for (const period of newestFirst) {
      for (const column of period.columns) {
        const key = columnKey(column);
        if (seen.has(key)) continue;
        seen.add(key);
        columnSelect.append(new Option(columnName(column), key));
      }
    }
    // Open on the column that drifts most in the newest period (the first one if none moved).
    const worst = newestFirst[0].columns.filter((c) => c.psi > 0).sort((a, b) => b.psi - a.psi)[0];
    if (worst) columnSelect.value = columnKey(worst);

    const chart = new Chart(canvas, {
      type: "bar",
      data: { labels: [], datasets: [] },
      options: {
        locale: LOCALE,
        responsive: true,
        maintainAspectRatio: false,
        animation: false,
        scales: {
          y: { beginAtZero: true, title: { display: true, text: gettext("Share of rows") }, ticks: { callback: (v) => `${Math.round(v * 100)} %` } },
          x: { ticks: { maxRotation: 60, autoSkip: false } },
        },
        plugins: {
          legend: { position: "bottom", labels: { boxWidth: 12 } },
          tooltip: { callbacks: { label: (item) => `${item.dataset.label}: ${formatNumber(item.parsed.y * 100, 1)} %` } },
        },
      },
    });

    async function detail(id) {
      if (!details.has(id)) details.set(id, getJSON(periodUrl(id)));
      return details.get(id);
    }

    let asked = 0;
    async function update() {
      const ticket = ++asked;
      const id = periodSelect.value;
      const key = columnSelect.value;
      let period;
      try {
        period = await detail(id);
      } catch (error) {
        details.delete(id);
        showError(interpolate(gettext("The period's bins could not be loaded (%s)."), [error.message]));
        return;
      }
      if (ticket !== asked) return; // a later choice won
      const column = period.columns.find((c) => columnKey(c) === key);
      if (!column) {
        chart.data = { labels: [], datasets: [] };
        chart.update();
        caption.textContent = interpolate(gettext("This period has no column %s."), [key.split(":").slice(1).join(":")]);
        return;
      }
      chart.data = {
        labels: column.labels,
        datasets: [
          { label: gettext("Reference"), data: column.reference_proportions, backgroundColor: "rgba(36, 83, 196, .55)", borderColor: "#2453c4", borderWidth: 1 },
          {
            label: interpolate(gettext("Period %s"), [periodLabel(period)]),
            data: column.period_proportions,
            backgroundColor: `${STATUS_COLORS[column.status] || "#888888"}99`,
            borderColor: STATUS_COLORS[column.status] || "#888888",
            borderWidth: 1,
          },
        ],
      };
      chart.update();
      canvas.dataset.column = key;
      canvas.dataset.period = String(period.id);
      caption.textContent =
        // column.kind (numeric, categorical) is the API's enumeration: it stays as written.
        `${columnName(column)} (${column.kind}): PSI ${formatPsi(column.psi)}, ${column.status}; ` +
        interpolate(ngettext("%s row in the period (UTC).", "%s rows in the period (UTC).", column.rows), [formatNumber(column.rows)]) +
        " " + gettext("Bars are each bin's share of the rows.");
    }
    columnSelect.addEventListener("change", update);
    periodSelect.addEventListener("change", update);
    return update();
  }

  async function drawCharts() {
    if (!document.getElementById("psi-chart")) return; // nothing compared yet
    if (typeof Chart === "undefined") {
      showError(gettext("The chart library did not load."));
      return;
    }
    let periods;
    try {
      periods = (await getJSON(config.periodsUrl)).periods;
    } catch (error) {
      showError(interpolate(gettext("The periods could not be loaded (%s)."), [error.message]));
      return;
    }
    // Oldest first, compared ones only: a chart reads left to right.
    // An earlier registration's periods were binned against another reference: not comparable.
    periods = periods.filter((p) => p.status === "Succeeded" && p.current_registration).reverse();
    if (!periods.length) return;
    drawPsiChart(periods);
    drawHeatmap(periods);
    await setupHistogram(periods);
    document.getElementById("charts").dataset.ready = "true";
  }

  // --- Following a validation or a period still running ------------------------------------------
  // The page reloads itself once something changed, unless a form has been touched.
  let touched = false;
  document.addEventListener("input", (event) => {
    if (event.target.closest("form")) touched = true;
  });

  function renderedStatuses() {
    const rows = document.querySelectorAll("#periods-table tr[data-period]");
    return new Map([...rows].map((row) => [row.dataset.period, row.dataset.status]));
  }

  // Each tick asks only for what can change: the monitor (its status, the validation's log)
  // and the periods not finished yet, never the whole list (a Day monitor adds 365 a year).
  const UNFINISHED = ["Queued", "Running"];
  const unfinishedUrl = `${config.periodsUrl}?status=${UNFINISHED.join(",")}`;

  async function follow() {
    const rendered = renderedStatuses();
    try {
      const [monitor, unfinished] = await Promise.all([getJSON(config.monitorUrl), getJSON(unfinishedUrl)]);
      const log = document.getElementById("monitor-log");
      if (log && monitor.log) log.textContent = monitor.log.split("\n").slice(-LOG_TAIL_LINES).join("\n");
      const monitorChanged = monitor.status !== config.status;
      const running = new Map(unfinished.periods.map((period) => [String(period.id), period.status]));
      // A new period, one that moved on (Queued → Running, a finished one asked again), or
      // one shown as Queued or Running that has finished since.
      const periodChanged =
        [...running].some(([id, status]) => rendered.get(id) !== status) ||
        [...rendered].some(([id, status]) => UNFINISHED.includes(status) && !running.has(id));
      if (monitorChanged || periodChanged) {
        if (!touched) {
          window.location.reload();
          return;
        }
        const note = document.getElementById("monitor-message") || document.getElementById("charts");
        if (note && !document.getElementById("reload-note")) {
          const reload = Object.assign(document.createElement("p"), { id: "reload-note" });
          reload.append(Object.assign(document.createElement("strong"), { textContent: gettext("Updated:") }), " ",
            Object.assign(document.createElement("a"), { href: "", textContent: gettext("reload the page to see it") }));
          note.append(" ", reload);
        }
        return;
      }
    } catch {
      // A dropped request is retried at the next tick.
    }
    setTimeout(follow, FOLLOW_MS);
  }

  drawCharts();
  if (config.following) setTimeout(follow, FOLLOW_MS);
})();
