// A pipeline run's DAG on the Runs panel: the tables it read on the left, each model after
// the models it reads, the expectations last; each model boxed with its state, time, rows and
// whether its output came from the cache. A click on a model shows its code, logs and output
// table. Hand-written SVG, as the charts are.
"use strict";

const STATE_COLORS = { ok: "#067647", cached: "#067647", failed: "#b42318", running: "#b54708", cancelled: "#6b7385" };

// Each node's column: tables 0, a model one past the furthest of its inputs, expectations last.
function dagColumns(run) {
  const models = new Map(run.models.filter((m) => m.kind !== "expectation").map((m) => [m.name, m]));
  const column = new Map();
  const of = (name, seen = new Set()) => {
    if (column.has(name)) return column.get(name);
    const model = models.get(name);
    if (!model || seen.has(name)) { column.set(name, 0); return 0; }
    seen.add(name);
    const c = 1 + Math.max(0, ...(model.inputs || []).map((i) => of(i, seen)));
    column.set(name, c);
    return c;
  };
  for (const name of models.keys()) of(name);
  const last = Math.max(0, ...column.values()) + 1;
  for (const m of run.models) if (m.kind === "expectation") column.set(`expect:${m.name}`, last);
  return column;
}

function drawRunDag(run, onModel) {
  const column = dagColumns(run);
  const [boxW, boxH, gapX, gapY] = [190, 48, 56, 14];
  const rows = new Map();
  const at = new Map();
  for (const [name, c] of [...column.entries()].sort((a, b) => a[1] - b[1])) {
    const r = rows.get(c) || 0;
    rows.set(c, r + 1);
    at.set(name, { x: 10 + c * (boxW + gapX), y: 10 + r * (boxH + gapY) });
  }
  const columns = Math.max(...column.values()) + 1;
  const width = 20 + columns * (boxW + gapX) - gapX;
  const height = 20 + Math.max(1, ...rows.values()) * (boxH + gapY) - gapY;
  const root = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart run-dag", role: "img",
    "aria-label": `the DAG of run ${run.id}` });
  root.append(svgNode("defs", {}, svgNode("marker", { id: "run-arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    svgNode("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9ca3af" }))));
  for (const m of run.models) {
    for (const input of m.inputs || []) {
      const [a, b] = [at.get(input), at.get(m.name)];
      if (!a || !b) continue;
      const [x1, y1, x2, y2] = [a.x + boxW, a.y + boxH / 2, b.x, b.y + boxH / 2];
      root.append(svgNode("path", { class: "edge", d: `M ${x1} ${y1} C ${x1 + gapX / 2} ${y1}, ${x2 - gapX / 2} ${y2}, ${x2} ${y2}`,
        fill: "none", stroke: "#9ca3af", "stroke-width": 1.5, "marker-end": "url(#run-arrow)", "data-from": input, "data-to": m.name }));
    }
  }
  const byName = new Map(run.models.map((m) => [m.kind === "expectation" ? `expect:${m.name}` : m.name, m]));
  for (const [name, { x, y }] of at) {
    const m = byName.get(name);
    const state = m ? (m.cache_hit ? "cached" : m.status) : "table";
    const color = STATE_COLORS[state] || "#2563eb";
    const facts = m ? `${state} · ${Math.round(m.ms)} ms${m.kind === "expectation" ? "" : ` · ${m.rows} rows`}` : "table read";
    const node = svgNode("g", { class: m ? "model" : "input", "data-name": m ? m.name : name, "data-state": state, cursor: m ? "pointer" : "default" },
      svgNode("rect", { x, y, width: boxW, height: boxH, rx: m ? 8 : 3, fill: "#fff", stroke: color, "stroke-width": m ? 2 : 1.2 }),
      chartText({ x: x + 10, y: y + 15, "font-size": 10 }, m ? m.kind : "table", color),
      chartText({ x: x + 10, y: y + 29, "font-size": 12 }, clip(m ? m.name : name, 26), "#1d2330"),
      chartText({ x: x + 10, y: y + 42, "font-size": 10 }, facts),
      svgNode("title", {}, m && m.error ? `${m.name}: ${m.error}` : m ? m.name : name));
    if (m) node.addEventListener("click", () => onModel(m));
    root.append(node);
  }
  return root;
}

// What a click on a model shows: its code (from the files the run kept), logs and table.
function modelDetail(run, m) {
  const file = Object.keys(run.code || {}).find((f) => f.replace(/^.*\//, "").replace(/\.(py|sql)$/, "") === m.name);
  return el("div", { id: "run-model" },
    el("h2", {}, `${m.kind === "expectation" ? "Expectation" : "Model"} ${m.name}: `, status(m.cache_hit ? "cached" : m.status)),
    facts([["time", `${Math.round(m.ms)} ms`], ["rows", m.kind === "expectation" ? null : m.rows], ["reads", (m.inputs || []).join(", ")],
      ["table", m.table], ["commit", m.commit ? m.commit.slice(0, 12) : null], ["node", m.node], ["error", m.error]]),
    m.table ? el("button", { type: "button", onclick: () => { show("tables"); showTable(m.table, null); } }, `Open ${m.table}`) : null,
    file ? el("h2", {}, `Code (${file})`) : null,
    file ? el("pre", { class: "code" }, run.code[file]) : null,
    el("h2", {}, "Logs"),
    m.logs.length ? el("pre", {}, m.logs.join("\n")) : el("p", { class: "muted" }, "No log lines."));
}
