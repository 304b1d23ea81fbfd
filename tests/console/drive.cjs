// Drives the console in headless Chromium (Debian's, through playwright-core): runs a query
// with Ctrl+Enter, reads the grid, opens a table, the commits, runs and usage, and saves a
// screenshot. Prints what it saw as JSON for the Python test to check.
//   node drive.cjs URL SCREENSHOT.png    (BASIN_NODE_MODULES: where playwright-core is)
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.BASIN_NODE_MODULES || "node_modules", "playwright-core"));

const [url, screenshot] = process.argv.slice(2);
const texts = (page, selector) => page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));
const rows = (page, selector) =>
  page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));

(async () => {
  const browser = await chromium.launch({
    executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
    args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  });
  const seen = { elsewhere: [] };
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    page.on("request", (r) => { if (!r.url().startsWith(url)) seen.elsewhere.push(r.url()); });
    page.setDefaultTimeout(20000);
    await page.goto(url);
    await page.waitForSelector("#ref option[value=dev]", { state: "attached" });
    seen.refs = await texts(page, "#ref option");

    await page.fill("#sql", "SELECT id, amount FROM sales.orders ORDER BY id");
    await page.press("#sql", "Control+Enter");
    await page.waitForSelector("#result tbody tr");
    seen.columns = await texts(page, "#result thead th");
    seen.grid = await rows(page, "#result");
    seen.status = await page.textContent("#status");

    await page.selectOption("#ref", "dev");
    await page.click("#run");
    await page.waitForFunction(() => document.querySelectorAll("#result tbody tr").length === 3);
    seen.dev_rows = (await rows(page, "#result")).length;

    // Exact numbers: ids past 2^53 and decimals with their scale, as stored, right-aligned.
    await page.fill("#sql", "SELECT CAST(8599806384497658719 AS BIGINT) AS id, 9007199254740993 AS past, " +
      "CAST(2 AS DECIMAL(18,2)) AS two, CAST(10.50 AS DECIMAL(18,2)) AS amount, CAST(-0.01 AS DECIMAL(18,2)) AS cents, " +
      "CAST('-9999999999999999999999999999.9999999999' AS DECIMAL(38,10)) AS wide");
    await page.press("#sql", "Control+Enter");
    // The previous answer's first column is `id` too: wait for this one's second column.
    await page.waitForFunction(() => document.querySelectorAll("#result th")[1]?.textContent === "past");
    seen.exact = (await rows(page, "#result"))[0];
    seen.exact_aligned = await page.$$eval("#result tbody td", (tds) => tds.map((td) => td.className === "num"));

    await page.fill("#sql", "SELECT nope FROM sales.orders");
    await page.click("#run");
    await page.waitForSelector("#error:not([hidden])");
    seen.error = await page.textContent("#error");

    // A syntax error: Postgres's words, the line and a caret under the place, in monospace.
    await page.fill("#sql", "SELEC * FROM sales.orders");
    await page.click("#run");
    await page.waitForFunction(() => document.querySelector("#error")?.textContent.includes("syntax error"));
    seen.syntax_error = await page.textContent("#error");
    seen.error_font = await page.$eval("#error", (e) => getComputedStyle(e).fontFamily);

    await page.click("nav button[data-panel=tables]");
    await page.click("#table-list li");
    await page.waitForSelector("#table-detail table");
    seen.table_headings = await texts(page, "#table-detail h2");
    seen.sample_rows = (await rows(page, "#table-detail .grid:last-of-type")).length;
    seen.sample_amounts = (await rows(page, "#table-detail .grid:last-of-type")).map((r) => r[1]).sort();
    seen.snapshot_ids = await page.$$eval("#table-detail .grid",
      (grids) => [...grids[1].querySelectorAll("tbody tr")].map((tr) => tr.cells[0].textContent));

    await page.selectOption("#ref", "main");
    await page.click("nav button[data-panel=log]");
    await page.waitForSelector("#log-grid tbody tr");
    seen.commits = (await rows(page, "#log-grid")).map((r) => r[3]);

    await page.click("nav button[data-panel=runs]");
    await page.waitForSelector("#run-list li");
    await page.click("#run-list li");
    await page.waitForSelector("#run-detail table");
    seen.models = await rows(page, "#run-detail");

    await page.click("nav button[data-panel=usage]");
    await page.waitForSelector("#usage-chart svg rect");
    seen.charts = await texts(page, "#usage-chart h2");
    seen.usage = await rows(page, "#usage-grid");
    await page.screenshot({ path: screenshot, fullPage: true });

    await page.click("nav button[data-panel=query]");
    await page.fill("#sql", "SELECT count(*) AS n FROM sales.orders");
    await page.click("#run");
    await page.waitForFunction(() => document.querySelector("#result td")?.textContent === "3");
    await page.screenshot({ path: screenshot.replace(/\.png$/, "-query.png") });
  } finally {
    await browser.close();
  }
  console.log(JSON.stringify(seen));
})().catch((e) => { console.error(e); process.exit(1); });
