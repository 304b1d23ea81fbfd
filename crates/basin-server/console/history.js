// Query history, kept by this browser (localStorage, never sent anywhere): the last 100
// distinct queries, newest first, with the ref, when, how many rows or that it failed, and
// the chart it was last seen as. A click puts one back in the editor; run again, it shows as
// it was last seen.
"use strict";

const HISTORY = "basin.history";
const HISTORY_SIZE = 100;

function pastQueries() {
  try {
    const list = JSON.parse(localStorage.getItem(HISTORY));
    return Array.isArray(list) ? list : [];
  } catch {
    return [];
  }
}

// Adds a query that ran (a run of the same SQL again moves it to the top).
function remember(entry) {
  const list = [entry, ...pastQueries().filter((q) => q.sql !== entry.sql)].slice(0, HISTORY_SIZE);
  localStorage.setItem(HISTORY, JSON.stringify(list));
  showHistory();
}

// The view (table, bar, line, scatter) `sql` was last seen as.
const viewFor = (sql) => pastQueries().find((q) => q.sql === sql)?.view || "table";

// Remembers the view a query's answer is now seen as.
function rememberView(sql, view) {
  const list = pastQueries().map((q) => (q.sql === sql ? { ...q, view } : q));
  localStorage.setItem(HISTORY, JSON.stringify(list));
  showHistory();
}

function showHistory() {
  const item = (q) => el("li", {
    title: q.sql,
    onclick: () => { $("sql").value = q.sql; $("sql").focus(); },
  },
  el("code", {}, q.sql.replace(/\s+/g, " ").trim()),
  el("small", { class: q.ok ? "" : "status-failed" },
    `${q.ref} · ${when(q.at).slice(5, 16)} · ${q.ok ? plural(q.rows, "row") : "failed"}` +
    `${q.view && q.view !== "table" ? ` · ${q.view} chart` : ""}`));
  const list = pastQueries();
  $("history").replaceChildren(...list.map(item));
  if (!list.length) $("history").replaceChildren(el("li", { class: "empty" }, "Queries you run show here."));
}

$("history-clear").addEventListener("click", () => { localStorage.removeItem(HISTORY); showHistory(); });
showHistory();
