// The Runs panel (pipeline runs: each model's status, time, rows and logs), the Usage panel
// (invocations and queries, GB-seconds and cost per day) and the Maintenance panel (what each
// compaction, expiry and gc run did).
"use strict";

async function showRuns() {
  const runs = await api("/api/v1/runs");
  $("run-list").replaceChildren(...runs.map((r) =>
    el("li", { onclick: (e) => showRun(r.id, e.currentTarget) },
      status(r.status), ` ${r.project} · ${when(r.started_at_ms)}`)));
  $("run-detail").replaceChildren(runs.length ? "Pick a run." : "No pipeline runs yet (basin run).");
}

async function showRun(id, item) {
  pick(item);
  const run = await api(`/api/v1/runs/${enc(id)}`);
  const models = run.models.map((m) => ({ model: m.name, kind: m.kind, status: m.cache_hit ? "cached" : m.status,
    ms: Math.round(m.ms), rows: m.rows, table: m.table, error: m.error }));
  const picked = el("div", {}, el("p", { class: "muted" }, "Click a model for its code, logs and table."));
  $("run-detail").replaceChildren(
    el("h2", {}, `Run ${run.id} of ${run.project} into ${run.target}: `, status(run.status)),
    ...(run.error ? [el("pre", {}, run.error)] : []),
    el("div", { class: "picture", id: "run-dag" }, drawRunDag(run, (m) => picked.replaceChildren(modelDetail(run, m)))),
    el("div", { class: "grid" }, grid(["model", "kind", "status", "ms", "rows", "table", "error"], models)),
    picked);
}

// One bar chart per measure, drawn as SVG by hand (no chart library to fetch).
function bars(title, rows, value, format) {
  const width = 560, height = 140, pad = 28;
  const highest = Math.max(...rows.map(value), 0);
  const max = highest || 1;
  const step = (width - pad) / Math.max(rows.length, 1);
  const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
  svg.setAttribute("viewBox", `0 0 ${width} ${height + 20}`);
  svg.setAttribute("width", width);
  svg.setAttribute("role", "img");
  svg.setAttribute("aria-label", title);
  rows.forEach((r, i) => {
    const h = (value(r) / max) * (height - 20);
    const rect = document.createElementNS(svg.namespaceURI, "rect");
    Object.entries({ x: pad + i * step + 2, y: height - h, width: Math.max(step - 4, 2), height: h })
      .forEach(([k, v]) => rect.setAttribute(k, v));
    const tip = document.createElementNS(svg.namespaceURI, "title");
    tip.textContent = `${r.key}: ${format(value(r))}`;
    rect.append(tip);
    const label = document.createElementNS(svg.namespaceURI, "text");
    label.setAttribute("x", pad + i * step + 2);
    label.setAttribute("y", height + 14);
    label.textContent = r.key.slice(5);
    svg.append(rect, label);
  });
  const top = document.createElementNS(svg.namespaceURI, "text");
  top.setAttribute("x", 0);
  top.setAttribute("y", 12);
  top.textContent = format(highest);
  svg.append(top);
  return el("div", {}, el("h2", {}, title), svg);
}

async function showUsage() {
  const usage = await api("/api/v1/usage?by=day");
  const rows = usage.rows;
  $("usage-chart").replaceChildren(
    bars("Invocations and queries per day", rows, (r) => r.invocations, (v) => String(v)),
    bars("GB-seconds per day", rows, (r) => r.gb_seconds, (v) => v.toFixed(3)),
    bars("Cost per day (USD)", rows, (r) => r.cost_usd, (v) => `$${v.toFixed(6)}`));
  $("usage-grid").replaceChildren(grid(["key", "invocations", "errors", "gb_seconds", "bytes_scanned", "cost_usd"],
    rows.map((r) => ({ ...r, gb_seconds: +r.gb_seconds.toFixed(3), cost_usd: +r.cost_usd.toFixed(6) }))));
}

async function showMaintenance() {
  const runs = await api("/api/v1/maintenance");
  $("maintenance-note").textContent = runs.length ? ""
    : "No maintenance runs yet: basin serve runs one nightly ([maintenance] schedule), or run basin maintenance run.";
  $("maintenance-grid").replaceChildren(grid(
    ["started", "trigger", "status", "seconds", "files_compacted", "snapshots_expired", "files_removed", "mib_removed"],
    runs.map((r) => ({
      started: when(r.started_at_ms), trigger: r.dry_run ? `${r.trigger} (dry run)` : r.trigger, status: r.status,
      seconds: +r.seconds.toFixed(1),
      files_compacted: r.compacted.reduce((n, c) => n + c.files_rewritten, 0),
      snapshots_expired: r.expired.reduce((n, e) => n + e.snapshots_expired, 0),
      files_removed: r.gc ? r.gc.files_removed : 0,
      mib_removed: r.gc ? +(r.gc.bytes_removed / 1048576).toFixed(1) : 0,
    }))));
  const errors = runs.flatMap((r) => r.errors.map((e) => `${when(r.started_at_ms)}: ${e}`));
  $("maintenance-errors").replaceChildren(...(errors.length ? [el("h2", {}, "Failed steps"), el("pre", {}, errors.join("\n"))] : []));
}

panels.runs = showRuns;
panels.usage = showUsage;
panels.maintenance = showMaintenance;
