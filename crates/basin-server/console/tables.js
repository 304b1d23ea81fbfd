// The Tables panel (schema, snapshots and sample rows of each table) and the Commits panel
// (the ref's log; a commit shows what it changed, table by table, and the tables it holds).
"use strict";

async function showTables() {
  const tables = await api(`/api/v1/tables?ref=${enc(state.ref)}`);
  $("table-list").replaceChildren(...tables.map((t) =>
    el("li", { onclick: (e) => showTable(t.table, e.currentTarget) }, t.table)));
  $("table-detail").replaceChildren(tables.length ? "Pick a table." : "No tables on this ref yet.");
}

async function showTable(name, item) {
  // From a lineage's click, the table's entry in the list is the one picked.
  pick(item || [...$("table-list").children].find((li) => li.textContent === name) || $("table-list").firstChild);
  const [table, sample, lineage] = await Promise.all([
    api(`/api/v1/tables/${enc(name)}?ref=${enc(state.ref)}`),
    api("/api/v1/query", { sql: `SELECT * FROM ${tableName(name)} LIMIT 20`, ref: state.ref }),
    lineageSection(name),
  ]);
  $("table-detail").replaceChildren(
    el("h2", {}, `${table.table}: ${table.rows} rows, ${table.data_files} files`),
    ...lineage,
    el("h2", {}, "Schema"),
    el("div", { class: "grid" }, grid(["id", "name", "type", "required"], table.columns)),
    el("h2", {}, "Snapshots"),
    el("div", { class: "grid" }, grid(["snapshot_id", "operation", "time", "added_records", "total_records"],
      table.snapshots.map((s) => ({ ...s, time: when(s.timestamp_ms) })).reverse())),
    el("h2", {}, "Sample rows"),
    el("div", { class: "grid" }, answerGrid(sample)));
}

async function showLog() {
  const graph = $("log-view-graph").checked;
  $("log-grid").hidden = graph;
  $("log-graph").hidden = !graph;
  $("graph-runs-label").hidden = !graph;
  if (graph) {
    $("commit-detail").replaceChildren(el("p", { class: "muted" }, "Pick a commit to see what it changed and the tables it holds."));
    return showGraph();
  }
  const entries = await api(`/api/v1/log?ref=${enc(state.ref)}&limit=100`);
  const rows = entries.map((c) => ({ commit: c.id.slice(0, 12), time: when(c.created_at_ms), author: c.author,
    door: c.door || "", message: c.message, changed: c.changed.join(", ") }));
  $("log-grid").replaceChildren(grid(["commit", "time", "author", "door", "message", "changed"], rows,
    { onclick: (i, tr) => showCommit(entries[i], tr) }));
  $("commit-detail").replaceChildren(el("p", { class: "muted" },
    entries.length ? "Pick a commit to see what it changed and the tables it holds." : "No commits."));
}

// `+3 -1` for rows or files added and removed.
const signed = (added, removed) =>
  [added ? `+${added}` : "", removed ? `-${removed}` : ""].filter(Boolean).join(" ") || "0";

// A diff (`/api/v1/diff`, a review's changes) as grid rows, table by table.
const DIFF_COLUMNS = ["name", "kind", "change", "rows", "files", "snapshot"];
const diffRows = (changes) => changes.map((d) => {
  const table = (d.from || d.to || {}).type === "table";
  return {
    name: d.key, kind: table ? "table" : "namespace", change: d.change,
    rows: table ? signed(d.rows_added, d.rows_removed) : "", files: table ? signed(d.files_added, d.files_removed) : "",
    snapshot: table ? `${d.from_snapshot || "-"} → ${d.to_snapshot || "-"}` : "",
  };
});

// One commit: its changes against its parent (as `basin diff`) and the tables it holds.
async function showCommit(commit, row) {
  if (row) pick(row);
  const at = `@${commit.id}`;
  const [tables, changes] = await Promise.all([
    api(`/api/v1/tables?ref=${enc(at)}`),
    commit.parent ? api(`/api/v1/diff?from=${enc("@" + commit.parent)}&to=${enc(at)}`) : [],
  ]);
  const changeRows = diffRows(changes);
  // Past commits are read as BRANCH@COMMIT, so the ref stays the one they belong to.
  const base = state.ref.split("@")[0] || "main";
  const ref = `${base}@${commit.id.slice(0, 12)}`;
  $("commit-detail").replaceChildren(
    el("h2", {}, `Commit ${commit.id.slice(0, 12)}: ${commit.message}`),
    facts([["author", commit.author], ["door", commit.door], ["time", when(commit.created_at_ms)],
      ["parent", commit.parent ? commit.parent.slice(0, 12) : "none (the first commit)"],
      ["merged", commit.merge_parent ? commit.merge_parent.slice(0, 12) : null]]),
    el("h2", {}, "Changes"),
    changeRows.length
      ? el("div", { class: "grid", id: "commit-changes" }, grid(DIFF_COLUMNS, changeRows))
      : el("p", { class: "muted" }, "No differences from its parent."),
    el("h2", {}, `Tables at this commit (${tables.length})`),
    el("ul", { class: "chips", id: "commit-tables" }, ...tables.map((t) => el("li", {}, t.table))),
    el("button", { type: "button", onclick: () => useRef(ref, "query") }, `Query at ${ref}`));
}

panels.tables = showTables;
panels.log = showLog;
for (const id of ["log-view-ref", "log-view-graph", "graph-runs"]) $(id).addEventListener("change", showLog);
