// The training pages: the experiment's runs table sorted by any column and a chart of
// one metric across runs (inline SVG, no library); the run form's type switch, what it
// sends (upload_form.js checks the sizes and uploads with a progress bar), and its AutoML
// section (the options that apply, the CSV's columns offered for the target); a run's live status and log, an AutoML
// run's ROC and KS curves; the promote form's operation hints. All progressive
// enhancement: without JavaScript the table keeps the server's order, every field shows,
// forms post normally and the server shows the same errors.
"use strict";
(() => {
  const $ = (id) => document.getElementById(id);

  // --- Inline SVG charts (no library) -----------------------------------------------------
  const SVG = "http://www.w3.org/2000/svg";
  const svgEl = (tag, attrs = {}, text) => {
    const node = document.createElementNS(SVG, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, String(value));
    if (text !== undefined) node.textContent = text;
    return node;
  };
  // A number for a chart, in the page's language (as the runs table writes it: "0,87" in
  // Portuguese): four significant digits, or an exponent for the very large and small.
  const pageLang = document.documentElement.lang || "en";
  const fourDigits = new Intl.NumberFormat(pageLang, { maximumSignificantDigits: 4 });
  const decimalMark = (fourDigits.formatToParts(0.5).find((part) => part.type === "decimal") || {}).value || ".";
  const label = (value) => {
    if (value === 0) return "0";
    const magnitude = Math.abs(value);
    if (magnitude >= 1e5 || magnitude < 1e-3) return value.toExponential(2).replace(".", decimalMark);
    return fourDigits.format(value);
  };
  // Evenly spaced "nice" ticks (1, 2 or 5 times a power of ten) covering [low, high].
  function ticks(low, high, count) {
    const rough = (high - low) / count;
    const power = 10 ** Math.floor(Math.log10(rough));
    const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough) || rough;
    const first = Math.floor(low / step) * step;
    const values = [];
    for (let v = first; v <= high + step / 2; v += step) values.push(Number(v.toPrecision(12)));
    return values;
  }

  // --- Experiment page: sortable runs table -------------------------------------------
  // Headers carry data-sort-type (number|text), cells data-sort-value. Empty values go
  // last whichever the direction; in a metric's column, runs that did not succeed go
  // after those that did (as the API's ?sort=), whichever the direction. The active
  // header says its direction with aria-sort.
  const table = $("runs-table");
  if (table) {
    const body = table.tBodies[0];
    const headers = [...table.tHead.rows[0].cells];
    const collator = new Intl.Collator(undefined, { numeric: true, sensitivity: "base" });
    function sortBy(header, direction) {
      const index = headers.indexOf(header);
      const numeric = header.dataset.sortType === "number";
      const rows = [...body.rows].filter((row) => row.dataset.run);
      const key = (row) => {
        const raw = row.cells[index].dataset.sortValue;
        if (raw === undefined || raw === "") return null;
        return numeric ? Number(raw) : raw;
      };
      const metric = rows.length > 0 && rows[0].cells[index].dataset.metric !== undefined;
      // 0: a value of a Succeeded run (any run outside a metric's column), 1: another run's, 2: none.
      const tier = (row) =>
        key(row) === null ? 2 : metric && row.dataset.status !== "Succeeded" ? 1 : 0;
      const sign = direction === "ascending" ? 1 : -1;
      rows.sort((a, b) => {
        if (tier(a) !== tier(b)) return tier(a) - tier(b);
        const x = key(a);
        const y = key(b);
        if (x === null) return 0;
        const order = numeric ? x - y : collator.compare(x, y);
        return order * sign || (Number(a.dataset.run) - Number(b.dataset.run)) * sign;
      });
      body.append(...rows);
      for (const other of headers) other.removeAttribute("aria-sort");
      header.setAttribute("aria-sort", direction);
    }
    for (const header of headers) {
      const button = header.querySelector(".sort-button");
      if (!button) continue;
      button.addEventListener("click", () => {
        // A new column sorts ascending first; the same column again flips the direction.
        const current = header.getAttribute("aria-sort");
        sortBy(header, current === "ascending" ? "descending" : "ascending");
      });
    }
  }

  // --- Experiment page: one metric across runs ------------------------------------------
  const chartBox = $("metric-chart");
  const select = $("metric-select");
  if (chartBox && select) {
    const data = JSON.parse($("experiment-config").textContent);

    function draw(metric) {
      const points = data.runs
        .filter((run) => typeof run.metrics[metric] === "number")
        .map((run) => ({ ...run, value: run.metrics[metric] }));
      const missing = data.runs.length - points.length;
      const width = 900;
      const height = 340;
      const margin = { top: 16, right: 20, bottom: 48, left: 72 };
      const plotW = width - margin.left - margin.right;
      const plotH = height - margin.top - margin.bottom;
      // A group, not an image: its points are links to their runs, which an image's
      // (presentational) children could not be. Its name and description say what it
      // shows; the axes and grid are drawing only, hidden from assistive technology.
      const svg = svgEl("svg", {
        viewBox: `0 0 ${width} ${height}`,
        role: "group",
        "aria-labelledby": "metric-chart-title",
        "aria-describedby": "metric-chart-desc",
        class: "chart-svg",
        "data-metric": metric,
      });
      svg.append(svgEl("title", { id: "metric-chart-title" }, interpolate(gettext("%s by run number"), [metric])));
      const values = points.map((p) => p.value);
      svg.append(svgEl("desc", { id: "metric-chart-desc" },
        points.length
          ? `${interpolate(ngettext("%s run", "%s runs", points.length), [points.length])}: ${points.map((p) => interpolate(gettext("run %(number)s %(value)s"), { number: p.number, value: label(p.value) }, true)).join(", ")}`
          : gettext("No run has this metric.")));

      let low = Math.min(...values);
      let high = Math.max(...values);
      if (!points.length) { low = 0; high = 1; }
      if (low === high) { const pad = Math.abs(low) * 0.1 || 1; low -= pad; high += pad; }
      const yTicks = ticks(low, high, 5);
      low = Math.min(low, yTicks[0]);
      high = Math.max(high, yTicks[yTicks.length - 1]);
      const numbers = data.runs.map((run) => run.number);
      let first = Math.min(...numbers);
      let last = Math.max(...numbers);
      if (first === last) { first -= 1; last += 1; }
      const x = (n) => margin.left + ((n - first) / (last - first)) * plotW;
      const y = (v) => margin.top + plotH - ((v - low) / (high - low)) * plotH;

      const grid = svgEl("g", { class: "chart-grid", "aria-hidden": "true" });
      for (const tick of yTicks) {
        grid.append(svgEl("line", { x1: margin.left, x2: margin.left + plotW, y1: y(tick), y2: y(tick) }));
        grid.append(svgEl("text", { x: margin.left - 8, y: y(tick), "text-anchor": "end", "dominant-baseline": "middle", class: "chart-tick" }, label(tick)));
      }
      const xStep = Math.max(1, Math.ceil(numbers.length / 12));
      [...new Set(numbers)].sort((a, b) => a - b).filter((_, i) => i % xStep === 0).forEach((n) => {
        grid.append(svgEl("text", { x: x(n), y: margin.top + plotH + 18, "text-anchor": "middle", class: "chart-tick" }, String(n)));
      });
      svg.append(grid);
      const axes = svgEl("g", { "aria-hidden": "true" });
      axes.append(svgEl("line", { x1: margin.left, x2: margin.left + plotW, y1: margin.top + plotH, y2: margin.top + plotH, class: "chart-axis" }));
      axes.append(svgEl("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH, class: "chart-axis" }));
      axes.append(svgEl("text", { x: margin.left + plotW / 2, y: height - 8, "text-anchor": "middle", class: "chart-label" }, gettext("Run number")));
      axes.append(svgEl("text", {
        x: 0, y: 0, "text-anchor": "middle", class: "chart-label",
        transform: `translate(16 ${margin.top + plotH / 2}) rotate(-90)`,
      }, metric));
      svg.append(axes);

      if (points.length > 1) {
        svg.append(svgEl("polyline", {
          class: "chart-line", "aria-hidden": "true",
          points: points.map((p) => `${x(p.number).toFixed(1)},${y(p.value).toFixed(1)}`).join(" "),
        }));
      }
      for (const p of points) {
        // The link's <title> is its accessible name (and the tooltip); the ring, drawn
        // around the point while it has the keyboard's focus, is its focus indicator (the
        // page's box-shadow ring does not apply to SVG).
        const link = svgEl("a", { href: p.url, class: "chart-point-link" });
        const cx = x(p.number).toFixed(1);
        const cy = y(p.value).toFixed(1);
        link.append(svgEl("title", {}, interpolate(gettext("Run %(number)s (%(name)s, %(status)s): %(metric)s = %(value)s"), { number: p.number, name: p.name, status: p.status, metric, value: label(p.value) }, true)));
        const ring = svgEl("circle", {
          cx, cy, r: 11, class: "chart-point-ring", fill: "none", stroke: "#172033", "stroke-width": 3, visibility: "hidden",
        });
        link.append(ring, svgEl("circle", {
          cx, cy, r: 5,
          class: `chart-point chart-point-${p.status}`, "data-run": p.number, "data-value": p.value,
        }));
        link.addEventListener("focus", () => ring.setAttribute("visibility", link.matches(":focus-visible") ? "visible" : "hidden"));
        link.addEventListener("blur", () => ring.setAttribute("visibility", "hidden"));
        svg.append(link);
      }
      // One caption for every metric, so that its live region announces the new one's
      // summary (not the whole chart) when another metric is chosen.
      const note = $("metric-chart-caption") || document.createElement("figcaption");
      note.className = "muted small";
      note.id = "metric-chart-caption";
      note.setAttribute("aria-live", "polite");
      note.textContent = interpolate(ngettext("%(metric)s of %(count)s run", "%(metric)s of %(count)s runs", points.length), { metric, count: points.length }, true)
        + (missing ? `; ${interpolate(ngettext("%s without it is left out.", "%s without it are left out.", missing), [missing])}` : ".");
      chartBox.replaceChildren(svg, note);
    }
    select.addEventListener("change", () => draw(select.value));
    draw(select.value);
  }

  // --- Run form: training type, AutoML options, what is uploaded ---------------------------
  const form = $("run-form");
  if (form) {
    const checkedValue = (name, fallback) => (form.querySelector(`input[name="${name}"]:checked`) || {}).value || fallback;
    const chosenType = () => checkedValue("training_type", "Custom");
    const confSource = () => checkedValue("automl-conf_source", "fields");
    // A section lists the types it belongs to: data-training-type="Custom AutoML".
    const forType = (node, type) => node.dataset.trainingType.split(" ").includes(type);
    function applyType() {
      const type = chosenType();
      for (const node of document.querySelectorAll("[data-training-type]")) node.hidden = !forType(node, type);
    }
    for (const radio of form.querySelectorAll("input[name=training_type]")) radio.addEventListener("change", applyType);
    applyType();

    // AutoML: the configuration's source (fields or a file), then the options the chosen
    // split type uses and the way an out-of-time split is cut.
    function applyAutoml() {
      const source = confSource();
      for (const node of form.querySelectorAll("[data-conf-source]")) node.hidden = node.dataset.confSource !== source;
      const split = checkedValue("automl-split_type", "random");
      for (const node of form.querySelectorAll("[data-split-types]")) node.hidden = !node.dataset.splitTypes.split(" ").includes(split);
      const cut = checkedValue("automl-oot_by", "size");
      for (const node of form.querySelectorAll("[data-oot-by]")) node.hidden = node.dataset.ootBy !== cut;
    }
    form.addEventListener("change", (event) => { if (event.target.name && event.target.name.startsWith("automl-")) applyAutoml(); });
    applyAutoml();

    // AutoML: a chosen CSV's columns, read here from its first line, are offered for the
    // target, stratify and date columns (a datalist) and as checkboxes for cat_cols.
    const trainInput = $("id_train_data");
    const separator = $("id_automl-sep");
    const columnList = $("automl-columns");
    const columnsNote = $("automl-columns-note");
    const catCols = $("id_automl-cat_cols");
    const picker = $("automl-cat-cols-picker");
    let headerText = null;
    // The first record's fields, quotes as in RFC 4180; null when the text holds no
    // complete first line (and is not the whole file).
    function csvHeader(text, sep, whole) {
      const fields = [];
      let field = "";
      let quoted = false;
      for (let i = text.charCodeAt(0) === 0xfeff ? 1 : 0; i < text.length; i += 1) {
        const c = text[i];
        if (quoted) {
          if (c !== '"') field += c;
          else if (text[i + 1] === '"') { field += '"'; i += 1; }
          else quoted = false;
        } else if (c === '"' && field === "") quoted = true;
        else if (c === sep) { fields.push(field); field = ""; }
        else if (c === "\n" || c === "\r") { fields.push(field); return fields; }
        else field += c;
      }
      if (!whole) return null;
      fields.push(field);
      return fields;
    }
    const typedCatCols = () => catCols.value.split(",").map((name) => name.trim()).filter(Boolean);
    function syncPicker() {
      const chosen = new Set(typedCatCols());
      for (const box of picker.querySelectorAll("input")) box.checked = chosen.has(box.value);
    }
    function showColumns() {
      const file = trainInput.files[0];
      const parquet = Boolean(file && file.name.toLowerCase().endsWith(".parquet"));
      $("automl-sep-field").hidden = parquet;
      let columns = [];
      if (headerText && headerText.file === file) columns = headerText.columns(separator.value) || [];
      columnList.replaceChildren(...columns.map((name) => new Option(name, name)));
      picker.replaceChildren(...columns.map((name) => {
        const box = Object.assign(document.createElement("input"), { type: "checkbox", value: name });
        const item = Object.assign(document.createElement("label"), { className: "check" });
        item.append(box, document.createTextNode(name));
        return item;
      }));
      picker.hidden = columns.length === 0;
      syncPicker();
      columnsNote.dataset.columns = String(columns.length);
      if (!file) columnsNote.textContent = "";
      else if (parquet) columnsNote.textContent = interpolate(gettext("%s is parquet: its columns are not read here; type their names."), [file.name]);
      else if (headerText === "unreadable") columnsNote.textContent = interpolate(gettext("The first line of %s could not be read here; type the column names."), [file.name]);
      else if (columns.length === 1) columnsNote.textContent = interpolate(gettext("Only one column found in %s: is the separator right?"), [file.name]);
      else if (columns.length) columnsNote.textContent = interpolate(gettext("%(count)s columns read from %(name)s: start typing a name, or tick the categorical ones."), { count: columns.length, name: file.name }, true);
    }
    if (trainInput && columnList) {
      trainInput.addEventListener("change", () => {
        const file = trainInput.files[0];
        headerText = null;
        showColumns();
        if (!file || !file.name.toLowerCase().endsWith(".csv")) return;
        const slice = file.slice(0, 2 ** 20); // the header line is well within the first MB
        const reader = new FileReader();
        reader.addEventListener("load", () => {
          if (trainInput.files[0] !== file) return; // another file was chosen meanwhile
          const text = String(reader.result);
          headerText = { file, columns: (sep) => csvHeader(text, sep, slice.size === file.size) };
          showColumns();
        });
        reader.addEventListener("error", () => { headerText = "unreadable"; showColumns(); });
        reader.readAsText(slice);
      });
      separator.addEventListener("change", showColumns);
      catCols.addEventListener("input", syncPicker);
      picker.addEventListener("change", (event) => {
        const names = typedCatCols().filter((name) => name !== event.target.value);
        if (event.target.checked) names.push(event.target.value);
        catCols.value = names.join(", ");
      });
    }

    // Only the chosen type's files are sent (the other's would be refused), and conf.json
    // only when it is the chosen source of the AutoML configuration.
    const applies = (input) => {
      const typed = input.closest("[data-training-type]");
      const sourced = input.closest("[data-conf-source]");
      return (!typed || forType(typed, chosenType())) && (!sourced || sourced.dataset.confSource === confSource());
    };
    const upload = uploadForm(form, {
      opening: gettext("Uploaded. Opening the run…"),
      sentInputs: () => [...form.querySelectorAll("input[type=file], textarea[name=metrics], textarea[name=params]")].filter(applies),
      body: () => {
        // Only what the chosen type uses is sent: the server refuses a field another type
        // uses (a Python version for AutoML, a training function for External...).
        const body = new FormData(form);
        const sent = new Set([...form.querySelectorAll("[name]")].filter(applies).map((input) => input.name));
        for (const input of form.querySelectorAll("[name]")) {
          if (!sent.has(input.name)) body.delete(input.name);
        }
        return body;
      },
      reveal: "[data-training-type]", // a problem in the hidden type's fields is shown with its section
    });
    form.addEventListener("change", (event) => {
      if (["training_type", "automl-conf_source"].includes(event.target.name)) upload.checkSizes();
    });
  }

  // --- Run page: live status and log while Requested or Running ------------------------
  const runConfig = $("run-config");
  if (runConfig) {
    const config = JSON.parse(runConfig.textContent);
    const IN_PROGRESS = ["Requested", "Running"];
    const badge = $("run-status");
    const log = $("run-log");
    const errorBox = $("run-error");
    const getJSON = async (url) => {
      const response = await fetch(url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (!response.ok) throw new Error(`${url} answered ${response.status}`);
      return response.json();
    };
    async function poll() {
      let status = config.status;
      try {
        const current = await getJSON(config.statusUrl);
        status = current.Status;
        badge.className = `badge badge-lg badge-${status}`;
        badge.textContent = status; // a state's name, as the API says it
        if (current.Message) {
          errorBox.hidden = false;
          errorBox.textContent = current.Message;
        }
        // Read after the status: once the status is final the log is complete.
        const logs = await getJSON(config.logsUrl);
        if (logs.log) {
          const nearBottom = log.scrollHeight - log.scrollTop - log.clientHeight < 60;
          log.textContent = logs.log;
          if (nearBottom) log.scrollTop = log.scrollHeight;
        }
      } catch (error) {
        console.warn("status poll failed; retrying", error); // a network blip or a restarting server
      }
      if (!IN_PROGRESS.includes(status)) {
        // Metrics, artifacts and the promote form come from the server: reload once.
        window.location.reload();
        return;
      }
      setTimeout(poll, 1500);
    }
    log.scrollTop = log.scrollHeight;
    if (IN_PROGRESS.includes(config.status)) setTimeout(poll, 1500);
  }

  // --- AutoML run page: the holdout's ROC curve and KS chart -----------------------------
  // The server read roc.json and ks.json (checked, at most 200 points each) into
  // #automl-charts; a file it could not use is named in its figure instead.
  const automlCharts = $("automl-charts");
  if (automlCharts) {
    const charts = JSON.parse(automlCharts.textContent);
    // An empty plot with axes, ticks and titles; answers the svg and the scales.
    function plot({ id, title, desc, xLabel, yLabel, xDomain, yDomain = [0, 1] }) {
      const width = 420;
      const height = 380;
      const margin = { top: 14, right: 16, bottom: 50, left: 56 };
      const plotW = width - margin.left - margin.right;
      const plotH = height - margin.top - margin.bottom;
      const svg = svgEl("svg", { viewBox: `0 0 ${width} ${height}`, role: "img", "aria-labelledby": `${id}-title ${id}-desc`, class: "chart-svg" });
      svg.append(svgEl("title", { id: `${id}-title` }, title), svgEl("desc", { id: `${id}-desc` }, desc));
      const x = (v) => margin.left + ((v - xDomain[0]) / (xDomain[1] - xDomain[0] || 1)) * plotW;
      const y = (v) => margin.top + plotH - ((v - yDomain[0]) / (yDomain[1] - yDomain[0] || 1)) * plotH;
      const grid = svgEl("g", { class: "chart-grid" });
      for (const tick of ticks(yDomain[0], yDomain[1], 5)) {
        grid.append(svgEl("line", { x1: x(xDomain[0]), x2: x(xDomain[1]), y1: y(tick), y2: y(tick) }));
        grid.append(svgEl("text", { x: margin.left - 8, y: y(tick), "text-anchor": "end", "dominant-baseline": "middle", class: "chart-tick" }, label(tick)));
      }
      for (const tick of ticks(xDomain[0], xDomain[1], 5)) {
        if (tick < xDomain[0] || tick > xDomain[1]) continue;
        grid.append(svgEl("text", { x: x(tick), y: margin.top + plotH + 18, "text-anchor": "middle", class: "chart-tick" }, label(tick)));
      }
      svg.append(grid);
      svg.append(svgEl("line", { x1: margin.left, x2: margin.left + plotW, y1: margin.top + plotH, y2: margin.top + plotH, class: "chart-axis" }));
      svg.append(svgEl("line", { x1: margin.left, x2: margin.left, y1: margin.top, y2: margin.top + plotH, class: "chart-axis" }));
      svg.append(svgEl("text", { x: margin.left + plotW / 2, y: height - 10, "text-anchor": "middle", class: "chart-label" }, xLabel));
      svg.append(svgEl("text", { x: 0, y: 0, "text-anchor": "middle", class: "chart-label", transform: `translate(16 ${margin.top + plotH / 2}) rotate(-90)` }, yLabel));
      return { svg, x, y };
    }
    const path = (xs, ys, x, y) => xs.map((v, i) => `${i ? "L" : "M"}${x(v).toFixed(1)},${y(ys[i]).toFixed(1)}`).join(" ");
    const caption = (id, text) => Object.assign(document.createElement("figcaption"), { id, className: "muted small", textContent: text });

    if (charts.roc) {
      const roc = charts.roc;
      const { svg, x, y } = plot({
        id: "roc", title: gettext("ROC curve on the holdout"),
        desc: interpolate(gettext("True positive rate against false positive rate at %(count)s thresholds; AUC %(auc)s."), { count: roc.fpr.length, auc: roc.aucText }, true),
        xLabel: gettext("False positive rate"), yLabel: gettext("True positive rate"), xDomain: [0, 1],
      });
      svg.append(svgEl("line", { x1: x(0), y1: y(0), x2: x(1), y2: y(1), class: "chart-diagonal" }));
      svg.append(svgEl("path", { d: path(roc.fpr, roc.tpr, x, y), class: "chart-curve roc-curve", "data-points": roc.fpr.length }));
      $("roc-chart").replaceChildren(svg, caption("roc-caption",
        roc.auc === null ? gettext("ROC curve on the holdout (no AUC given).") : interpolate(gettext("ROC curve on the holdout: AUC %s. The dashed diagonal is a random guess."), [roc.aucText])));
    }

    if (charts.ks) {
      const ks = charts.ks;
      const low = Math.min(0, ks.thresholds[0]);
      const high = Math.max(1, ks.thresholds[ks.thresholds.length - 1]);
      const { svg, x, y } = plot({
        id: "ks", title: gettext("KS: true and false positive rates by threshold"),
        desc: interpolate(gettext("The KS is %(ks)s, the widest gap between the two rates, at threshold %(threshold)s."), { ks: ks.ksText, threshold: ks.gap.thresholdText }, true),
        xLabel: gettext("Threshold"), yLabel: gettext("Rate"), xDomain: [low, high],
      });
      svg.append(svgEl("path", { d: path(ks.thresholds, ks.tpr, x, y), class: "chart-curve ks-tpr", "data-points": ks.thresholds.length }));
      svg.append(svgEl("path", { d: path(ks.thresholds, ks.fpr, x, y), class: "chart-curve ks-fpr", "data-points": ks.thresholds.length }));
      const gapX = x(ks.gap.threshold);
      svg.append(svgEl("line", { x1: gapX, x2: gapX, y1: y(ks.gap.fpr), y2: y(ks.gap.tpr), class: "ks-gap", "data-threshold": ks.gap.threshold }));
      svg.append(svgEl("text", { x: gapX + 6, y: (y(ks.gap.fpr) + y(ks.gap.tpr)) / 2, "dominant-baseline": "middle", class: "chart-note ks-gap-label" }, `KS ${ks.ksText}`));
      const legend = svgEl("g", { class: "chart-legend" });
      [["ks-tpr", gettext("true positive rate")], ["ks-fpr", gettext("false positive rate")]].forEach(([name, text], i) => {
        const top = 22 + i * 18;
        legend.append(svgEl("line", { x1: x(high) - 150, x2: x(high) - 128, y1: top, y2: top, class: `chart-curve ${name}` }));
        legend.append(svgEl("text", { x: x(high) - 122, y: top, "dominant-baseline": "middle", class: "chart-tick" }, text));
      });
      svg.append(legend);
      $("ks-chart").replaceChildren(svg, caption("ks-caption",
        interpolate(gettext("KS %(ks)s at threshold %(threshold)s: the widest gap between the true and false positive rates."), { ks: ks.ksText, threshold: ks.gap.thresholdText }, true)));
    }
  }

  // --- Run page: the promote form follows the chosen operation ---------------------------
  const promote = $("promote-form");
  if (promote) {
    const inputType = promote.elements.input_type;
    function applyOperation() {
      const op = (promote.querySelector("input[name=operation]:checked") || {}).value || "Sync";
      for (const node of promote.querySelectorAll("[data-operation]")) node.hidden = node.dataset.operation !== op;
      for (const option of inputType.options) option.disabled = op === "Sync" && option.value !== "" && option.value !== "json";
      if (inputType.selectedOptions[0] && inputType.selectedOptions[0].disabled) inputType.value = "";
      if (op === "Sync" && promote.elements.sample.value) promote.elements.sample.value = "";
    }
    for (const radio of promote.querySelectorAll("input[name=operation]")) radio.addEventListener("change", applyOperation);
    // A version of a model takes its name and operation: the name is not asked for, and
    // only the model's operation can be chosen.
    const versionOf = promote.elements.version_of;
    function applyVersionOf() {
      const chosen = versionOf.selectedOptions[0];
      const modelOperation = chosen ? chosen.dataset.modelOperation : undefined;
      const name = promote.querySelector("[data-field=name]");
      if (name) {
        name.hidden = Boolean(modelOperation);
        // Disabled, not only hidden: a version keeps its model's name, and another is refused.
        for (const input of name.querySelectorAll("input")) input.disabled = Boolean(modelOperation);
      }
      for (const radio of promote.querySelectorAll("input[name=operation]")) {
        radio.disabled = Boolean(modelOperation) && radio.value !== modelOperation;
        if (modelOperation && radio.value === modelOperation) radio.checked = true;
      }
      applyOperation();
    }
    if (versionOf && versionOf.tagName === "SELECT") {
      versionOf.addEventListener("change", applyVersionOf);
      applyVersionOf();
    } else {
      applyOperation();
    }
  }
})();
