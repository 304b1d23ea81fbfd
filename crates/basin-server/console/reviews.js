// The Reviews panel: proposed merges into protected branches (`basin review`). Open one from a
// branch; a review shows what the branch changed, the target's required checks run on the
// would-be result, and the approvals that count; approve, merge or close it. The server
// decides who may (an approval is never the author's own, and counts only for the head it saw).
"use strict";

// The list (and the form to open one). With `current`, the review showing stays shown (and
// picked, if the filter still lists it); otherwise the detail asks for a pick.
async function showReviews(current) {
  const filter = $("review-state").value;
  const [reviews, refs] = await Promise.all([
    api(`/api/v1/reviews${filter ? `?state=${enc(filter)}` : ""}`),
    api("/api/v1/refs"),
  ]);
  const branches = refs.filter((r) => r.kind === "branch").map((r) => r.name);
  const options = (chosen) => branches.map((b) => el("option", { value: b, selected: b === chosen }, b));
  const source = $("review-source").value || branches.find((b) => b !== "main") || "main";
  $("review-source").replaceChildren(...options(source));
  $("review-into").replaceChildren(...options($("review-into").value || "main"));
  $("review-open").disabled = !can("writer");
  $("review-open").title = can("writer") ? "" : "needs a writer token";
  $("review-list").replaceChildren(...reviews.map((r) =>
    el("li", { "data-id": r.id, class: r.id === current ? "active" : null, onclick: () => showReview(r.id) },
      `#${r.id} `, status(r.state), ` ${r.source} → ${r.target}`, el("small", {}, r.title || "(no title)"))));
  if (current === undefined) {
    $("review-detail").replaceChildren(reviews.length ? "Pick a review."
      : el("p", { class: "muted" }, "No reviews yet: open one from a branch above (or basin review open BRANCH)."));
  }
}

async function openReview() {
  const body = { source: $("review-source").value, into: $("review-into").value, title: $("review-title").value.trim() || null };
  const review = await api("/api/v1/reviews", body);
  $("review-title").value = "";
  await showReview(review.id);
}

// The review's approvals, checks and changes, and what may be done about it now.
async function showReview(id) {
  const r = await api(`/api/v1/reviews/${id}`);
  const open = r.state === "open";
  const failing = r.checks.filter((c) => !c.passed).map((c) => c.name);
  const missing = Math.max(r.approvals_needed - r.approvals_valid, 0);
  const why = !can("writer") ? "needs a writer token" : !open ? `this review is ${r.state}`
    : failing.length ? `failing checks: ${failing.join(", ")}`
    : missing ? `needs ${plural(missing, "more approval")}` : "";
  const act = (label, path, id, { primary = false, blocked = "" } = {}) => el("button", {
    type: "button", id, class: primary ? "primary" : "", disabled: !!blocked, title: blocked || null,
    onclick: () => api(`/api/v1/reviews/${r.id}/${path}`, {}).then(() => showReview(r.id)).catch(() => {}),
  }, label);
  const writerOpen = !can("writer") ? "needs a writer token" : !open ? `this review is ${r.state}` : "";
  const checks = r.checks.map((c) => ({ check: c.name, result: c.passed ? "passed" : "failed", rows: c.rows, sql: c.sql, error: c.error }));
  $("review-detail").replaceChildren(
    el("h2", {}, `Review #${r.id}: ${r.title || `${r.source} into ${r.target}`} `, status(r.state)),
    facts([["merges", `${r.source} → ${r.target}`], ["author", r.author], ["opened", when(r.created_at_ms)],
      ["source head", r.source_head.slice(0, 12)],
      ["approvals", `${r.approvals_valid} of ${r.approvals_needed} needed`
        + (r.approvals.length ? ` (${r.approvals.map((a) => `${a.principal} at ${a.source_head.slice(0, 12)}`).join(", ")})` : "")],
      ["closed by", r.closed_by], ["merged as", r.merged_commit ? r.merged_commit.slice(0, 12) : null]]),
    el("div", { class: "bar" },
      act("Approve", "approve", "review-approve", { blocked: writerOpen }),
      act("Merge", "merge", "review-merge", { primary: true, blocked: why }),
      act("Close", "close", "review-close", { blocked: writerOpen }),
      el("span", { id: "review-why", class: "hint" }, why)),
    el("h2", {}, "Checks on the would-be result"),
    checks.length
      ? el("div", { class: "grid short", id: "review-checks" }, grid(["check", "result", "rows", "sql", "error"], checks))
      : el("p", { class: "muted" }, open ? `${r.target} requires no checks.` : "Checks run while a review is open."),
    ...r.checks.filter((c) => c.first_rows).flatMap((c) => [el("h2", {}, `First rows failing ${c.name}`), el("pre", {}, c.first_rows)]),
    el("h2", {}, "Changes"),
    r.diff.length
      ? el("div", { class: "grid", id: "review-changes" }, grid(DIFF_COLUMNS, diffRows(r.diff)))
      : el("p", { class: "muted" }, open ? "No changes since the branch left its target." : "Changes are shown while a review is open."));
  for (const cell of $("review-detail").querySelectorAll("#review-checks td:nth-child(2)")) cell.className = `status-${cell.textContent}`;
  await showReviews(r.id);
}

panels.reviews = showReviews;

document.addEventListener("DOMContentLoaded", () => {
  $("review-state").addEventListener("change", () => showReviews().catch(() => {}));
  $("review-open").addEventListener("click", () => openReview().catch(() => {}));
});
