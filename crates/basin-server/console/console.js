// Basin's console: plain JavaScript over the HTTP API (/api/v1), no build step and nothing
// fetched from the internet. Every panel reads the ref chosen at the top.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { ref: "main", panel: "query" };

function headers() {
  const h = { "content-type": "application/json" };
  const token = $("token").value.trim();
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

// Calls the API; shows its error (message and hint) and throws on failure.
async function api(path, body) {
  const response = await fetch(path, body === undefined
    ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  const data = await response.json().catch(() => null);
  if (!response.ok) {
    const e = data && data.error ? data.error : { message: `${response.status} ${response.statusText}` };
    showError(e.message + (e.hint ? `\nhint: ${e.hint}` : ""));
    throw new Error(e.message);
  }
  return data;
}

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A table of `rows` (objects) with `columns` (names); numbers right-aligned, and the columns
// named in `numeric`, whose values may come as strings. The API sends decimals ("10.50") and
// integers past 2^53 as strings, so they show exactly as stored: never parse them to numbers.
function grid(columns, rows, numeric = new Set()) {
  const cell = (c, v) => {
    const text = v === null || v === undefined ? "NULL" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return el("td", { class: typeof v === "number" || numeric.has(c) ? "num" : "" }, text);
  };
  return el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, ...rows.map((r) => el("tr", {}, ...columns.map((c) => cell(c, r[c]))))));
}

// The grid of a query answer: its columns in order, numeric types right-aligned.
function answerGrid(answer) {
  const numeric = /^(U?Int|Float|Decimal)/;
  return grid(answer.columns.map((c) => c.name), answer.rows,
    new Set(answer.columns.filter((c) => numeric.test(c.type)).map((c) => c.name)));
}

const when = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);

async function loadRefs() {
  const refs = await api("/api/v1/refs");
  const select = $("ref");
  select.replaceChildren(...refs.map((r) => el("option", { value: r.name }, `${r.name} (${r.kind})`)));
  select.value = refs.some((r) => r.name === state.ref) ? state.ref : "main";
  state.ref = select.value;
}

// Only the latest run shows its answer: an earlier one that answers late changes nothing.
let latestRun = 0;

async function runQuery() {
  const sql = $("sql").value;
  const run = ++latestRun;
  showError(null);
  $("status").textContent = "running…";
  const started = performance.now();
  try {
    const result = await api("/api/v1/query", { sql, ref: state.ref });
    if (run !== latestRun) return;
    $("result").replaceChildren(answerGrid(result));
    const ms = performance.now() - started;
    // Rows stream: an error after the first rows, or a cut at the server's JSON cap, is
    // said at the end of the answer.
    if (result.error) showError(result.error.message + (result.error.hint ? `\nhint: ${result.error.hint}` : ""));
    else if (result.truncated) showError(result.notice);
    $("status").textContent =
      `${result.error ? "failed after " : ""}${result.row_count} row${result.row_count === 1 ? "" : "s"}` +
      `${result.truncated ? " (cut)" : ""} in ${(result.seconds * 1000).toFixed(1)} ms (${ms.toFixed(0)} ms round trip)`;
  } catch (e) {
    if (run !== latestRun) return;
    $("status").textContent = "failed";
    $("result").replaceChildren();
  }
}

async function showTables() {
  const tables = await api(`/api/v1/tables?ref=${encodeURIComponent(state.ref)}`);
  $("table-list").replaceChildren(...tables.map((t) =>
    el("li", { onclick: (e) => showTable(t.table, e.currentTarget) }, t.table)));
  $("table-detail").replaceChildren(tables.length ? "Pick a table." : "No tables on this ref yet.");
}

async function showTable(name, item) {
  for (const li of $("table-list").children) li.classList.toggle("active", li === item);
  const ref = encodeURIComponent(state.ref);
  const table = await api(`/api/v1/tables/${encodeURIComponent(name)}?ref=${ref}`);
  const sample = await api("/api/v1/query", { sql: `SELECT * FROM ${name} LIMIT 20`, ref: state.ref });
  $("table-detail").replaceChildren(
    el("h2", {}, `${table.table}: ${table.rows} rows, ${table.data_files} files`),
    el("h2", {}, "Schema"),
    el("div", { class: "grid" }, grid(["id", "name", "type", "required"], table.columns)),
    el("h2", {}, "Snapshots"),
    el("div", { class: "grid" }, grid(["snapshot_id", "operation", "time", "added_records", "total_records"],
      table.snapshots.map((s) => ({ ...s, time: when(s.timestamp_ms) })).reverse())),
    el("h2", {}, "Sample rows"),
    el("div", { class: "grid" }, answerGrid(sample)));
}

async function showLog() {
  const entries = await api(`/api/v1/log?ref=${encodeURIComponent(state.ref)}&limit=100`);
  $("log-grid").replaceChildren(grid(["commit", "time", "author", "message", "changed"],
    entries.map((c) => ({ commit: c.id.slice(0, 12), time: when(c.created_at_ms), author: c.author,
      message: c.message, changed: c.changed.join(", ") }))));
}

async function showRuns() {
  const runs = await api("/api/v1/runs");
  $("run-list").replaceChildren(...runs.map((r) =>
    el("li", { onclick: (e) => showRun(r.id, e.currentTarget) },
      el("span", { class: `status-${r.status}` }, r.status), ` ${r.project} · ${when(r.started_at_ms)}`)));
  $("run-detail").replaceChildren(runs.length ? "Pick a run." : "No pipeline runs yet (basin run).");
}

async function showRun(id, item) {
  for (const li of $("run-list").children) li.classList.toggle("active", li === item);
  const run = await api(`/api/v1/runs/${encodeURIComponent(id)}`);
  const models = run.models.map((m) => ({ model: m.name, kind: m.kind, status: m.cache_hit ? "cached" : m.status,
    ms: Math.round(m.ms), rows: m.rows, table: m.table, error: m.error }));
  $("run-detail").replaceChildren(
    el("h2", {}, `Run ${run.id} of ${run.project} into ${run.target}: `, el("span", { class: `status-${run.status}` }, run.status)),
    run.error ? el("pre", {}, run.error) : null,
    el("div", { class: "grid" }, grid(["model", "kind", "status", "ms", "rows", "table", "error"], models)),
    ...run.models.filter((m) => m.logs.length).flatMap((m) => [el("h2", {}, `Logs of ${m.name}`), el("pre", {}, m.logs.join("\n"))]));
}

// One bar chart per measure, drawn as SVG by hand (no chart library to fetch).
function bars(title, rows, value, format) {
  const width = 560, height = 140, pad = 28;
  const highest = Math.max(...rows.map(value), 0);
  const max = highest || 1;
  const step = (width - pad) / Math.max(rows.length, 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("width", width);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  rows.forEach((r, i) => {
    const h = (value(r) / max) * (height - 20);
    const rect = document.createElementNS(svg.namespaceURI, "rect");
    Object.entries({ x: pad + i * step + 2, y: height - h, width: Math.max(step - 4, 2), height: h })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    const tip = document.createElementNS(svg.namespaceURI, "title");
    tip.textContent = `${r.key}: ${format(value(r))}`;
    rect.append(tip);
    const label = document.createElementNS(svg.namespaceURI, "text");
    label.setAttribute("x", pad + i * step + 2);
    label.setAttribute("y", height + 14);
    label.textContent = r.key.slice(5);
    svg.append(rect, label);
  });
  const top = document.createElementNS(svg.namespaceURI, "text");
  top.setAttribute("x", 0);
  top.setAttribute("y", 12);
  top.textContent = format(highest);
  svg.append(top);
  return el("div", {}, el("h2", {}, title), svg);
}

async function showUsage() {
  const usage = await api("/api/v1/usage?by=day");
  const rows = usage.rows;
  $("usage-chart").replaceChildren(
    bars("Invocations and queries per day", rows, (r) => r.invocations, (v) => String(v)),
    bars("GB-seconds per day", rows, (r) => r.gb_seconds, (v) => v.toFixed(3)),
    bars("Cost per day (USD)", rows, (r) => r.cost_usd, (v) => `$${v.toFixed(6)}`));
  $("usage-grid").replaceChildren(grid(["key", "invocations", "errors", "gb_seconds", "bytes_scanned", "cost_usd"],
    rows.map((r) => ({ ...r, gb_seconds: +r.gb_seconds.toFixed(3), cost_usd: +r.cost_usd.toFixed(6) }))));
}

const panels = { query: () => {}, tables: showTables, log: showLog, runs: showRuns, usage: showUsage };

async function show(panel) {
  state.panel = panel;
  showError(null);
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.panel === panel);
  for (const p of Object.keys(panels)) $(p).hidden = p !== panel;
  await panels[panel]().catch(() => {});
}

function init() {
  $("token").value = localStorage.getItem("basin.token") || "";
  $("token").addEventListener("change", () => {
    localStorage.setItem("basin.token", $("token").value.trim());
    loadRefs().then(() => show(state.panel)).catch(() => {});
  });
  $("ref").addEventListener("change", () => { state.ref = $("ref").value; show(state.panel); });
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.panel));
  $("run").addEventListener("click", runQuery);
  $("sql").addEventListener("keydown", (e) => {
    if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runQuery(); }
  });
  loadRefs().catch(() => {});
}

init();
