// The console's charts, as an analyst uses them: a TPC-H answer drawn as the bars the page
// chooses, switched to a line and to points, downloaded as SVG and PNG; a monthly answer
// drawn as a line; the chart kept with the query in the history across a reload; an answer
// with nothing to chart offers none. Then the demo pipeline's output table and its lineage,
// clicked through to an input table. Prints each chart's marks (what they stand for) for the
// Python test to check against the API's answer.
//   node chart.cjs URL SHOTS DOWNLOADS TOKEN
"use strict";
const path = require("path");
const { drive, texts, typeInto, useToken } = require("./common.cjs");

const [url, shots, downloads, token] = process.argv.slice(2);

const BY_NATION = "SELECT n_name AS nation, sum(o_totalprice) AS total, count(*) AS orders "
  + "FROM tpch.orders JOIN tpch.customer ON o_custkey = c_custkey JOIN tpch.nation ON c_nationkey = n_nationkey "
  + "GROUP BY n_name ORDER BY total DESC LIMIT 8";
const BY_MONTH = "SELECT date_trunc('month', o_orderdate) AS month, sum(o_totalprice) AS total "
  + "FROM tpch.orders GROUP BY 1 ORDER BY 1";

// Each mark of the chart shown: [label, series, value, its height or its y].
const marks = (page) => page.$$eval("#result svg .mark", (nodes) => nodes.map((n) => [
  n.dataset.label, n.dataset.series, n.dataset.value,
  n.tagName === "rect" ? Number(n.getAttribute("height")) : Number(n.getAttribute("cy"))]));
const views = (page) => page.$$eval("#views button[data-view]", (bs) => bs.map((b) => [b.dataset.view, b.disabled, b.classList.contains("active"), b.textContent]));

async function run(page, sql) {
  await typeInto(page, "#sql", sql);
  await page.keyboard.press("Control+Enter");
  await page.waitForSelector("#views:not([hidden])");
  await page.waitForFunction(() => !document.querySelector("#status").textContent.startsWith("running"));
}

drive(url, async (page, seen) => {
  await useToken(page, token, "reader");
  await run(page, BY_NATION);
  seen.first_view = await views(page);
  await page.click("#views button[data-view=bar]");
  await page.waitForSelector("#result svg.chart-bar");
  seen.bars = await marks(page);
  seen.bar_label = await page.getAttribute("#result svg", "aria-label");
  await page.screenshot({ path: path.join(shots, "console-chart.png") });
  seen.saved = [];
  for (const format of ["svg", "png"]) {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click(`#chart-${format}`)]);
    await download.saveAs(path.join(downloads, download.suggestedFilename()));
    seen.saved.push(download.suggestedFilename());
  }
  await page.click("#views button[data-view=line]");
  seen.lines = await page.$$eval("#result svg.chart-line polyline", (ps) => ps.map((p) => p.getAttribute("points").split(" ").length));
  await page.click("#views button[data-view=scatter]");
  seen.points = (await marks(page)).length;
  await page.click("#views button[data-view=bar]");

  await run(page, BY_MONTH);
  seen.month_view = await views(page);
  await page.click("#views button[data-view=line]");
  seen.month_points = await page.$$eval("#result svg.chart-line polyline", (ps) => ps.map((p) => p.getAttribute("points").split(" ").length));
  seen.month_marks = (await marks(page)).length;

  await run(page, "SELECT 'a' AS word, 'b' AS other");
  seen.nothing_to_chart = await views(page);

  // The history keeps each query's chart: after a reload, the nation query comes back as bars.
  seen.history = await texts(page, "#history small");
  await page.reload();
  await useToken(page, token, "reader");
  await page.click("#history li:nth-child(3)");
  await page.click("#run");
  await page.waitForSelector("#result svg.chart-bar");
  seen.again = (await marks(page)).length;

  // The pipeline's output table draws its lineage; a click on an input table goes to its page.
  await page.click("nav button[data-panel=tables]");
  await page.click("#table-list li:has-text('analytics.revenue_by_nation_year')");
  await page.waitForSelector("#table-lineage svg g.node");
  seen.lineage_nodes = await page.$$eval("#table-lineage g.node", (gs) => gs.map((g) => g.dataset.id));
  seen.lineage_edges = await page.$$eval("#table-lineage path.edge", (ps) => ps.map((p) => [p.dataset.from, p.dataset.to]));
  await page.screenshot({ path: path.join(shots, "console-lineage.png"), fullPage: true });
  await page.click('#table-lineage g.node[data-id="table:tpch.orders"]');
  await page.waitForFunction(() => document.querySelector("#table-detail h2")?.textContent.startsWith("tpch.orders:"));
  seen.lineage_clicked = await page.textContent("#table-detail h2");

  // The demo's run: its DAG, each model with its state; a click shows the model's code.
  await page.click("nav button[data-panel=runs]");
  await page.click("#run-list li");
  await page.waitForSelector("#run-dag svg g.model");
  seen.dag_models = await page.$$eval("#run-dag g.model", (gs) => gs.map((g) => [g.dataset.name, g.dataset.state]));
  seen.dag_inputs = await page.$$eval("#run-dag g.input", (gs) => gs.map((g) => g.dataset.name));
  seen.dag_edges = await page.$$eval("#run-dag path.edge", (ps) => ps.map((p) => [p.dataset.from, p.dataset.to]));
  await page.click('#run-dag g.model[data-name="revenue_by_nation_year"]');
  await page.waitForSelector("#run-model pre.code");
  seen.dag_code = await page.textContent("#run-model pre.code");
  seen.dag_open = await page.textContent("#run-model button");
  await page.screenshot({ path: path.join(shots, "console-run.png"), fullPage: true });
});
