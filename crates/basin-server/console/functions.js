// The Functions panel (deployed functions: trigger, target, version, code, event counts) and
// the Events panel (what they were asked to do: state, attempts, error and logs; writers can
// queue a failed or dead event again).
"use strict";

const EVENT_STATES = ["pending", "running", "succeeded", "failed", "dead"];

async function showFunctions() {
  const functions = await api("/api/v1/functions");
  $("function-list").replaceChildren(...functions.map((f) =>
    el("li", { onclick: (e) => showFunction(f, e.currentTarget) },
      el("strong", {}, f.name), el("small", {}, f.trigger))));
  $("function-detail").replaceChildren(el("p", { class: "muted" }, functions.length
    ? "Pick a function." : "No deployed functions yet (basin deploy DIR)."));
}

async function showFunction(f, item) {
  pick(item);
  const d = f.declaration;
  const recent = await api(`/api/v1/events?function=${enc(f.name)}&limit=10`);
  // Each count opens the Events panel on that function and state.
  const counts = EVENT_STATES.map((s) => el("button", {
    type: "button", class: `count status-${s}`, onclick: () => showEventsOf(f.name, s),
  }, `${f.events[s]} ${s}`));
  $("function-detail").replaceChildren(
    el("h2", {}, f.name),
    facts([["trigger", f.trigger], ["to", d.to ? `${d.to} (batches of up to ${d.batch_size}, once per event)` : null],
      ["attempts", String(d.max_attempts)], ["timeout", d.timeout_seconds ? `${d.timeout_seconds} s` : null],
      ["version", `${f.version} (environment ${f.env_hash})`], ["file", `${f.file}:${d.line}`],
      ["deployed", when(f.deployed_at_ms)]]),
    el("div", { class: "counts" }, ...counts),
    el("h2", {}, "Recent events"),
    recent.length ? el("div", { class: "grid" }, eventGrid(recent, (e) => showEventsOf(f.name, "", e.id)))
      : el("p", { class: "muted" }, "None yet."),
    el("h2", {}, "Code"),
    el("pre", { class: "code" }, f.source.trim()));
}

// What an event is about, in a few words: the object, the schedule's slot, or its payload.
function about(payload) {
  if (payload && payload.bucket && payload.key) return `${payload.bucket}/${payload.key}`;
  if (payload && payload.type === "schedule") return `slot ${payload.scheduled_at || ""}`;
  return JSON.stringify(payload).slice(0, 60);
}

const firstLine = (text) => (text || "").split("\n")[0];

function eventGrid(events, onpick) {
  const rows = events.map((e) => ({ event: e.id.slice(0, 12), function: e.function, state: e.state,
    attempts: `${e.attempts}/${e.max_attempts}`, created: when(e.created_at_ms), about: about(e.payload),
    error: firstLine(e.error) }));
  const table = grid(["event", "function", "state", "attempts", "created", "about", "error"], rows,
    { onclick: (i, tr) => onpick(events[i], tr) });
  table.classList.add("clip");
  for (const [i, tr] of [...table.tBodies[0].rows].entries()) {
    tr.dataset.id = events[i].id;
    tr.cells[2].className = `status-${events[i].state}`;
    tr.cells[6].title = events[i].error || "";
  }
  return table;
}

// The event to open when the Events panel next lists it.
let openEvent = null;

// The Events panel with its filters set, and maybe one event open.
function showEventsOf(name, eventState, id) {
  const select = $("event-function");
  if (![...select.options].some((o) => o.value === name)) select.append(el("option", { value: name }, name));
  select.value = name;
  $("event-state").value = eventState;
  openEvent = id;
  show("events");
}

const eventRow = (id) => [...$("event-grid").querySelectorAll("tbody tr")].find((tr) => tr.dataset.id === id);

async function showEvents() {
  const functions = await api("/api/v1/functions");
  const chosen = $("event-function").value;
  $("event-function").replaceChildren(el("option", { value: "" }, "any"),
    ...functions.map((f) => el("option", { value: f.name }, f.name)));
  $("event-function").value = chosen;
  const params = new URLSearchParams({ limit: "200" });
  if ($("event-state").value) params.set("state", $("event-state").value);
  if (chosen) params.set("function", chosen);
  const events = await api(`/api/v1/events?${params}`);
  $("event-grid").replaceChildren(eventGrid(events, showEvent));
  $("event-status").textContent = plural(events.length, "event");
  const open = events.find((e) => e.id === openEvent);
  openEvent = null;
  if (open) return showEvent(open, eventRow(open.id));
  $("event-detail").replaceChildren(el("p", { class: "muted" }, events.length
    ? "Pick an event to see its payload, error and logs." : "No events."));
}

function showEvent(e, row) {
  if (row) pick(row);
  else for (const tr of $("event-grid").querySelectorAll("tbody tr")) tr.classList.remove("active");
  const retryable = e.state === "failed" || e.state === "dead";
  const retry = retryable ? el("button", {
    type: "button", id: "retry", class: "primary", disabled: !can("writer"),
    title: can("writer") ? "queue this event again" : "needs a writer token",
    onclick: () => retryEvent(e),
  }, "Retry") : null;
  const block = (title, text) => text ? [el("h2", {}, title), el("pre", {}, text)] : [];
  $("event-detail").replaceChildren(
    el("h2", {}, `Event ${e.id}: `, status(e.state), " ", retry),
    facts([["function", e.function], ["attempts", `${e.attempts} of ${e.max_attempts}`],
      ["created", when(e.created_at_ms)], ["updated", when(e.updated_at_ms)],
      ["next attempt", e.state === "failed" ? when(e.next_at_ms) : null], ["commit", e.commit]]),
    ...block("Error", e.error),
    ...block("Logs", e.logs.trimEnd()),
    ...block("Payload", JSON.stringify(e.payload, null, 2)),
    ...block("Result", e.result === null || e.result === undefined ? "" : JSON.stringify(e.result, null, 2)));
}

async function retryEvent(e) {
  showError(null);
  try {
    const queued = await api(`/api/v1/events/${enc(e.id)}/retry`, {});
    await showEvents();
    // As the retry left it (the list may filter it out now).
    showEvent(queued, eventRow(queued.id));
    $("event-status").textContent = `queued ${e.id.slice(0, 12)} again`;
  } catch {
    $("event-status").textContent = "retry failed";
  }
}

panels.functions = showFunctions;
panels.events = showEvents;

$("events-refresh").addEventListener("click", () => showEvents().catch(() => {}));
$("event-state").addEventListener("change", () => showEvents().catch(() => {}));
$("event-function").addEventListener("change", () => showEvents().catch(() => {}));
