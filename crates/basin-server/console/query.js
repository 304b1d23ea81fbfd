// The Query panel: the SQL editor beside the ref's tables and their columns (a click inserts
// the name at the cursor), Ctrl+Enter to run, the answer as a table or a chart (chart.js), and
// every row downloaded as CSV or Parquet.
"use strict";

// Only the latest run shows its answer: an earlier one that answers late changes nothing.
let latestRun = 0;

async function runQuery() {
  const sql = $("sql").value;
  const run = ++latestRun;
  showError(null);
  $("status").textContent = "running…";
  const started = performance.now();
  const entry = { sql, ref: state.ref, at: Date.now(), ok: false, rows: 0 };
  try {
    const result = await api("/api/v1/query", { sql, ref: state.ref });
    Object.assign(entry, { ok: !result.error, rows: result.row_count });
    if (run !== latestRun) return;
    showAnswer(result, sql, viewFor(sql));
    entry.view = answerView.view;
    const ms = performance.now() - started;
    // Rows stream: an error after the first rows, or a cut at the server's JSON cap, is
    // said at the end of the answer.
    if (result.error) showError(errorText(result.error));
    else if (result.truncated) showError(result.notice);
    $("status").textContent =
      `${result.error ? "failed after " : ""}${plural(result.row_count, "row")}` +
      `${result.truncated ? " (cut)" : ""} in ${(result.seconds * 1000).toFixed(1)} ms (${ms.toFixed(0)} ms round trip)`;
  } catch (e) {
    if (run !== latestRun) return;
    $("status").textContent = "failed";
    $("result").replaceChildren();
    $("views").hidden = true;
  } finally {
    remember(entry);
  }
}

// Runs the editor's SQL again with every row as a file (not cut at the JSON cap), and saves it.
async function download(format) {
  showError(null);
  $("status").textContent = `preparing ${format}…`;
  try {
    const response = await call("/api/v1/query", { sql: $("sql").value, ref: state.ref, format });
    const blob = await response.blob();
    saveBlob(blob, `query.${format}`);
  } catch (e) {
    // An error after the first rows breaks the file off: no partial file is saved.
    if ($("error").hidden) showError(`the download broke off: ${e.message}`);
    $("status").textContent = "download failed";
  }
}

// A name as SQL reads it: quoted unless it is a plain lower-case identifier.
const ident = (name) => /^[a-z_][a-z0-9_]*$/.test(name) ? name : `"${name.replace(/"/g, '""')}"`;
const tableName = (table) => table.split(".").map(ident).join(".");

// Puts `text` in the editor at the cursor, in place of the selection.
function insert(text) {
  const sql = $("sql");
  sql.focus();
  sql.setRangeText(text, sql.selectionStart, sql.selectionEnd, "end");
}

let schema = [];

async function loadSchema() {
  schema = await api(`/api/v1/tables?ref=${enc(state.ref)}&columns=true`);
  showSchema();
}

// The table list, filtered by a part of a table's or a column's name.
function showSchema() {
  const filter = $("schema-filter").value.trim().toLowerCase();
  const hit = (name) => name.toLowerCase().includes(filter);
  const shown = schema.filter((t) => !filter || hit(t.table) || t.columns.some((c) => hit(c.name)));
  const item = (t) => el("li", {},
    el("details", { open: filter !== "" },
      el("summary", {},
        el("span", { class: "insert", title: `insert ${t.table}`, onclick: (e) => { e.preventDefault(); insert(tableName(t.table)); } }, t.table)),
      el("ul", {}, ...t.columns.map((c) =>
        el("li", { class: "insert", title: `insert ${c.name}`, onclick: () => insert(ident(c.name)) },
          c.name, el("span", { class: "type" }, c.type))))));
  $("schema").replaceChildren(...shown.map(item));
  if (!schema.length) $("schema").replaceChildren(el("li", { class: "empty" }, "No tables on this ref yet."));
}

panels.query = loadSchema;

$("run").addEventListener("click", runQuery);
$("sql").addEventListener("keydown", (e) => {
  if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) { e.preventDefault(); runQuery(); }
});
$("download-csv").addEventListener("click", () => download("csv"));
$("download-parquet").addEventListener("click", () => download("parquet"));
$("schema-filter").addEventListener("input", showSchema);
