"use strict";
const QD = JSON.parse(document.getElementById("qd-overview").textContent);
const C = QD.configs, N = C.config_id.length;
const FONT = {family: 'system-ui, -apple-system, "Segoe UI", Roboto, Arial, sans-serif', size: 14};
const CFG = {displaylogo: false, responsive: true, modeBarButtonsToRemove: ["sendDataToCloud"]};
const METHOD_LABEL = {self_moa: "Self-MoA", self_moa_seq: "Self-MoA-Seq", mixed_moa: "Mixed-MoA",
  single: "single model (baseline)"};
const SYMBOL = {self_moa: "circle", self_moa_seq: "diamond", mixed_moa: "square", single: "x"};
function esc(s) { return String(s ?? "").replace(/[&<>"']/g,
  c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;","'":"&#39;"}[c])); }
function fmt(v, d = 3) { return v == null ? "—" : (typeof v === "number" ? v.toFixed(d) : esc(v)); }
function fmtp(p) { return p == null ? "—" : (p < 1e-3 ? p.toExponential(1) : p.toFixed(3)); }
function el(id) { return document.getElementById(id); }
function table(cols, rows, cls = "") {
  const h = cols.map(c => `<th>${esc(c[0])}</th>`).join("");
  const b = rows.map(r => `<tr class="${r._cls || ""}">` + cols.map(c => {
    const v = c[1](r); return `<td class="${c[2] || ""}">${v}</td>`; }).join("") + "</tr>").join("");
  return `<table class="${cls}"><thead><tr>${h}</tr></thead><tbody>${b}</tbody></table>`;
}
function methodLabel(m) { return METHOD_LABEL[m] || m; }
// Units follow the data: 0/1 correctness gives accuracies in %, judge scores give mean scores x100.
const CONTINUOUS = (QD.parameters || {}).score_scale === "continuous";
const UNIT = CONTINUOUS ? "mean score ×100" : "%";
const QUALITY_TITLE = CONTINUOUS ? "quality q (mean score of the slots, ×100)"
  : "quality q (mean accuracy of the slots, %)";
function slotsText(i) {
  const p = JSON.parse(C.proposers[i] || "[]"), s = JSON.parse(C.samples[i] || "[]");
  return p.map((t, j) => `${t}#${s[j]}`).join(", ");
}

// --- chunks: inline JSON blocks, or scripts in a folder beside the page (split mode) ---
const chunkCache = {}, pending = {};
window.qdChunk = (key, data) => { if (pending[key]) pending[key](data); };
function getChunk(key) {
  if (chunkCache[key]) return chunkCache[key];
  const inline = el("chunk-" + key);
  if (inline) { chunkCache[key] = Promise.resolve(JSON.parse(inline.textContent)); }
  else if (QD.details.dir) {
    chunkCache[key] = new Promise((resolve, reject) => {
      pending[key] = resolve;
      const s = document.createElement("script");
      s.src = QD.details.dir + "/" + key + ".js";
      s.onerror = () => reject(new Error("could not load " + s.src));
      document.head.appendChild(s);
    });
  } else { chunkCache[key] = Promise.resolve(null); }
  return chunkCache[key];
}

function renderHeader() {
  const p = QD.provenance, par = QD.parameters;
  const git = p.git_sha ? `${p.git_sha.slice(0, 10)}${p.git_dirty ? " (uncommitted changes)" : ""}` : "—";
  el("top").innerHTML = `<h1>${esc(QD.title)}</h1><div class="meta">
    ${N} configurations over ${QD.datasets.length} dataset(s): ${QD.datasets.map(esc).join(", ")}
    · fit ${esc(p.created_utc || "—")} · qdanalysis ${esc(p.qdanalysis_version || "—")} · git ${esc(git)}
    · aggregator <b>${esc(par.aggregator ?? C.aggregator?.[0] ?? "—")}</b>
    · quality <b>${esc(par.quality ?? "—")}</b> · Vendi q = <b>${esc(par.vendi_q ?? "—")}</b>
    · embeddings ${esc(par.embedding_model ?? "—")} · cov_type ${esc(par.cov_type ?? "—")}</div>`;
  el("nav").innerHTML = [["fit", "Fit"], ["scatter", "Quality–diversity"], ["methods", "Methods"],
    ["detail", "Details"], ["usage", "Usage"], ["settings", "Settings"]]
    .map(([id, t]) => `<a href="#${id}">${t}</a>`).join("") +
    (QD.warnings.length ? `<a href="#warnings-section">⚠ ${QD.warnings.length} warning(s)</a>` : "");
  if (QD.warnings.length) {
    el("warnings-section").innerHTML = `<div class="warn"><b>Warnings</b><ul>` +
      QD.warnings.map(w => `<li>${esc(w)}</li>`).join("") + "</ul></div>";
  }
}

function coefRows() {
  const byDs = {};
  for (const r of QD.coefficients) { (byDs[r.dataset] ||= {})[r.term] = r; }
  const rows = [];
  for (const ds of Object.keys(byDs).sort()) {
    const t = byDs[ds], a = t.quality_z, b = t.diversity_z, w = t["quality_z - diversity_z"];
    if (!a || !b) continue;
    rows.push({ds, src: "this fit", a: a.estimate, aLo: a.ci_low, aHi: a.ci_high, ap: a.p_value,
      b: b.estimate, bLo: b.ci_low, bHi: b.ci_high, bp: b.p_value, r2: a.r2, n: a.n_obs,
      r: a.corr_quality_diversity, wp: w ? w.p_value : null, cov: a.cov_type});
  }
  const paper = {};
  for (const r of QD.paper) { (paper[r.dataset] ||= {})[r.term] = r; }
  for (const ds of Object.keys(paper)) {
    const a = paper[ds].quality_z, b = paper[ds].diversity_z;
    rows.push({ds, src: "paper", a: a.estimate, aLo: a.estimate - a.pm, aHi: a.estimate + a.pm,
      b: b.estimate, bLo: b.estimate - b.pm, bHi: b.estimate + b.pm, r2: a.r2, pm: a.pm, _cls: "paper"});
  }
  return rows;
}

function renderUncertainty() {
  const u = QD.uncertainty.filter(r => r.term === "quality_z" || r.term === "diversity_z");
  if (!u.length) return;
  const key = r => r.dataset + "\u0000" + r.method, rows = {};
  for (const r of u) { (rows[key(r)] ||= {dataset: r.dataset, method: r.method})[r.term] = r; }
  const cell = t => r => r[t] ? `${fmt(r[t].estimate)} <span class="note">[${fmt(r[t].ci_low)},
    ${fmt(r[t].ci_high)}]</span>` : "—";
  el("unc-table").innerHTML = `<h3>Intervals by method (uncertainty.csv)</h3>` + table([
    ["dataset", r => esc(r.dataset)], ["interval", r => esc(r.method)],
    ["α (quality)", cell("quality_z"), "num"], ["SE(α)", r => fmt(r.quality_z?.std_error), "num"],
    ["β (diversity)", cell("diversity_z"), "num"],
    ["SE(β)", r => fmt(r.diversity_z?.std_error), "num"]], Object.values(rows));
}

function renderFit() {
  const rows = coefRows();
  const ci = (r, e, lo, hi) => r.src === "paper" ? `${fmt(r[e])} ± ${fmt(r.pm)}`
    : `${fmt(r[e])} <span class="note">[${fmt(r[lo])}, ${fmt(r[hi])}]</span>`;
  el("coef-table").innerHTML = table([
    ["dataset", r => r.src === "paper" ? `${esc(r.ds)} (paper)` : esc(r.ds)],
    ["n configs", r => r.n ?? "—", "num"],
    ["α (quality)", r => ci(r, "a", "aLo", "aHi"), "num"], ["p(α)", r => fmtp(r.ap), "num"],
    ["β (diversity)", r => ci(r, "b", "bLo", "bHi"), "num"], ["p(β)", r => fmtp(r.bp), "num"],
    ["p(α = β)", r => fmtp(r.wp), "num"], ["R²", r => fmt(r.r2), "num"],
    ["r(q, d)", r => fmt(r.r), "num"]], rows);
  const cov = rows.find(r => r.cov)?.cov || "—";
  el("coef-note").innerHTML = `Brackets: 95% confidence intervals of coefficients.csv (cov_type
    <code>${esc(cov)}</code>). Italic rows: ${esc(QD.paper_id)}, estimate ± the published "±"
    (shared by α and β; most likely a standard error). Both are in performance points per
    standard deviation of the predictor, within a dataset.`;
  renderUncertainty();
  const labels = rows.map(r => r.src === "paper" ? `${r.ds} (paper)` : r.ds);
  const trace = (k, lo, hi, name, color, dy) => ({type: "scatter", mode: "markers", name,
    x: rows.map(r => r[k]), y: labels, marker: {size: 10, color},
    error_x: {type: "data", symmetric: false, array: rows.map(r => r[hi] - r[k]),
      arrayminus: rows.map(r => r[k] - r[lo]), thickness: 1.5, width: 4},
    hovertemplate: `%{y}<br>${name} = %{x:.3f}<extra></extra>`, offsetgroup: name});
  Plotly.newPlot("coef-plot", [trace("a", "aLo", "aHi", "α (quality)", "#0969da"),
    trace("b", "bLo", "bHi", "β (diversity)", "#d1242f")], {font: FONT, height: 90 + 34 * rows.length,
    margin: {l: 260, r: 30, t: 40, b: 50}, scattermode: "group",
    xaxis: {title: {text: "coefficient (performance points per SD of the predictor)"},
      zeroline: true, zerolinecolor: "#888"},
    yaxis: {autorange: "reversed", automargin: true}, legend: {orientation: "h", x: 0, y: 1.02, yanchor: "bottom"}}, CFG);
}

function plotBoxes(box, prefix, cls) {
  return QD.datasets.map((ds, di) => {
    const div = document.createElement("div");
    div.id = prefix + di; div.className = cls; box.appendChild(div);
    return div;
  });
}

function perDataset(boxId, prefix, cls, draw) {
  const box = el(boxId);
  box.className = "plots";
  // Every plot's box exists before the first is drawn, so each is drawn at its final width.
  const divs = plotBoxes(box, prefix, cls);
  QD.datasets.forEach((ds, di) => {
    const idx = [...Array(N).keys()].filter(i => C.dataset[i] === ds);
    const methods = [...new Set(idx.map(i => C.method[i]))].sort();
    draw(divs[di], ds, idx, methods);
    divs[di].on("plotly_click", ev => { if (ev.points.length) showConfig(ev.points[0].customdata); });
  });
}

function renderScatter() {
  perDataset("scatter-plots", "scatter-", "qd-scatter", (div, ds, idx, methods) => {
    const perf = idx.map(i => C.performance[i]);
    const lo = Math.min(...perf), hi = Math.max(...perf);
    const traces = methods.map((m, k) => {
      const ii = idx.filter(i => C.method[i] === m);
      return {type: "scatter", mode: "markers", name: methodLabel(m),
        x: ii.map(i => C.quality[i]), y: ii.map(i => C.diversity[i]), customdata: ii,
        text: ii.map(i => `<b>${esc(C.name[i])}</b> · ${esc(C.config_id[i])}<br>` +
          `slots: ${esc(slotsText(i))}<br>method: ${esc(methodLabel(C.method[i]))}`),
        hovertemplate: "%{text}<br>quality q = %{x:.3f}<br>diversity d = %{y:.3f}<br>" +
          "performance t = %{marker.color:.3f}<extra></extra>",
        marker: {size: 9, symbol: SYMBOL[m] || "circle", color: ii.map(i => C.performance[i]),
          cmin: lo, cmax: hi, colorscale: "Viridis", line: {width: 0.5, color: "#333"},
          showscale: k === 0, colorbar: {title: {text: "performance t"}, thickness: 14}}};
    });
    Plotly.newPlot(div, traces, {font: FONT, title: {text: esc(ds), font: {size: 16}},
      margin: {l: 70, r: 20, t: 50, b: 90}, hovermode: "closest",
      xaxis: {title: {text: QUALITY_TITLE}},
      yaxis: {title: {text: "diversity d (Vendi Score)"}},
      showlegend: true, legend: {orientation: "h", y: -0.3}}, CFG);
  });
}

function renderMethods() {
  perDataset("methods-plots", "methods-", "methods-plot", (div, ds, idx, methods) => {
    const traces = methods.map(m => {
      const ii = idx.filter(i => C.method[i] === m);
      return {type: "box", name: methodLabel(m), y: ii.map(i => C.performance[i]), customdata: ii,
        boxpoints: "all", jitter: 0.5, pointpos: 0, marker: {size: 5, opacity: 0.6},
        text: ii.map(i => `${esc(C.name[i])} · ${esc(C.config_id[i])}`),
        hovertemplate: "%{text}<br>performance t = %{y:.3f}<extra></extra>"};
    });
    const base = (QD.baselines || []).filter(b => b.dataset === ds && b.accuracy != null);
    const shapes = base.map(b => ({type: "line", xref: "paper", x0: 0, x1: 1, y0: b.accuracy,
      y1: b.accuracy, line: {dash: "dash", width: 1.5, color: "#888"}}));
    const notes = base.map(b => ({xref: "paper", x: 1, xanchor: "right", y: b.accuracy,
      yanchor: "bottom", showarrow: false, font: {size: 12, color: "#555"},
      text: `${esc(b.proposer)} alone: ${b.accuracy.toFixed(1)}`}));
    Plotly.newPlot(div, traces, {font: FONT, title: {text: esc(ds), font: {size: 16}},
      showlegend: false, margin: {l: 70, r: 20, t: 50, b: 50}, shapes, annotations: notes,
      yaxis: {title: {text: `performance t (${UNIT})`}}}, CFG);
  });
  const bestRow = r => [...Array(N).keys()].find(i => C.dataset[i] === r.dataset &&
    C.method[i] === r.method && C.name[i] === r.best_config &&
    C.performance[i] === r.performance_best && (r.aggregator == null || C.aggregator[i] === r.aggregator));
  el("methods-table").innerHTML = `<p class="note">Per dataset and method, as the toolkit's method
    table computes it from qd_table.csv: configurations, mean and best performance (click the best
    for its details). Dashed lines: each proposer type alone, the mean correct of all its outputs
    (a baseline, not a configuration of the fit).</p>` +
    table([["dataset", r => esc(r.dataset)], ["method", r => esc(methodLabel(r.method))],
      ...(QD.methods.some(r => r.aggregator != null) ? [["aggregator", r => esc(r.aggregator)]] : []),
      ["configurations", r => r.n_configs, "num"], ["mean t", r => fmt(r.performance_mean), "num"],
      ["best t", r => fmt(r.performance_best), "num"],
      ["best configuration", r => { const i = bestRow(r); return i == null ? esc(r.best_config) :
        `<a href="#detail" data-row="${i}">${esc(r.best_config)} · ${esc(C.config_id[i])}</a>`; }]],
    QD.methods);
  el("methods-table").addEventListener("click", ev => {
    const a = ev.target.closest("a[data-row]");
    if (a) showConfig(+a.dataset.row);
  });
}

function renderUsage() {
  const u = QD.usage;
  if (!u) { el("usage-table").innerHTML = `<p class="note">The outputs carry no runner columns
    (role, prompt_tokens, completion_tokens, latency_s): they were not made by qdanalysis.run.</p>`;
    return; }
  el("usage-table").innerHTML = `<p class="note">Rows of the outputs table per dataset, role and
    model: calls (rows; an offline vote or a single model's pass-through is a row without tokens),
    ok, cached; tokens summed; latency_s as each row recorded it (a batching backend records the
    whole batch's time on each of its rows).</p>` + table([
    ["dataset", r => esc(r.dataset)], ["role", r => esc(r.role)], ["model", r => esc(r.model)],
    ["calls", r => r.calls, "num"], ["ok", r => r.ok, "num"], ["cached", r => r.cached, "num"],
    ["prompt tokens", r => (r.prompt_tokens ?? 0).toLocaleString(), "num"],
    ["completion tokens", r => (r.completion_tokens ?? 0).toLocaleString(), "num"],
    ["mean latency (s)", r => fmt(r.latency_mean_s, 2), "num"],
    ["max latency (s)", r => fmt(r.latency_max_s, 2), "num"]], u);
}

function kv(obj) {
  return table([["setting", r => esc(r[0])], ["value", r => r[1] == null ? "—" : `<code>${esc(
    typeof r[1] === "object" && r[1] !== null ? JSON.stringify(r[1]) : r[1])}</code>`]],
    Object.entries(obj).sort(), "kv");
}
function renderSettings() {
  const p = QD.provenance;
  el("settings-body").innerHTML = `<h3>Parameters (qd_table.json)</h3>` + kv(QD.parameters) +
    `<h3>Inputs</h3>` + table([["file", r => `<code>${esc(r.path)}</code>`],
      ["sha256", r => `<code>${esc(r.sha256)}</code>`]], p.inputs || []) +
    `<h3>Code and command</h3>` + kv({arguments: (p.argv || []).join(" "), created_utc: p.created_utc,
      qdanalysis: p.qdanalysis_version, git_sha: p.git_sha, git_dirty: p.git_dirty,
      python: p.python}) + `<h3>Libraries</h3>` + kv(p.libraries || {});
}

// --- configuration details ---
let current = null;
const PAGE_SIZES = [10, 25, 50, 100];
function mark(c) { return c == null ? "—" : c >= 1 ? `<span class="ok">✓ ${fmt(c, 2)}</span>`
  : c <= 0 ? `<span class="bad">✗ ${fmt(c, 2)}</span>` : fmt(c, 2); }
function fold(text, open = false) {
  if (text == null) return `<span class="note">(none)</span>`;
  const t = String(text);
  if (open) return `<div>${esc(t)}</div>`;
  if (t.length <= 160) return `<pre>${esc(t)}</pre>`;
  return `<details${open ? " open" : ""}><summary>${esc(t.slice(0, 120).replace(/\s+/g, " "))}…
    (${t.length.toLocaleString()} characters)</summary><pre>${esc(t)}</pre></details>`;
}

async function showConfig(i) {
  if (i == null || i < 0 || i >= N) return;
  const di = QD.datasets.indexOf(C.dataset[i]);
  const body = el("detail-body");
  body.innerHTML = `<div class="cfg-head" id="cfg-head" data-config-id="${esc(C.config_id[i])}">
    <b>${esc(C.name[i])}</b> · <code>${esc(C.config_id[i])}</code> · ${esc(C.dataset[i])} ·
    ${esc(methodLabel(C.method[i]))} · aggregator ${esc(C.aggregator?.[i] ?? "—")}<br>
    slots: ${esc(slotsText(i))}<br>quality q = <b>${fmt(C.quality[i])}</b> · diversity d =
    <b>${fmt(C.diversity[i])}</b> · performance t = <b>${fmt(C.performance[i])}</b>
    ${C.n_questions ? `· ${C.n_questions[i]} questions` : ""}<div class="check" id="cfg-check">
    </div></div>
    <div id="questions"><p class="note">loading…</p></div>`;
  location.hash = "detail";
  el("detail").scrollIntoView();
  if (!QD.details.available) {
    el("questions").innerHTML = `<p class="note">No per-question details: the outputs table was
      not found (see the warnings). Rerun the report with --outputs.</p>`; return;
  }
  if (!QD.details.pairs) el("cfg-check").textContent = `No per-question quality, diversity or
    performance: the fit directory has no pairs.parquet (see the warnings).`;
  try {
    const [pool, cfg] = await Promise.all([getChunk("p" + di), getChunk("c" + i)]);
    if (!pool || !cfg) { el("questions").innerHTML = `<p class="note">No outputs of this
      configuration in the outputs table.</p>`; return; }
    current = {i, pool, cfg, page: 0, size: 25, filter: "all"};
    const sc = cfg.performance.filter(v => v != null);
    const mean = sc.length ? 100 * sc.reduce((a, b) => a + b, 0) / sc.length : null;
    if (QD.details.pairs) el("cfg-check").textContent = `Check: the mean of the per-question
      performance below (pairs.parquet), ×100, is ${fmt(mean)} over ${sc.length} questions;
      qd_table.csv says t = ${fmt(C.performance[i])}.`;
    renderQuestions();
  } catch (e) { el("questions").innerHTML = `<p class="bad">${esc(e.message)}</p>`; }
}

function questionOrder() {
  const {pool, cfg, filter} = current;
  const all = [...pool.qids.keys()].filter(q => cfg.performance[q] != null || cfg.agg?.[q] ||
    !QD.details.pairs);
  const slotOk = q => cfg.slots.map(k => pool.slots[k]?.[q]?.[2]);
  if (filter === "wrong") return all.filter(q => (cfg.performance[q] ?? 0) < 1);
  if (filter === "right") return all.filter(q => (cfg.performance[q] ?? 0) >= 1);
  if (filter === "split") return all.filter(q => { const s = slotOk(q);
    return s.some(c => c >= 1) && s.some(c => c < 1); });
  return all;
}

function renderQuestions() {
  const {pool, cfg} = current, order = questionOrder();
  const pages = Math.max(1, Math.ceil(order.length / current.size));
  current.page = Math.min(current.page, pages - 1);
  const shown = order.slice(current.page * current.size, (current.page + 1) * current.size);
  const opts = [["all", "all questions"], ["wrong", "aggregator wrong"], ["right", "aggregator right"],
    ["split", "proposers disagree on correctness"]];
  const source = QD.details.pairs ? "the fit's pairs.parquet (the measuring engine's values)"
    : "none (no pairs.parquet in the fit directory)";
  let h = `<div class="pager">Quality, diversity, performance per question: <b>${source}</b>. Show
    <select id="q-filter">${opts.map(([v, t]) => `<option value="${v}"${v === current.filter ?
    " selected" : ""}>${t}</option>`).join("")}</select>
    <select id="q-size">${PAGE_SIZES.map(s => `<option${s === current.size ? " selected" : ""}>${s}
    </option>`).join("")}</select> per page ·
    <button id="q-prev">◀</button>page ${current.page + 1} of ${pages}<button id="q-next">▶</button>
    (${order.length} questions)</div>`;
  for (const q of shown) {
    const slots = cfg.slots.map(k => [k, pool.slots[k]?.[q]]);
    const nOk = slots.filter(s => s[1] && s[1][2] >= 1).length;
    h += `<div class="q" data-qid="${esc(pool.qids[q])}"><b>${esc(pool.qids[q])}</b>
      · reference <code>${esc(pool.references[q])}</code> · proposers correct ${nOk} of
      ${slots.length} · q = ${fmt(cfg.quality[q], 3)} · d = ${fmt(cfg.diversity[q], 3)} ·
      performance ${mark(cfg.performance[q])}
      <div class="qtext">${fold(pool.questions[q], String(pool.questions[q] ?? "").length < 1500)}</div>
      <table class="slots"><colgroup><col class="c-slot"><col class="c-ans"><col class="c-ok">
      <col></colgroup><thead><tr><th>slot</th><th>answer</th><th>correct</th>
      <th>output</th></tr></thead><tbody>` +
      slots.map(([k, c]) => `<tr><td><code>${esc(k)}</code></td><td>${esc(c?.[1] ?? "—")}</td>
        <td>${mark(c?.[2])}</td><td class="out">${fold(c?.[0])}</td></tr>`).join("") +
      (cfg.agg?.[q] || []).map(s => `<tr class="agg"><td><b>aggregator</b> ${esc(s[1])}
        step ${fmt(s[0], 0)}${s[5] ? " (final)" : ""}</td><td>${esc(s[3] ?? "—")}</td><td>${mark(s[4])}</td>
        <td class="out">${fold(s[2])}</td></tr>`).join("") + `</tbody></table></div>`;
  }
  el("questions").innerHTML = h;
  el("q-filter").onchange = e => { current.filter = e.target.value; current.page = 0; renderQuestions(); };
  el("q-size").onchange = e => { current.size = +e.target.value; current.page = 0; renderQuestions(); };
  el("q-prev").onclick = () => { current.page = Math.max(0, current.page - 1); renderQuestions(); };
  el("q-next").onclick = () => { current.page += 1; renderQuestions(); };
}

function renderFinder() {
  el("config-list").innerHTML = [...Array(N).keys()].map(i =>
    `<option value="${esc(C.config_id[i])}">${esc(C.name[i])} · ${esc(C.dataset[i])} · t =
    ${fmt(C.performance[i])}</option>`).join("");
  el("config-search").addEventListener("change", ev => {
    const v = ev.target.value.trim();
    let i = C.config_id.indexOf(v);
    if (i < 0) i = C.name.indexOf(v);
    showConfig(i);
  });
}

renderHeader(); renderFit(); renderScatter(); renderMethods(); renderUsage(); renderSettings();
renderFinder();
window.qdReport = {showConfig, getChunk, ready: true};
document.body.dataset.ready = "1";
