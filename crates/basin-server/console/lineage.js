// A table's lineage on the Tables panel, from `/api/v1/lineage`: the tables its rows came
// from on the left, what is built from it on the right, their writers (imports, functions,
// models, sources) between, each edge with the commit that made it. A click on a table goes
// to its page. Hand-written SVG, as the charts are.
"use strict";

const KIND_COLORS = { table: "#2563eb", import: "#6b7385", function: "#d97706", model: "#059669", source: "#7c3aed" };

// Each node's column: its signed distance from the table (upstream negative), in steps.
function lineageColumns(graph, start) {
  const column = new Map([[start, 0]]);
  for (const [way, next] of [[-1, (e) => [e.to, e.from]], [1, (e) => [e.from, e.to]]]) {
    let frontier = [start];
    for (let step = 1; frontier.length; step++) {
      const reached = [];
      for (const e of graph.edges) {
        const [here, there] = next(e);
        if (frontier.includes(here) && !column.has(there)) { column.set(there, way * step); reached.push(there); }
      }
      frontier = reached;
    }
  }
  return column;
}

function drawLineage(graph, onTable) {
  const start = `table:${graph.table}`;
  const column = lineageColumns(graph, start);
  const columns = [...new Set(column.values())].sort((a, b) => a - b);
  const [boxW, boxH, gapX, gapY] = [170, 34, 60, 14];
  const rows = new Map();
  const at = new Map();
  for (const n of graph.nodes) {
    const c = columns.indexOf(column.get(n.id) ?? 0);
    const r = rows.get(c) || 0;
    rows.set(c, r + 1);
    at.set(n.id, { x: 10 + c * (boxW + gapX), y: 10 + r * (boxH + gapY) });
  }
  const width = 20 + columns.length * (boxW + gapX) - gapX;
  const height = 20 + Math.max(1, ...rows.values()) * (boxH + gapY) - gapY;
  const root = svgNode("svg", { viewBox: `0 0 ${width} ${height}`, width, height, class: "chart lineage", role: "img",
    "aria-label": `lineage of ${graph.table} on ${graph.ref}` });
  for (const e of graph.edges) {
    const [a, b] = [at.get(e.from), at.get(e.to)];
    if (!a || !b) continue;
    const [x1, y1, x2, y2] = [a.x + boxW, a.y + boxH / 2, b.x, b.y + boxH / 2];
    root.append(svgNode("path", { class: "edge", d: `M ${x1} ${y1} C ${x1 + gapX / 2} ${y1}, ${x2 - gapX / 2} ${y2}, ${x2} ${y2}`,
      fill: "none", stroke: "#9ca3af", "stroke-width": 1.5, "marker-end": "url(#arrow)", "data-from": e.from, "data-to": e.to },
    svgNode("title", {}, `${e.from} → ${e.to}\ncommit ${e.commit.slice(0, 12)} · ${when(e.at_ms)}`)));
  }
  root.prepend(svgNode("defs", {}, svgNode("marker", { id: "arrow", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto" },
    svgNode("path", { d: "M 0 0 L 10 5 L 0 10 z", fill: "#9ca3af" }))));
  for (const n of graph.nodes) {
    const { x, y } = at.get(n.id);
    const color = KIND_COLORS[n.kind] || "#6b7385";
    const table = n.kind === "table";
    const box = svgNode("g", { class: "node", "data-id": n.id, cursor: table ? "pointer" : "default" },
      svgNode("rect", { x, y, width: boxW, height: boxH, rx: table ? 4 : 17, fill: n.id === start ? "#e8efff" : "#fff",
        stroke: color, "stroke-width": n.id === start ? 2.5 : 1.5 }),
      chartText({ x: x + 10, y: y + 13, "font-size": 10 }, table ? "table" : n.kind, color),
      chartText({ x: x + 10, y: y + 27, "font-size": 12 }, clip(n.name, 24), "#1d2330"),
      svgNode("title", {}, `${n.kind} ${n.name}`));
    if (table && n.id !== start) box.addEventListener("click", () => onTable(n.name));
    root.append(box);
  }
  return root;
}

// The lineage section of a table's page.
async function lineageSection(name) {
  const graph = await api(`/api/v1/lineage?table=${enc(name)}&ref=${enc(state.ref)}&depth=3`);
  const body = graph.edges.length
    ? el("div", { class: "picture", id: "table-lineage" }, drawLineage(graph, (table) => showTable(table, null)))
    : el("p", { class: "muted" }, "No lineage recorded: no commit on this ref says who wrote this table.");
  return [el("h2", {}, "Lineage"), body];
}
