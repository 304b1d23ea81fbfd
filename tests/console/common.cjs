// What the console drivers share: headless Chromium (Debian's, through playwright-core), a
// page that records every request to anywhere but the server, and typing as a person would.
//   (BASIN_NODE_MODULES: where playwright-core is; CHROMIUM: the browser, /usr/bin/chromium)
"use strict";
const path = require("path");
const { chromium } = require(path.join(process.env.BASIN_NODE_MODULES || "node_modules", "playwright-core"));

const texts = (page, selector) => page.$$eval(selector, (nodes) => nodes.map((n) => n.textContent.trim()));
const rows = (page, selector) =>
  page.$$eval(`${selector} tbody tr`, (trs) => trs.map((tr) => [...tr.cells].map((c) => c.textContent)));

// Replaces what a field holds by typing, key by key.
async function typeInto(page, selector, text) {
  await page.click(selector);
  await page.keyboard.press("Control+A");
  await page.keyboard.press("Delete");
  await page.keyboard.type(text);
}

async function useToken(page, token, role) {
  await typeInto(page, "#token", token);
  await page.keyboard.press("Tab"); // the box takes it when it loses focus
  await page.waitForFunction((r) => document.querySelector("#who").textContent.startsWith(r), role);
}

// Runs `drive(page, context, seen)` on a fresh page of `url`, then prints what was seen as
// JSON (`seen.elsewhere`: requests to anywhere but the server) for the Python test to check.
function drive(url, work) {
  (async () => {
    const browser = await chromium.launch({
      executablePath: process.env.CHROMIUM || "/usr/bin/chromium",
      args: ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
        "--disable-background-networking", "--disable-component-update", "--disable-sync"],
    });
    const seen = { elsewhere: [] };
    try {
      const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, acceptDownloads: true });
      const page = await context.newPage();
      page.on("request", (r) => { if (!r.url().startsWith(url) && !r.url().startsWith("blob:")) seen.elsewhere.push(r.url()); });
      page.setDefaultTimeout(20000);
      await page.goto(url);
      await work(page, seen);
    } finally {
      await browser.close();
    }
    console.log(JSON.stringify(seen));
  })().catch((e) => { console.error(e); process.exit(1); });
}

module.exports = { drive, rows, texts, typeInto, useToken };
