// Drives the console in headless Chromium (Debian's, through playwright-core) as a person
// would, typing on the keyboard: pastes a reader token, writes a query with names clicked
// from the table list, runs it with Ctrl+Enter, reads the grid, history and downloads, opens
// a table, a commit's changes, a function and a failed event, retries it with a writer
// token, and opens the runs, usage and maintenance. Saves a screenshot of each panel. Prints what it saw
// as JSON for the Python test to check.
//   node drive.cjs URL SHOTS_DIR DOWNLOADS_DIR READER_TOKEN WRITER_TOKEN LIMITED_TOKEN
//   (BASIN_NODE_MODULES: where playwright-core is)
"use strict";
const path = require("path");
const { drive, rows, texts, typeInto, useToken } = require("./common.cjs");

const [url, shots, downloads, readerToken, writerToken, limitedToken] = process.argv.slice(2);
const shot = (name) => path.join(shots, `console-${name}.png`);

async function runTyped(page, sql) {
  await typeInto(page, "#sql", sql);
  await page.keyboard.press("Control+Enter");
}

drive(url, async (page, seen) => {
  // No token yet: the page says so, and where to get one.
  await page.waitForSelector("#error:not([hidden])");
  seen.no_token = await page.textContent("#error");
  seen.who_without = await page.textContent("#who");
  await useToken(page, readerToken, "reader");
  seen.who = await page.textContent("#who");
  await page.waitForSelector("#ref option[value=dev]", { state: "attached" });
  seen.refs = await texts(page, "#ref option");
  // The token box is readable: a monospace face, and shown on demand.
  await page.click("#token-show");
  seen.token_shown = await page.$eval("#token", (t) => [t.type, t.value, getComputedStyle(t).fontFamily]);
  await page.click("#token-show");

  // The table list: filtering opens the tables that match, with their columns and types.
  await page.waitForSelector("#schema summary");
  await typeInto(page, "#schema-filter", "amount");
  seen.schema = await page.$$eval("#schema details[open]", (ds) => ds.map((d) => [
    d.querySelector("summary").textContent,
    [...d.querySelectorAll("ul li")].map((li) => [li.firstChild.textContent, li.querySelector(".type").textContent]),
  ]));
  // A query written with names clicked from the list, run with Ctrl+Enter.
  await typeInto(page, "#sql", "SELECT id, ");
  await page.click("#schema details[open] ul li:nth-child(2)");
  await page.keyboard.type(" FROM ");
  await page.click("#schema summary span");
  await page.keyboard.type(" ORDER BY id");
  seen.typed = await page.inputValue("#sql");
  await page.keyboard.press("Control+Enter");
  await page.waitForSelector("#result tbody tr");
  seen.columns = await texts(page, "#result thead th");
  seen.grid = await rows(page, "#result");
  seen.status = await page.textContent("#status");
  await typeInto(page, "#schema-filter", "");

  await page.selectOption("#ref", "dev");
  await page.click("#run");
  await page.waitForFunction(() => document.querySelectorAll("#result tbody tr").length === 3);
  seen.dev_rows = (await rows(page, "#result")).length;

  // Exact numbers: ids past 2^53 and decimals with their scale, as stored, right-aligned.
  await runTyped(page, "SELECT CAST(8599806384497658719 AS BIGINT) AS id, 9007199254740993 AS past, " +
    "CAST(2 AS DECIMAL(18,2)) AS two, CAST(10.50 AS DECIMAL(18,2)) AS amount, CAST(-0.01 AS DECIMAL(18,2)) AS cents, " +
    "CAST('-9999999999999999999999999999.9999999999' AS DECIMAL(38,10)) AS wide");
  // The previous answer's first column is `id` too: wait for this one's second column.
  await page.waitForFunction(() => document.querySelectorAll("#result th")[1]?.textContent === "past");
  seen.exact = (await rows(page, "#result"))[0];
  seen.exact_aligned = await page.$$eval("#result tbody td", (tds) => tds.map((td) => td.className === "num"));

  await runTyped(page, "SELECT nope FROM sales.orders");
  await page.waitForSelector("#error:not([hidden])");
  seen.error = await page.textContent("#error");

  // A syntax error: Postgres's words, the line and a caret under the place, in monospace.
  await runTyped(page, "SELEC * FROM sales.orders");
  await page.waitForFunction(() => document.querySelector("#error")?.textContent.includes("syntax error"));
  seen.syntax_error = await page.textContent("#error");
  seen.error_font = await page.$eval("#error", (e) => getComputedStyle(e).fontFamily);

  // History: newest first, kept across a reload; a click puts a query back in the editor.
  await page.waitForFunction(() => document.querySelector("#history code")?.textContent.startsWith("SELEC *"));
  seen.history = await texts(page, "#history code");
  seen.history_notes = await texts(page, "#history small");
  await page.reload();
  await page.waitForSelector("#ref option[value=dev]", { state: "attached" });
  seen.history_after_reload = (await texts(page, "#history code")).length;
  await page.click("#history li:nth-child(4)");
  seen.from_history = await page.inputValue("#sql");

  // Downloads: every row of the editor's query as CSV and Parquet, on the chosen ref.
  seen.downloads = [];
  for (const format of ["csv", "parquet"]) {
    const [download] = await Promise.all([page.waitForEvent("download"), page.click(`#download-${format}`)]);
    await download.saveAs(path.join(downloads, download.suggestedFilename()));
    seen.downloads.push(download.suggestedFilename());
  }
  await page.click("#run");
  await page.waitForFunction(() => document.querySelectorAll("#result tbody tr").length === 3);
  await page.click("#schema > li:last-child summary", { position: { x: 8, y: 10 } }); // its marker
  await page.waitForSelector("#schema details[open]");
  await page.screenshot({ path: shot("query") });

  await page.selectOption("#ref", "dev");
  await page.click("nav button[data-panel=tables]");
  await page.click("#table-list li");
  await page.waitForSelector("#table-detail table");
  seen.table_headings = await texts(page, "#table-detail h2");
  seen.sample_rows = (await rows(page, "#table-detail .grid:last-of-type")).length;
  seen.sample_amounts = (await rows(page, "#table-detail .grid:last-of-type")).map((r) => r[1]).sort();
  seen.snapshot_ids = await page.$$eval("#table-detail .grid",
    (grids) => [...grids[1].querySelectorAll("tbody tr")].map((tr) => tr.cells[0].textContent));

  // A commit: what it changed against its parent, and the tables it holds.
  await page.selectOption("#ref", "main");
  await page.click("nav button[data-panel=log]");
  await page.waitForSelector("#log-grid tbody tr");
  const log = await rows(page, "#log-grid");
  seen.commits = log.map((r) => r[4]);
  seen.commit_doors = log.map((r) => r[3]);
  const merge = seen.commits.findIndex((m) => m.startsWith("merge dev "));
  await page.click(`#log-grid tbody tr:nth-child(${merge + 1})`);
  await page.waitForSelector("#commit-changes tbody tr");
  seen.commit_changes = await rows(page, "#commit-changes");
  seen.commit_tables = await texts(page, "#commit-tables li");
  await page.screenshot({ path: shot("commits") });
  // Then read the lakehouse as it was at that commit.
  await page.click("#commit-detail button");
  await page.waitForSelector("#query:not([hidden])");
  seen.time_travel_ref = await page.inputValue("#ref");
  await page.selectOption("#ref", "main");

  // Every branch as a graph: its commits, the lines between them, the refs at each; a click on
  // the merge shows it as the log's row does.
  await page.click("nav button[data-panel=log]");
  await page.click("#log-view-graph");
  await page.waitForSelector("#log-graph svg.commit-graph g.commit");
  seen.graph_nodes = await page.$$eval("#log-graph g.commit", (gs) => gs.map((g) => [g.dataset.id,
    [...g.querySelectorAll(".ref-name")].map((t) => t.textContent)]));
  seen.graph_edges = await page.$$eval("#log-graph path.edge", (ps) => ps.map((p) => [p.dataset.from, p.dataset.to, p.dataset.merge]));
  await page.screenshot({ path: shot("graph") });
  const mergeId = await page.$$eval("#log-graph g.commit", (gs) =>
    gs.find((g) => g.querySelector("title").textContent.includes(" merge dev ")).dataset.id);
  await page.click(`#log-graph g.commit[data-id="${mergeId}"] circle`);
  await page.waitForFunction((id) => document.querySelector("#commit-detail h2")?.textContent.startsWith(`Commit ${id.slice(0, 12)}`), mergeId);
  seen.graph_picked = [mergeId, await page.textContent("#commit-detail h2")];
  await page.check("#graph-runs");
  await page.waitForFunction(() => [...document.querySelectorAll("#log-graph .ref-name")].some((t) => t.textContent.startsWith("run/")));
  seen.graph_with_runs = await page.$$eval("#log-graph .ref-name", (ts) => ts.map((t) => t.textContent));
  // An open review shows beside its branch; a click opens it on the Reviews panel.
  seen.graph_reviews = await texts(page, "#log-graph .review-name");
  await page.click("#log-graph g.review");
  await page.waitForFunction(() => document.querySelector("#review-detail h2")?.textContent.startsWith("Review #"));
  seen.review_opened = await page.textContent("#review-detail h2");
  await page.click("nav button[data-panel=log]");
  await page.click("#log-view-ref");

  // Functions: trigger, code, event counts.
  await page.click("nav button[data-panel=functions]");
  await page.click("#function-list li");
  await page.waitForSelector("#function-detail pre");
  seen.function = await texts(page, "#function-detail h2");
  seen.function_facts = await texts(page, "#function-detail dd");
  seen.function_counts = await texts(page, "#function-detail .counts button");
  seen.function_code = await page.textContent("#function-detail pre");
  await page.screenshot({ path: shot("functions") });

  // Events: the failed one's error and logs; a reader cannot retry it.
  await page.click("nav button[data-panel=events]");
  await page.waitForSelector("#event-grid tbody tr");
  seen.events = await rows(page, "#event-grid");
  await page.click("#event-grid tbody td.status-dead");
  await page.waitForSelector("#event-detail pre");
  seen.event_detail = await texts(page, "#event-detail h2");
  seen.event_blocks = await texts(page, "#event-detail pre");
  seen.retry_for_reader = await page.$eval("#retry", (b) => [b.disabled, b.title]);
  await page.screenshot({ path: shot("events") });

  // A writer can: the event is queued again.
  await useToken(page, writerToken, "writer");
  await page.waitForSelector("#event-grid tbody td.status-dead");
  await page.click("#event-grid tbody td.status-dead");
  await page.waitForSelector("#retry:not([disabled])");
  await page.click("#retry");
  await page.waitForFunction(() => document.querySelector("#event-status").textContent.startsWith("queued"));
  seen.retry_status = await page.textContent("#event-status");

  await page.click("nav button[data-panel=runs]");
  await page.waitForSelector("#run-list li");
  await page.click("#run-list li");
  await page.waitForSelector("#run-detail table");
  seen.models = await rows(page, "#run-detail");

  await page.click("nav button[data-panel=usage]");
  await page.waitForSelector("#usage-chart svg rect");
  seen.charts = await texts(page, "#usage-chart h2");
  seen.usage = await rows(page, "#usage-grid");
  await page.screenshot({ path: shot("usage"), fullPage: true });

  await page.click("nav button[data-panel=maintenance]");
  await page.waitForSelector("#maintenance-grid tbody tr");
  seen.maintenance = await rows(page, "#maintenance-grid");
  await page.screenshot({ path: shot("maintenance"), fullPage: true });

  // A token whose grants read sales.orders only: the table list holds nothing else.
  await page.click("nav button[data-panel=query]");
  await useToken(page, limitedToken, "reader");
  await page.selectOption("#ref", "main"); // where the pipeline wrote sales.order_total
  await typeInto(page, "#schema-filter", "");
  await page.waitForFunction(() => {
    const names = [...document.querySelectorAll("#schema summary")].map((s) => s.textContent);
    return names.length > 0 && !names.includes("sales.order_total");
  });
  seen.limited_who = await page.textContent("#who");
  seen.limited_schema = await texts(page, "#schema summary");
});
