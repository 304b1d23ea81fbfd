// Drives the console's Reviews panel in headless Chromium as a second person would: with bo's
// token, opens the review ana opened, reads its changes, checks and approvals, approves it and
// merges it; then opens a review of a branch whose data fails a check, and reads why it cannot
// merge. Prints what it saw as JSON for the Python test to check.
//   node review.cjs URL SHOTS_DIR BO_TOKEN
"use strict";
const path = require("path");
const { drive, rows, texts, typeInto, useToken } = require("./common.cjs");

const [url, shots, boToken] = process.argv.slice(2);

drive(url, async (page, seen) => {
  await useToken(page, boToken, "writer");
  await page.click("nav button[data-panel=reviews]");
  await page.waitForSelector("#review-list li");
  seen.list = await texts(page, "#review-list li");
  await page.click("#review-list li");
  await page.waitForSelector("#review-detail h2");
  seen.heading = (await texts(page, "#review-detail h2"))[0];
  seen.facts = await texts(page, "#review-detail dd");
  seen.changes = await rows(page, "#review-changes");
  seen.checks = await rows(page, "#review-checks");
  seen.merge_before = await page.$eval("#review-merge", (b) => [b.disabled, b.title]);
  await page.screenshot({ path: path.join(shots, "console-review.png"), fullPage: true });

  await page.click("#review-approve");
  await page.waitForFunction(() => !document.querySelector("#review-merge").disabled);
  seen.approved = await texts(page, "#review-detail dd");
  await page.click("#review-merge");
  await page.waitForFunction(() => document.querySelector("#review-detail h2 span").textContent === "merged");
  seen.merged = await texts(page, "#review-detail dd");

  // A branch with a negative amount: the check fails, and names its first rows.
  await page.selectOption("#review-source", "bad");
  await typeInto(page, "#review-title", "a refund");
  await page.click("#review-open");
  await page.waitForFunction(() => (document.querySelector("#review-detail h2") || {}).textContent?.includes("a refund"));
  seen.bad_checks = await rows(page, "#review-checks");
  seen.bad_why = await page.textContent("#review-why");
  seen.bad_merge = await page.$eval("#review-merge", (b) => b.disabled);
  seen.bad_rows = await texts(page, "#review-detail pre");
});
