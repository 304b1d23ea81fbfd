// Signs in to the console with the issuer of [auth.oidc], in headless Chromium: clicks Sign
// in, follows the issuer's redirect back, and reads who the page now acts as and the tables
// it sees. Prints what it saw as JSON for the Python test to check.
//   node signin.cjs URL
"use strict";
const { drive, texts } = require("./common.cjs");

const [url] = process.argv.slice(2);

drive(url, async (page, seen) => {
  await page.waitForSelector("#sign-in:not([hidden])");
  await page.click("#sign-in");
  await page.waitForFunction(() => document.querySelector("#who").textContent.startsWith("reader"));
  seen.who = await page.textContent("#who");
  await page.waitForSelector("#schema summary");
  seen.schema = await texts(page, "#schema summary");
  seen.url = page.url();
});
