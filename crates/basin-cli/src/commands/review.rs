//! `basin review`: propose a merge into a protected branch, show its changes and checks,
//! approve it as another principal, merge it.

use basin_catalog::{ReviewRecord, ReviewState};

use crate::lake::Context;
use crate::output::{FormatArg, ListFormat, print, status, time};

#[derive(clap::Subcommand)]
pub enum Command {
    /// Propose merging BRANCH into another (a protected one): `basin review open dev --into main`
    Open {
        /// The branch whose changes to merge
        #[arg(value_name = "BRANCH")]
        source: String,
        /// The branch to merge into
        #[arg(long, value_name = "BRANCH", default_value = "main")]
        into: String,
        /// A line saying what the change is (default: "merge BRANCH into TARGET")
        #[arg(long)]
        title: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// List reviews, newest first
    Ls {
        /// Only reviews in this state
        #[arg(long, value_parser = ["open", "merged", "closed"])]
        state: Option<String>,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Show a review: its changes, approvals and the target's required checks on the result
    Show {
        id: i64,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Approve a review (not your own) for the source's current head
    Approve {
        id: i64,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Merge a review: its approvals count toward the target's protection, and the
    /// target's checks run on the result first
    Merge {
        id: i64,
        #[command(flatten)]
        format: FormatArg,
    },
    /// Close a review without merging it
    Close {
        id: i64,
        #[command(flatten)]
        format: FormatArg,
    },
}

pub async fn run(cmd: Command, ctx: &Context) -> anyhow::Result<()> {
    let lake = ctx.open().await?;
    match cmd {
        Command::Open {
            source,
            into,
            title,
            format,
        } => {
            let review = lake.open_review(&source, &into, title.as_deref()).await?;
            status(format!(
                "Opened review #{}: {} (see it with `basin review show {}`)",
                review.id, review.title, review.id
            ));
            one(format.format, &review)
        }
        Command::Ls { state, format } => {
            let state = state.as_deref().map(ReviewState::parse).transpose()?;
            let reviews = lake.reviews(state).await?;
            let rows = reviews.iter().map(row).collect();
            print(format.format, &reviews, HEADER, rows)
        }
        Command::Show { id, format } => {
            let detail = lake.show_review(id).await?;
            if format.format == ListFormat::Json {
                return print(format.format, &detail, &[], Vec::new());
            }
            let r = &detail.review;
            println!("review #{}  {}", r.id, r.title);
            println!("  {} into {}  ({})", r.source, r.target, r.state.as_str());
            println!("  opened by {} on {}", r.author, time(r.created_at_ms));
            println!(
                "  approvals: {} of {} needed{}",
                detail.approvals_valid,
                detail.approvals_needed,
                approvers(r, &detail.source_head)
            );
            if let Some(commit) = &r.merged_commit {
                println!("  merged as commit {}", &commit[..commit.len().min(12)]);
            }
            if !detail.diff.is_empty() {
                println!("changes:");
                for d in &detail.diff {
                    println!(
                        "  {:<30} {:<8} +{} rows -{} rows",
                        d.entry.key.to_string(),
                        format!("{:?}", d.entry.change).to_lowercase(),
                        d.rows_added,
                        d.rows_removed
                    );
                }
            }
            if !detail.checks.is_empty() {
                println!("checks:");
                for c in &detail.checks {
                    let outcome = match (&c.error, c.passed) {
                        (Some(e), _) => format!("cannot run: {e}"),
                        (None, true) => "passed".to_string(),
                        (None, false) => format!("failed: {} rows", c.rows),
                    };
                    println!("  {:<30} {outcome}", c.name);
                    if !c.first_rows.is_empty() {
                        for line in c.first_rows.lines() {
                            println!("    {line}");
                        }
                    }
                }
            }
            Ok(())
        }
        Command::Approve { id, format } => {
            let review = lake.approve_review(id).await?;
            status(format!("Approved review #{id}"));
            one(format.format, &review)
        }
        Command::Merge { id, format } => {
            let report = lake.merge_review(id).await?;
            if format.format == ListFormat::Table {
                match &report.commit {
                    Some(c) => status(format!(
                        "Merged review #{id}: `{}` into `{}` as commit {}",
                        report.source,
                        report.target,
                        &c[..c.len().min(12)]
                    )),
                    None => status(format!(
                        "Review #{id} had nothing to merge; it is closed as merged"
                    )),
                }
            }
            let rows = report
                .changes
                .iter()
                .map(|c| vec![c.key.clone(), format!("{:?}", c.change).to_lowercase()])
                .collect();
            print(format.format, &report, &["table", "change"], rows)
        }
        Command::Close { id, format } => {
            let review = lake.close_review(id).await?;
            status(format!("Closed review #{id}"));
            one(format.format, &review)
        }
    }
}

const HEADER: &[&str] = &[
    "id",
    "state",
    "source",
    "into",
    "author",
    "approvals",
    "opened",
    "title",
];

fn row(r: &ReviewRecord) -> Vec<String> {
    vec![
        format!("#{}", r.id),
        r.state.as_str().to_string(),
        r.source.clone(),
        r.target.clone(),
        r.author.clone(),
        r.approvals.len().to_string(),
        time(r.created_at_ms),
        r.title.clone(),
    ]
}

fn one(format: ListFormat, review: &ReviewRecord) -> anyhow::Result<()> {
    print(format, review, HEADER, vec![row(review)])
}

/// ` (by ana, bo; stale: cy)`: who approved the current head, and whose approval was of an
/// older one.
fn approvers(review: &ReviewRecord, head: &str) -> String {
    let (current, stale): (Vec<_>, Vec<_>) =
        review.approvals.iter().partition(|a| a.source_head == head);
    let names = |v: &[&basin_catalog::Approval]| {
        v.iter()
            .map(|a| a.principal.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match (current.is_empty(), stale.is_empty()) {
        (true, true) => String::new(),
        (false, true) => format!(" (by {})", names(&current)),
        (true, false) => format!(" (stale, of an older head: {})", names(&stale)),
        (false, false) => format!(" (by {}; stale: {})", names(&current), names(&stale)),
    }
}
