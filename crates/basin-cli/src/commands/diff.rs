use std::path::Path;

use basin_catalog::Change;

use crate::lake::open_local;
use crate::output::{FormatArg, ListFormat, print, status};

#[derive(clap::Args)]
#[command(
    after_help = "Per table: the data files and rows added and removed between the two
refs (a file both sides read counts as neither), and the table's snapshot on each side.

With --rows, the rows themselves: each table's rows inserted and deleted between the two
(`update_before`/`update_after` for a table with a key), with the commit and snapshot that
made each change, as SQL's `table_changes('NS.TABLE', FROM, TO)` returns them. Rows a
compaction or an overwrite only rewrote are not changes.

Examples:
  basin diff main dev
  basin diff v1 main --format json
  basin diff v1 main --rows --table sales.orders"
)]
pub struct Args {
    /// The ref to compare from
    from: String,
    /// The ref to compare to
    to: String,
    /// Print the rows that changed, not a count per table
    #[arg(long)]
    rows: bool,
    /// Only this table (NAMESPACE.TABLE)
    #[arg(long, value_name = "NS.TABLE")]
    table: Option<String>,
    #[command(flatten)]
    format: FormatArg,
}

pub async fn run(args: Args, home: Option<&Path>) -> anyhow::Result<()> {
    let lakehouse = open_local(home).await?;
    let mut diffs = lakehouse.refs().diff_tables(&args.from, &args.to).await?;
    if let Some(table) = &args.table {
        diffs.retain(|d| d.entry.key.as_str() == table);
    }
    if args.rows {
        return print_rows(&lakehouse, &args, &diffs).await;
    }
    if diffs.is_empty() && args.format.format == ListFormat::Table {
        status(format!(
            "no differences between `{}` and `{}`",
            args.from, args.to
        ));
        return Ok(());
    }
    let signed = |added: u64, removed: u64| match (added, removed) {
        (0, 0) => "0".to_string(),
        (a, 0) => format!("+{a}"),
        (0, r) => format!("-{r}"),
        (a, r) => format!("+{a} -{r}"),
    };
    let short = |s: &Option<String>| s.as_deref().unwrap_or("-").to_string();
    let rows = diffs
        .iter()
        .map(|d| {
            let e = &d.entry;
            let change = match e.change {
                Change::Added => "added",
                Change::Changed => "changed",
                Change::Dropped => "dropped",
            };
            let table = e
                .from
                .as_ref()
                .or(e.to.as_ref())
                .is_some_and(|c| c.is_table());
            if !table {
                return vec![
                    e.key.to_string(),
                    "namespace".into(),
                    change.into(),
                    String::new(),
                    String::new(),
                    String::new(),
                ];
            }
            vec![
                e.key.to_string(),
                "table".into(),
                change.into(),
                signed(d.rows_added, d.rows_removed),
                signed(d.files_added, d.files_removed),
                format!("{} -> {}", short(&d.from_snapshot), short(&d.to_snapshot)),
            ]
        })
        .collect();
    print(
        args.format.format,
        &diffs,
        &["name", "kind", "change", "rows", "files", "snapshot"],
        rows,
    )
}

/// The changed rows of each changed table in `diffs`: a table per table for people (its name
/// on stderr), one JSON object of arrays keyed by table for scripts.
async fn print_rows(
    lakehouse: &basin_service::Lakehouse,
    args: &Args,
    diffs: &[basin_service::TableDiff],
) -> anyhow::Result<()> {
    use std::io::Write;
    let quote = |s: &str| format!("'{}'", s.replace('\'', "''"));
    let mut json = serde_json::Map::new();
    for diff in diffs {
        let key = diff.entry.key.as_str();
        let is_table = [&diff.entry.from, &diff.entry.to]
            .into_iter()
            .flatten()
            .any(|c| c.is_table());
        if !is_table {
            continue;
        }
        let sql = format!(
            "SELECT * FROM table_changes({}, {}, {})",
            quote(key),
            quote(&args.from),
            quote(&args.to)
        );
        let result = lakehouse.query(&sql, Some(&args.to), None).await?;
        match args.format.format {
            ListFormat::Table => {
                status(format!("{key}:"));
                let mut out = std::io::stdout().lock();
                writeln!(
                    out,
                    "{}",
                    crate::output::batches_table(&result.schema, &result.batches)?
                )?;
            }
            ListFormat::Json => {
                let mut buffer = Vec::new();
                let mut writer = basin_sql::json::writer()
                    .build::<_, arrow::json::writer::JsonArray>(&mut buffer);
                for batch in &result.batches {
                    writer.write(batch)?;
                }
                writer.finish()?;
                drop(writer);
                let rows: serde_json::Value = if buffer.is_empty() {
                    serde_json::Value::Array(Vec::new())
                } else {
                    serde_json::from_slice(&buffer)?
                };
                json.insert(key.to_string(), rows);
            }
        }
    }
    if args.format.format == ListFormat::Json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    } else if diffs.is_empty() {
        status(format!(
            "no differences between `{}` and `{}`",
            args.from, args.to
        ));
    }
    Ok(())
}
