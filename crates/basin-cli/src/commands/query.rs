use std::fs::File;
use std::io::Write;
use std::path::PathBuf;

use arrow::json::writer::JsonArray;
use arrow::record_batch::RecordBatch;
use basin_sql::export::{FileFormat, FileWriter};
use clap::ValueEnum;

use crate::lake::Context;
use crate::output::status;

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum QueryFormat {
    Table,
    Csv,
    Json,
    Parquet,
}

#[derive(clap::Args)]
#[command(after_help = "Examples:
  basin query \"SELECT count(*) FROM sales.orders\"
  basin query \"SELECT * FROM orders LIMIT 10\" -n sales --ref dev
  basin query \"SELECT * FROM sales.orders\" --ref v1 --format csv      # a tag
  basin query \"SELECT * FROM sales.orders\" --ref main@1a2b3c4d       # a past commit
  basin query - --format parquet -o result.parquet < report.sql
  RUST_LOG=basin_sql=debug basin query \"...\"   # stderr: where its milliseconds went")]
pub struct Args {
    /// SQL to run (several statements separated by `;`: the last one's rows are printed).
    /// Tables are named NAMESPACE.TABLE. `-` reads the SQL from stdin.
    sql: String,
    /// A branch, tag or REF@COMMIT to query (default: the current branch)
    #[arg(long = "ref", value_name = "REF")]
    at: Option<String>,
    /// Resolve unqualified table names in this namespace
    #[arg(long, short = 'n', value_name = "NAMESPACE")]
    namespace: Option<String>,
    /// Output format (`parquet` needs -o)
    #[arg(long, value_enum, default_value_t = QueryFormat::Table)]
    format: QueryFormat,
    /// Write the result to FILE instead of stdout
    #[arg(long, short = 'o', value_name = "FILE")]
    output: Option<PathBuf>,
}

pub async fn run(args: Args, ctx: &Context) -> anyhow::Result<()> {
    let sql = if args.sql == "-" {
        std::io::read_to_string(std::io::stdin())?
    } else {
        args.sql
    };
    if args.format == QueryFormat::Parquet && args.output.is_none() {
        return Err(
            basin_core::Error::invalid("`--format parquet` writes a file")
                .with_hint("add -o result.parquet")
                .into(),
        );
    }
    let lake = ctx.open().await?;
    let result = lake
        .query(&sql, args.at.as_deref(), args.namespace.as_deref())
        .await?;
    let mut out: Box<dyn Write + Send> = match &args.output {
        Some(path) => Box::new(File::create(path)?),
        None => Box::new(std::io::stdout()),
    };
    write_batches(&mut out, args.format, &result.schema, &result.batches)?;
    out.flush()?;
    status(format!(
        "({} row{}, {:.3}s)",
        result.num_rows(),
        if result.num_rows() == 1 { "" } else { "s" },
        result.seconds
    ));
    // The answer is out; the columns the query decoded are kept for the next command's.
    lake.settle_columns().await;
    Ok(())
}

pub(crate) fn write_batches(
    out: &mut Box<dyn Write + Send>,
    format: QueryFormat,
    schema: &arrow::datatypes::SchemaRef,
    batches: &[RecordBatch],
) -> anyhow::Result<()> {
    match format {
        QueryFormat::Table => {
            writeln!(out, "{}", crate::output::batches_table(schema, batches)?)?;
        }
        QueryFormat::Csv | QueryFormat::Parquet => {
            let format = if format == QueryFormat::Csv {
                FileFormat::Csv
            } else {
                FileFormat::Parquet
            };
            let mut writer = FileWriter::try_new(out, format, schema.clone())?;
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
        }
        QueryFormat::Json => {
            // Exact numbers, as the HTTP API answers (decimals and big integers as strings).
            let mut writer = basin_sql::json::writer().build::<_, JsonArray>(out);
            for batch in batches {
                writer.write(batch)?;
            }
            writer.finish()?;
            let inner = writer.into_inner();
            writeln!(inner)?;
        }
    }
    Ok(())
}
