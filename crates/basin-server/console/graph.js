// The Commits panel's graph: every branch and tag as a commit graph (as `git log --graph
// --all` and forges draw it), from `/api/v1/graph`: one row per commit, newest first, a lane
// per line of history, merges joining lanes, the refs at each commit as labels, and the open
// reviews of each branch beside it (a click opens the review). Pipeline
// runs' branches are folded away unless asked for. A click on a commit shows it as the log's
// rows do. Hand-written SVG, as the charts are.
"use strict";

const ROW = 26;
const LANE = 16;
const LANE_COLORS = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d"];

// Each commit's lane, and each parent link's lane: `entries` come each before its parents.
// A lane waits for the commit it leads to; a commit takes the first lane waiting for it
// (others waiting for it end there), and its first parent continues in its lane; a merged
// parent takes a lane already waiting for it, or a free one.
function layOut(entries) {
  const row = new Map(entries.map((e, i) => [e.id, i]));
  const lanes = [];
  const free = () => { const i = lanes.indexOf(null); return i >= 0 ? i : lanes.push(null) - 1; };
  const columns = [];
  const edges = [];
  entries.forEach((e, i) => {
    let column = lanes.indexOf(e.id);
    if (column < 0) column = free();
    lanes.forEach((waiting, l) => { if (waiting === e.id) lanes[l] = null; });
    columns[i] = column;
    const parents = [e.parent, e.merge_parent].filter((p) => p && row.has(p));
    parents.forEach((p, k) => {
      let lane = lanes.indexOf(p);
      if (lane < 0) lane = k === 0 && lanes[column] === null ? column : free();
      lanes[lane] = p;
      edges.push({ from: i, to: row.get(p), lane, merge: k === 1 });
    });
  });
  return { columns, edges, width: Math.max(1, ...columns.map((c) => c + 1), ...edges.map((d) => d.lane + 1)) };
}

function drawGraph(entries, onpick, reviews = []) {
  const { columns, edges, width: lanes } = layOut(entries);
  const textX = lanes * LANE + 14;
  const width = Math.max(960, textX + 900);
  const x = (lane) => 10 + lane * LANE;
  const y = (i) => ROW / 2 + i * ROW;
  const root = svgNode("svg", { viewBox: `0 0 ${width} ${entries.length * ROW}`, width, height: entries.length * ROW,
    class: "chart commit-graph", role: "img", "aria-label": `commit graph of ${entries.length} commits` });
  for (const e of edges) {
    const [c1, c2] = [columns[e.from], columns[e.to]];
    const [y1, y2] = [y(e.from), y(e.to)];
    // Out of the child into the edge's lane, down the lane, into the parent.
    const d = [`M ${x(c1)} ${y1}`];
    if (c1 !== e.lane) d.push(`C ${x(c1)} ${y1 + ROW / 2}, ${x(e.lane)} ${y1 + ROW / 2}, ${x(e.lane)} ${y1 + ROW}`);
    if (e.lane !== c2) d.push(`L ${x(e.lane)} ${y2 - ROW}`, `C ${x(e.lane)} ${y2 - ROW / 2}, ${x(c2)} ${y2 - ROW / 2}, ${x(c2)} ${y2}`);
    else d.push(`L ${x(c2)} ${y2}`);
    root.append(svgNode("path", { class: "edge", d: d.join(" "), fill: "none", "stroke-width": 2,
      stroke: LANE_COLORS[e.lane % LANE_COLORS.length], "data-from": entries[e.from].id, "data-to": entries[e.to].id,
      "data-merge": e.merge ? "true" : "false" }));
  }
  entries.forEach((e, i) => {
    const color = LANE_COLORS[columns[i] % LANE_COLORS.length];
    const line = svgNode("g", { class: "commit", "data-id": e.id, cursor: "pointer" },
      svgNode("rect", { x: 0, y: i * ROW, width, height: ROW, fill: "transparent" }),
      svgNode("circle", { class: "node", cx: x(columns[i]), cy: y(i), r: e.merge_parent ? 5.5 : 4.5,
        fill: e.merge_parent ? "#fff" : color, stroke: color, "stroke-width": 2 }),
      svgNode("title", {}, `${e.id.slice(0, 12)} ${e.message}\n${e.author} · ${when(e.created_at_ms)}`));
    let at = textX;
    const write = (content, attrs = {}, color = "#1d2330") => {
      const t = chartText({ x: at, y: y(i) + 4, "font-size": 12, ...attrs }, content, color);
      line.append(t);
      at += content.length * 7 + 10;
      return t;
    };
    write(e.id.slice(0, 12), { "font-family": "ui-monospace, monospace" }, "#6b7385");
    for (const name of e.refs) {
      const width1 = name.length * 7 + 10;
      line.append(svgNode("rect", { class: "ref", x: at - 4, y: y(i) - 9, width: width1, height: 18, rx: 9,
        fill: "#e8efff", stroke: "#2563eb" }));
      write(name, { class: "ref-name" }, "#2563eb");
      // An open review of this branch: a chip that opens it on the Reviews panel.
      for (const r of reviews.filter((r) => r.source === name)) {
        const label = `review #${r.id} → ${r.target}`;
        const chip = svgNode("g", { class: "review", "data-id": r.id, cursor: "pointer" },
          svgNode("rect", { x: at - 4, y: y(i) - 9, width: label.length * 7 + 10, height: 18, rx: 9, fill: "#fffaeb", stroke: "#b54708" }),
          svgNode("title", {}, r.title));
        chip.addEventListener("click", (event) => { event.stopPropagation(); show("reviews").then(() => showReview(r.id)); });
        line.append(chip);
        chip.append(write(label, { class: "review-name" }, "#b54708"));
      }
    }
    write(clip(e.message, 80));
    line.append(chartText({ x: width - 10, y: y(i) + 4, "font-size": 12, "text-anchor": "end" },
      `${e.author} · ${when(e.created_at_ms).slice(0, 16)}`));
    line.addEventListener("click", () => onpick(e, line));
    root.append(line);
  });
  return root;
}

// Shows every ref's commits as a graph in the Commits panel (run branches with `runs`).
async function showGraph() {
  const runs = $("graph-runs").checked;
  const [entries, reviews] = await Promise.all([
    api(`/api/v1/graph?limit=200&runs=${runs}`),
    api("/api/v1/reviews?state=open"),
  ]);
  const pickCommit = (e, line) => {
    for (const g of $("log-graph").querySelectorAll("g.commit")) g.classList.toggle("active", g === line);
    showCommit(e, null);
  };
  $("log-graph").replaceChildren(entries.length ? drawGraph(entries, pickCommit, reviews) : el("p", { class: "muted" }, "No commits."));
}
