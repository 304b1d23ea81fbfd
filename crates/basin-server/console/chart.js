// Charts of a query's answer, drawn as SVG by hand (the page loads nothing from elsewhere, and
// three kinds of chart are a few hundred lines): bars for labels and numbers, a line over
// dates, points for two numbers. The kind is chosen from the columns' types and can be
// switched; the view is remembered with the query in the history; a chart downloads as SVG
// or PNG.
"use strict";

const NUMBER_TYPE = /^(U?Int|Float|Decimal)/;
const TIME_TYPE = /^(Date|Timestamp)/;
// The most rows a chart draws (bars need room; lines and points less).
const MOST_ROWS = { bar: 100, line: 2000, scatter: 2000 };
const PALETTE = ["#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2"];
const SIZE = { width: 760, height: 340, left: 72, right: 16, top: 28, bottom: 70 };

// What an answer can be drawn as: the label column (x), the numeric columns (the series),
// the kinds that fit and the one chosen for these types; null when nothing fits.
function chartPlan(answer) {
  const columns = answer.columns || [];
  const numeric = columns.flatMap((c, i) => (NUMBER_TYPE.test(c.type) ? [i] : []));
  if (!answer.rows || !answer.rows.length || !numeric.length) return null;
  const label = columns.findIndex((c) => !NUMBER_TYPE.test(c.type));
  if (label >= 0) {
    const kinds = numeric.length >= 2 ? ["bar", "line", "scatter"] : ["bar", "line"];
    return { label, series: numeric, kinds, auto: TIME_TYPE.test(columns[label].type) ? "line" : "bar" };
  }
  if (numeric.length >= 2) return { label: numeric[0], series: numeric.slice(1), kinds: ["scatter", "line", "bar"], auto: "scatter" };
  return null;
}

// A value as a number (decimals and big integers come as exact strings); NaN for a null.
const asNumber = (v) => (v === null || v === undefined ? NaN : Number(v));

// Tick values spanning [low, high]: about five, at 1, 2 or 5 times a power of ten.
function ticks(low, high) {
  if (low === high) { low -= 1; high += 1; }
  const rough = (high - low) / 5;
  const power = 10 ** Math.floor(Math.log10(rough));
  const step = [1, 2, 5, 10].map((m) => m * power).find((s) => s >= rough);
  const first = Math.floor(low / step) * step;
  const out = [];
  for (let t = first; t <= high + step * 1e-9; t += step) out.push(Number(t.toPrecision(12)));
  if (out[out.length - 1] < high) out.push(Number((out[out.length - 1] + step).toPrecision(12)));
  return out;
}

const compact = new Intl.NumberFormat("en", { notation: "compact", maximumFractionDigits: 2 });
const clip = (text, n) => (text.length > n ? `${text.slice(0, n - 1)}…` : text);

// Text on the chart, styled by attributes (not the page's CSS) so a downloaded file looks
// the same.
const chartText = (attrs, content, color = "#6b7385") =>
  svgNode("text", { fill: color, "font-size": 11, "font-family": "system-ui, sans-serif", ...attrs }, content);

function svgNode(tag, attrs = {}, ...children) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) if (v !== null && v !== undefined) node.setAttribute(k, v);
  for (const child of children) if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  return node;
}

// The chart of `answer` as `kind`: an <svg> whose marks carry data-label, data-series and
// data-value (what they stand for), each with a tooltip.
function drawChart(answer, plan, kind) {
  const { width, height, left, right, top, bottom } = SIZE;
  const rows = answer.rows.slice(0, MOST_ROWS[kind]);
  const names = answer.columns.map((c) => c.name);
  const plotW = width - left - right, plotH = height - top - bottom;
  // Points need a number across: the label column when it is one, else the first series.
  const across = kind === "scatter" && !NUMBER_TYPE.test(answer.columns[plan.label].type) ? plan.series[0] : plan.label;
  const series = across === plan.label ? plan.series : plan.series.slice(1);
  const values = series.flatMap((s) => rows.map((r) => asNumber(r[names[s]]))).filter(Number.isFinite);
  const yTicks = ticks(Math.min(0, ...values), Math.max(0, ...values));
  const [yLow, yHigh] = [yTicks[0], yTicks[yTicks.length - 1]];
  const y = (v) => top + plotH - ((v - yLow) / (yHigh - yLow)) * plotH;
  const root = svgNode("svg", { xmlns: "http://www.w3.org/2000/svg", viewBox: `0 0 ${width} ${height}`, width, height, class: `chart chart-${kind}`, role: "img",
    "aria-label": `${kind} chart of ${series.map((s) => names[s]).join(", ")} by ${names[across]}` });
  root.append(svgNode("rect", { x: 0, y: 0, width, height, fill: "#fff" }));
  for (const t of yTicks) {
    root.append(svgNode("line", { x1: left, x2: width - right, y1: y(t), y2: y(t), stroke: "#e5e7eb" }),
      chartText({ x: left - 6, y: y(t) + 4, "text-anchor": "end" }, compact.format(t)));
  }
  let x, xLabel;
  if (kind === "scatter") {
    const xs = rows.map((r) => asNumber(r[names[across]])).filter(Number.isFinite);
    const xTicks = ticks(Math.min(...xs), Math.max(...xs));
    const [xLow, xHigh] = [xTicks[0], xTicks[xTicks.length - 1]];
    x = (r) => left + ((asNumber(r[names[across]]) - xLow) / (xHigh - xLow)) * plotW;
    for (const t of xTicks) {
      const at = left + ((t - xLow) / (xHigh - xLow)) * plotW;
      root.append(chartText({ x: at, y: top + plotH + 16, "text-anchor": "middle" }, compact.format(t)));
    }
  } else {
    const band = plotW / rows.length;
    x = (r, i) => left + band * (i + 0.5);
    xLabel = band;
    const every = Math.ceil(rows.length / 24);
    const slanted = rows.length > 8;
    rows.forEach((r, i) => {
      if (i % every) return;
      const at = x(r, i);
      root.append(chartText({ x: at, y: top + plotH + 14, "text-anchor": slanted ? "end" : "middle",
        transform: slanted ? `rotate(-35 ${at} ${top + plotH + 14})` : null }, clip(String(r[names[plan.label]] ?? "NULL"), 14)));
    });
  }
  root.append(svgNode("line", { x1: left, x2: width - right, y1: y(Math.max(0, yLow)), y2: y(Math.max(0, yLow)), stroke: "#9ca3af" }));
  series.forEach((s, k) => {
    const color = PALETTE[k % PALETTE.length];
    const mark = (r, i, node) => {
      node.setAttribute("data-label", String(r[names[plan.label]] ?? "NULL"));
      node.setAttribute("data-series", names[s]);
      node.setAttribute("data-value", String(r[names[s]]));
      node.append(svgNode("title", {}, `${r[names[plan.label]] ?? "NULL"} · ${names[s]}: ${r[names[s]] ?? "NULL"}`));
      return node;
    };
    const drawn = rows.map((r, i) => [r, i]).filter(([r]) => Number.isFinite(asNumber(r[names[s]])) && (kind !== "scatter" || Number.isFinite(asNumber(r[names[across]]))));
    if (kind === "bar") {
      const width1 = (xLabel * 0.8) / series.length;
      for (const [r, i] of drawn) {
        const v = asNumber(r[names[s]]);
        const x0 = x(r, i) - xLabel * 0.4 + width1 * k;
        const [top0, bottom0] = [Math.min(y(v), y(0)), Math.max(y(v), y(0))];
        root.append(mark(r, i, svgNode("rect", { class: "mark", x: x0, y: top0, width: Math.max(width1 - 1, 1), height: Math.max(bottom0 - top0, 0.5), fill: color })));
      }
    } else {
      if (kind === "line") {
        root.append(svgNode("polyline", { fill: "none", stroke: color, "stroke-width": 2, points: drawn.map(([r, i]) => `${x(r, i)},${y(asNumber(r[names[s]]))}`).join(" ") }));
      }
      const radius = kind === "scatter" ? 3.5 : drawn.length <= 60 ? 3 : 1.5;
      for (const [r, i] of drawn) root.append(mark(r, i, svgNode("circle", { class: "mark", cx: x(r, i), cy: y(asNumber(r[names[s]])), r: radius, fill: color, "fill-opacity": kind === "scatter" ? 0.7 : 1 })));
    }
    root.append(svgNode("rect", { x: left + 8 + k * 140, y: 8, width: 10, height: 10, fill: color }),
      chartText({ x: left + 22 + k * 140, y: 17 }, clip(names[s], 18), "#1d2330"));
  });
  root.append(chartText({ x: left + plotW / 2, y: height - 4, "text-anchor": "middle" }, names[across], "#1d2330"));
  if (answer.rows.length > rows.length) {
    root.append(chartText({ x: width - right, y: 17, "text-anchor": "end" }, `first ${rows.length} of ${answer.rows.length} rows`));
  }
  return root;
}

// The view of the answer shown now, and the answer itself, for switching and downloads.
const answerView = { answer: null, plan: null, view: "table", sql: null };

// Shows an answer as a table or a chart: `view` is what the history remembers for its SQL
// ("table" unless it was last seen as a chart that still fits).
function showAnswer(answer, sql, view) {
  const plan = chartPlan(answer);
  Object.assign(answerView, { answer, plan, sql, view: plan && plan.kinds.includes(view) ? view : "table" });
  drawView();
}

function drawView() {
  const { answer, plan, view } = answerView;
  const buttons = [["table", "Table"], ["bar", "Bar"], ["line", "Line"], ["scatter", "Scatter"]].map(([kind, label]) =>
    el("button", { type: "button", "data-view": kind, class: kind === view ? "active" : null,
      disabled: kind !== "table" && !(plan && plan.kinds.includes(kind)),
      title: kind === "table" ? "the rows" : plan && plan.auto === kind ? `${label}: chosen for these columns` : label,
      onclick: () => switchView(kind) }, plan && plan.auto === kind ? `${label} ✓` : label));
  const downloads = view === "table" ? [] : [
    el("button", { type: "button", id: "chart-svg", onclick: () => saveChart("svg") }, "SVG"),
    el("button", { type: "button", id: "chart-png", onclick: () => saveChart("png") }, "PNG")];
  $("views").replaceChildren(...buttons, ...downloads);
  $("views").hidden = !answer;
  if (!answer) return;
  $("result").classList.toggle("charted", view !== "table");
  $("result").replaceChildren(view === "table" ? answerGrid(answer) : drawChart(answer, plan, view));
}

function switchView(kind) {
  answerView.view = kind;
  rememberView(answerView.sql, kind);
  drawView();
}

// Saves the chart shown as an SVG file, or as a PNG drawn from it at twice its size.
async function saveChart(format) {
  const chart = $("result").querySelector("svg");
  if (!chart) return;
  const text = new XMLSerializer().serializeToString(chart);
  let blob = new Blob([text], { type: "image/svg+xml" });
  if (format === "png") {
    const image = new Image();
    image.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(text)}`;
    await image.decode();
    const canvas = el("canvas", { width: SIZE.width * 2, height: SIZE.height * 2 });
    canvas.getContext("2d").drawImage(image, 0, 0, canvas.width, canvas.height);
    blob = await new Promise((done) => canvas.toBlob(done, "image/png"));
  }
  saveBlob(blob, `chart.${format}`);
}
