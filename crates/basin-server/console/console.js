// Basin's console: plain JavaScript over the HTTP API (/api/v1), no build step and nothing
// fetched from the internet. This file holds what every panel uses and starts the page; the
// other files each add their panels to `panels`. Every panel reads the ref chosen at the top.
"use strict";

const $ = (id) => document.getElementById(id);
// `role`: the token's role (`null`: none accepted yet).
const state = { ref: "main", panel: "query", role: null };
// Each panel's loader, by the id of its section and nav button (filled by the other files).
const panels = {};
const ROLES = ["reader", "writer", "admin"];
const can = (role) => ROLES.indexOf(state.role) >= ROLES.indexOf(role);
const enc = encodeURIComponent;

function headers() {
  // The client header names the door a commit records (`basin log`'s door column).
  const h = { "content-type": "application/json", "x-basin-client": "console" };
  const token = $("token").value.trim();
  if (token) h.authorization = `Bearer ${token}`;
  return h;
}

// An API error as text: the message, then its hint.
const errorText = (e) => e.message + (e.hint ? `\nhint: ${e.hint}` : "");

// Calls the API (POSTing `body` as JSON when given); shows its error and throws on failure.
async function call(path, body) {
  const response = await fetch(path, body === undefined
    ? { headers: headers() }
    : { method: "POST", headers: headers(), body: JSON.stringify(body) });
  if (!response.ok) {
    const data = await response.json().catch(() => null);
    const e = data && data.error ? data.error : { message: `${response.status} ${response.statusText}` };
    showError(errorText(e));
    throw new Error(e.message);
  }
  return response;
}

const api = async (path, body) => (await call(path, body)).json();

function showError(message) {
  $("error").hidden = !message;
  $("error").textContent = message || "";
}

// An element; attributes that are false, null or undefined are left out.
function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === false || v === null || v === undefined) continue;
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else node.setAttribute(k, v === true ? "" : v);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// A table of `rows` (objects) with `columns` (names); numbers right-aligned, and the columns
// named in `numeric`, whose values may come as strings. The API sends decimals ("10.50") and
// integers past 2^53 as strings, so they show exactly as stored: never parse them to numbers.
// With `onclick(i, tr)`, rows can be picked.
function grid(columns, rows, { numeric = new Set(), onclick } = {}) {
  const cell = (c, v) => {
    const text = v === null || v === undefined ? "NULL" : typeof v === "object" ? JSON.stringify(v) : String(v);
    return el("td", { class: typeof v === "number" || numeric.has(c) ? "num" : "" }, text);
  };
  const row = (r, i) => el("tr", onclick ? { class: "pick", onclick: (e) => onclick(i, e.currentTarget) } : {},
    ...columns.map((c) => cell(c, r[c])));
  return el("table", {},
    el("thead", {}, el("tr", {}, ...columns.map((c) => el("th", {}, c)))),
    el("tbody", {}, ...rows.map(row)));
}

// Saves `blob` as the file `name`, as the browser saves downloads, and says so in the status.
function saveBlob(blob, name) {
  const url = URL.createObjectURL(blob);
  const link = el("a", { href: url, download: name });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(url), 60_000);
  $("status").textContent = `saved ${name} (${blob.size.toLocaleString("en")} bytes)`;
}

// Marks `item` as the picked one among its siblings.
function pick(item) {
  for (const sibling of item.parentElement.children) sibling.classList.toggle("active", sibling === item);
}

// The grid of a query answer: its columns in order, numeric types right-aligned.
function answerGrid(answer) {
  const numeric = /^(U?Int|Float|Decimal)/;
  return grid(answer.columns.map((c) => c.name), answer.rows,
    { numeric: new Set(answer.columns.filter((c) => numeric.test(c.type)).map((c) => c.name)) });
}

// Label and value pairs, as a definition list.
const facts = (pairs) => el("dl", { class: "facts" },
  ...pairs.filter(([, v]) => v !== null && v !== undefined && v !== "").flatMap(([k, v]) => [el("dt", {}, k), el("dd", {}, v)]));

const when = (ms) => new Date(ms).toISOString().replace("T", " ").slice(0, 19);
const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const status = (s) => el("span", { class: `status-${s}` }, s);

async function loadRefs() {
  const refs = await api("/api/v1/refs");
  const select = $("ref");
  const options = refs.map((r) => el("option", { value: r.name }, `${r.name} (${r.kind})`));
  // A past commit picked in the Commits panel stays selectable.
  if (state.ref.includes("@")) options.push(el("option", { value: state.ref }, `${state.ref} (commit)`));
  select.replaceChildren(...options);
  select.value = [...select.options].some((o) => o.value === state.ref) ? state.ref : "main";
  state.ref = select.value;
}

// Reads every panel at `ref` (a branch, a tag or REF@COMMIT), showing `panel`.
function useRef(ref, panel = state.panel) {
  if (![...$("ref").options].some((o) => o.value === ref)) $("ref").append(el("option", { value: ref }, `${ref} (commit)`));
  $("ref").value = ref;
  state.ref = ref;
  show(panel);
}

// What the token in the box may do, shown beside it.
async function checkToken() {
  try {
    const me = await api("/api/v1/whoami");
    state.role = me.role;
    $("who").textContent = me.token === null ? `${me.role} (no token needed)` : `${me.role}${me.token ? ` · ${me.token}` : ""}`;
    $("who").className = "ok";
  } catch (e) {
    state.role = null;
    $("who").textContent = $("token").value.trim() ? "not accepted" : "no token";
    $("who").className = "bad";
  }
}

async function show(panel) {
  state.panel = panel;
  showError(null);
  for (const b of document.querySelectorAll("nav button")) b.classList.toggle("active", b.dataset.panel === panel);
  for (const p of Object.keys(panels)) $(p).hidden = p !== panel;
  await panels[panel]().catch(() => {});
}

// Every panel reads the ref: the one showing reloads.
const refChanged = () => show(state.panel);

// Signing in with the issuer of [auth.oidc] (the authorization-code flow with PKCE): the page
// goes to the issuer with a challenge, comes back with a code, and Basin trades the code (with
// the verifier only this tab kept) for a token, which then works as a pasted one does.
const b64url = (bytes) => btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
const randomText = (n) => b64url(crypto.getRandomValues(new Uint8Array(n)));
const home = () => `${location.origin}/`;

async function signIn(config) {
  if (!crypto.subtle) {
    showError("Signing in needs https (or localhost): this browser hides its crypto elsewhere.\nhint: paste a token instead");
    return;
  }
  const verifier = randomText(32);
  const digest = await crypto.subtle.digest("SHA-256", new TextEncoder().encode(verifier));
  const flow = { verifier, state: randomText(16) };
  sessionStorage.setItem("basin.sign-in", JSON.stringify(flow));
  const url = new URL(config.authorization_url);
  for (const [k, v] of Object.entries({ response_type: "code", client_id: config.client_id, redirect_uri: home(),
    scope: config.scopes.join(" "), code_challenge: b64url(new Uint8Array(digest)), code_challenge_method: "S256", state: flow.state })) {
    url.searchParams.set(k, v);
  }
  location.assign(url.href);
}

// Back from the issuer (`?code=&state=`, or `?error=`): trades the code, keeps the token.
async function finishSignIn() {
  const params = new URLSearchParams(location.search);
  if (!params.has("code") && !params.has("error")) return;
  const flow = JSON.parse(sessionStorage.getItem("basin.sign-in") || "null");
  sessionStorage.removeItem("basin.sign-in");
  history.replaceState(null, "", "/");
  if (params.has("error")) {
    showError(`Sign-in failed: ${params.get("error_description") || params.get("error")}`);
  } else if (!flow || flow.state !== params.get("state")) {
    showError("Sign-in failed: this tab did not start it (its state does not match).\nhint: sign in again");
  } else {
    const signed = await api("/api/v1/auth/sign-in",
      { code: params.get("code"), code_verifier: flow.verifier, redirect_uri: home() });
    $("token").value = signed.token;
    localStorage.setItem("basin.token", signed.token);
  }
}

async function offerSignIn() {
  const { sign_in: config } = await api("/api/v1/auth/config");
  $("sign-in").hidden = !config;
  if (config) $("sign-in").onclick = () => signIn(config).catch((e) => showError(e.message));
}

async function start() {
  await checkToken();
  await loadRefs();
  refChanged();
}

function init() {
  $("token").value = localStorage.getItem("basin.token") || "";
  $("token").addEventListener("change", () => {
    localStorage.setItem("basin.token", $("token").value.trim());
    showError(null);
    start().catch(() => {});
  });
  $("token-show").addEventListener("click", () => {
    const shown = $("token").type === "text";
    $("token").type = shown ? "password" : "text";
    $("token-show").textContent = shown ? "show" : "hide";
  });
  $("ref").addEventListener("change", () => { state.ref = $("ref").value; refChanged(); });
  for (const b of document.querySelectorAll("nav button")) b.addEventListener("click", () => show(b.dataset.panel));
  offerSignIn().catch(() => {});
  finishSignIn().catch(() => {}).then(() => start()).catch(() => {});
}

document.addEventListener("DOMContentLoaded", init);
