//! One import: the files' columns probed, the table created or checked (and widened with
//! new columns when allowed), every file streamed into data files, then one commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::{DataType, SchemaRef};
use basin_catalog::{CommitRequest, Content, Key};
use basin_core::{Error, Result};
use basin_table::{Staged, TableChange, Tables};
use iceberg::io::FileIO;
use iceberg::table::Table;
use serde::{Deserialize, Serialize};

use crate::convert::SAMPLE_ROWS;
use crate::infer;
use crate::input_files::{self, Format, InputFile};
use crate::probe::probe;
use crate::read::CsvOptions;
use crate::schema;
use crate::stream::{self, Progress};

/// Append to the table, or replace its rows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Append,
    Replace,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Append => "append",
            Mode::Replace => "replace",
        }
    }
}

/// What to import, and how.
#[derive(Clone, Debug)]
pub struct ImportRequest {
    pub sources: Vec<String>,
    pub table: String,
    pub branch: String,
    pub mode: Mode,
    pub format: Option<Format>,
    pub csv: CsvOptions,
    pub partition_by: Vec<String>,
    pub allow_new_columns: bool,
    /// Rows per file read to infer column types.
    pub sample_rows: usize,
    /// Queued events whose output this import stores (see `CommitRequest::events`).
    pub events: Vec<String>,
    /// The commit's message, instead of "import N files into TABLE": who wrote the rows
    /// (a function, a pipeline's model), for `basin log`.
    pub message: Option<String>,
    /// Properties of the commit, kept in the table's new snapshot summary too (an
    /// incremental model's cursor).
    pub properties: std::collections::BTreeMap<String, String>,
}

impl ImportRequest {
    pub fn new(sources: Vec<String>, table: impl Into<String>, branch: impl Into<String>) -> Self {
        Self {
            sources,
            table: table.into(),
            branch: branch.into(),
            mode: Mode::Append,
            format: None,
            csv: CsvOptions::default(),
            partition_by: Vec::new(),
            allow_new_columns: false,
            sample_rows: SAMPLE_ROWS,
            events: Vec::new(),
            message: None,
            properties: Default::default(),
        }
    }
}

#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ImportReport {
    pub table: String,
    pub branch: String,
    pub commit: String,
    pub created: bool,
    pub mode: Mode,
    pub files: usize,
    pub rows: u64,
    pub bytes_read: u64,
    pub data_files: usize,
    pub new_columns: Vec<String>,
    /// Columns of the table that a file lacks: its rows are null there.
    #[serde(default)]
    pub missing_columns: Vec<MissingColumn>,
    pub seconds: f64,
}

/// A column of the table that an imported file does not have.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct MissingColumn {
    pub file: String,
    pub column: String,
}

/// Runs an import. `s3` reads `s3://` sources.
pub async fn import(
    tables: &Tables,
    request: ImportRequest,
    s3: Option<&FileIO>,
    progress: Option<Progress>,
) -> Result<ImportReport> {
    let started = Instant::now();
    match import_once(tables, request.clone(), s3, progress.clone(), started).await {
        // Two writers created the table at once (the first batches of a function writing a
        // new table, on several nodes): the other won, so this import runs again against the
        // table it made, as if it had started after it. The files written for the losing
        // table are reachable from no commit; `basin gc` removes them.
        Err(e) if basin_table::created_meanwhile(&e) => {
            tracing::info!(table = request.table, "{}; importing into it", e.message);
            import_once(tables, request, s3, progress, started).await
        }
        other => other,
    }
}

async fn import_once(
    tables: &Tables,
    request: ImportRequest,
    s3: Option<&FileIO>,
    progress: Option<Progress>,
    started: Instant,
) -> Result<ImportReport> {
    let key = Key::table(&request.table)?;
    let catalog = tables.catalog();
    let at = catalog.resolve(&request.branch).await?;
    let branch = at.writable_branch()?.to_string();
    let files: Vec<Arc<InputFile>> = input_files::expand(&request.sources, request.format, s3)
        .await?
        .into_iter()
        .map(Arc::new)
        .collect();
    let file_count = files.len();
    let message = request.message.clone().unwrap_or_else(|| {
        format!(
            "import {} file{} into {key} ({})",
            file_count,
            if file_count == 1 { "" } else { "s" },
            request.mode.as_str()
        )
    });
    let mut commit_request = CommitRequest::new(&branch, at.commit.clone(), message);
    commit_request.events = request.events.clone();
    commit_request.properties.extend(request.properties.clone());
    // Who wrote the rows: the files, unless a function or a model says it did.
    commit_request
        .properties
        .entry(basin_table::lineage::PROPERTY.to_string())
        .or_insert_with(|| basin_table::lineage::imported(&request.sources).property());
    // A protected branch refuses the commit: say so before reading any data.
    catalog.admit(&commit_request).await?;

    // Every file's columns, before any data is written.
    let mut probes = Vec::with_capacity(files.len());
    for file in &files {
        // Reading and parsing the sample blocks: on a thread that may block, not the
        // runtime's (whose other tasks answer the server's requests).
        let (sampled, csv, rows) = (file.clone(), request.csv, request.sample_rows);
        let columns = tokio::task::spawn_blocking(move || probe(&sampled, &csv, rows))
            .await
            .map_err(|e| Error::internal(format!("sampling {} failed: {e}", file.display)))??;
        if file.format == Format::Csv && request.csv.delimiter.is_none() {
            other_delimiter(&file.display, &columns)?;
        }
        probes.push(columns);
    }

    let existing = match catalog.content(&at, &key).await? {
        Some(Content::Table { metadata_location }) => {
            Some(tables.load_from(&key, &metadata_location).await?)
        }
        Some(Content::Namespace { .. }) => {
            return Err(Error::invalid(format!(
                "`{key}` is a namespace, not a table"
            )));
        }
        None => None,
    };
    let mut missing_columns = Vec::new();
    let (staged, new_columns) = match existing {
        Some(table) => {
            stage_existing(
                tables,
                &key,
                table,
                &files,
                &probes,
                &request,
                &mut missing_columns,
            )
            .await?
        }
        None => (
            stage_new(tables, &key, &files, &probes, &request).await?,
            Vec::new(),
        ),
    };

    let target: SchemaRef = Arc::new(
        iceberg::arrow::schema_to_arrow_schema(staged.table.metadata().current_schema())
            .map_err(basin_table::from_iceberg("table schema"))?,
    );
    let total_bytes: u64 = files.iter().map(|f| f.size).sum();
    let written =
        stream::write_all(&staged.table, files, probes, request.csv, target, progress).await?;
    let (rows, data_files) = (written.rows, written.files);
    let data_file_count = data_files.len();
    let change = match request.mode {
        Mode::Append => TableChange::Append(data_files),
        Mode::Replace => TableChange::Replace(data_files),
    };
    let created = staged.created;
    let outcome = tables
        .commit_change(&key, staged, change, commit_request)
        .await?;
    Ok(ImportReport {
        table: key.to_string(),
        branch,
        commit: outcome.commit.id.to_string(),
        created,
        mode: request.mode,
        files: file_count,
        rows,
        bytes_read: total_bytes,
        data_files: data_file_count,
        new_columns,
        missing_columns,
        seconds: started.elapsed().as_secs_f64(),
    })
}

/// The existing table staged for the files: its partitioning as asked (if asked), every
/// file's columns checked against it, the new columns added when allowed. The new
/// columns' names, and the table's columns each file lacks in `missing_columns`.
async fn stage_existing(
    tables: &Tables,
    key: &Key,
    table: Table,
    files: &[Arc<InputFile>],
    probes: &[Vec<(String, DataType)>],
    request: &ImportRequest,
    missing_columns: &mut Vec<MissingColumn>,
) -> Result<(Staged, Vec<String>)> {
    if !request.partition_by.is_empty() {
        let wanted =
            schema::partition_spec(&request.partition_by, table.metadata().current_schema())?;
        let current = table.metadata().default_partition_spec();
        let same = wanted.fields().len() == current.fields().len()
            && wanted
                .fields()
                .iter()
                .zip(current.fields())
                .all(|(a, b)| a.source_id == b.source_id && a.transform == b.transform);
        if !same {
            return Err(
                Error::invalid(format!("`{key}` is already partitioned differently")).with_hint(
                    "drop --partition-by to use the table's partitioning (see `basin table show`)",
                ),
            );
        }
    }
    let target = iceberg::arrow::schema_to_arrow_schema(table.metadata().current_schema())
        .map_err(basin_table::from_iceberg("table schema"))?;
    let mut new_columns: BTreeMap<String, DataType> = BTreeMap::new();
    for (file, columns) in files.iter().zip(probes) {
        check_columns(
            key,
            &target,
            file,
            columns,
            request.allow_new_columns,
            &mut new_columns,
            missing_columns,
        )?;
    }
    let mut additions = Vec::new();
    for (name, data_type) in &new_columns {
        let t = schema::iceberg_type(data_type).ok_or_else(|| {
            Error::invalid(format!(
                "column `{name}` has type {data_type}, which Basin cannot store yet"
            ))
        })?;
        additions.push((name.clone(), t));
    }
    let staged = tables
        .stage_add_columns(Tables::stage_existing(table), additions)
        .await?;
    Ok((staged, new_columns.into_keys().collect()))
}

/// Checks one file's `columns` against the table's `target` schema: a typed file's column
/// must fit the table's type, and a column the table lacks is new (if allowed, into
/// `new_columns`) or most likely a renamed one. The table's columns the file lacks go into
/// `missing_columns`.
fn check_columns(
    key: &Key,
    target: &arrow::datatypes::Schema,
    file: &InputFile,
    columns: &[(String, DataType)],
    allow_new_columns: bool,
    new_columns: &mut BTreeMap<String, DataType>,
    missing_columns: &mut Vec<MissingColumn>,
) -> Result<()> {
    // The table's columns this file lacks: a renamed column is likely among them.
    let absent: Vec<&str> = target
        .fields()
        .iter()
        .map(|f| f.name().as_str())
        .filter(|t| !columns.iter().any(|(name, _)| name == t))
        .collect();
    let unknown = columns
        .iter()
        .filter(|(name, _)| target.field_with_name(name).is_err())
        .count();
    for name in &absent {
        missing_columns.push(MissingColumn {
            file: file.display.clone(),
            column: name.to_string(),
        });
    }
    for (name, data_type) in columns {
        match target.field_with_name(name) {
            Ok(field) => {
                // CSV and JSON text is parsed as the table's type; Parquet and
                // Arrow are typed.
                if matches!(file.format, Format::Parquet | Format::Arrow)
                    && !schema::compatible(data_type, field.data_type())
                {
                    return Err(Error::invalid(format!(
                        "{}: column `{name}` is {} but `{key}` stores it as {}",
                        file.display,
                        schema::type_name(data_type),
                        schema::type_name(field.data_type())
                    ))
                    .with_hint("convert the column, or import into a new table"));
                }
            }
            Err(_) => {
                if !allow_new_columns {
                    let known: Vec<&str> =
                        target.fields().iter().map(|f| f.name().as_str()).collect();
                    // One unknown column and one absent: most likely renamed.
                    let renamed = basin_core::suggest(name, absent.iter().copied())
                        .or_else(|| basin_core::suggest(name, known.iter().copied()))
                        .or_else(|| {
                            (unknown == 1 && absent.len() == 1).then(|| absent[0].to_string())
                        });
                    let hint = match renamed {
                        Some(s) => format!(
                            "did you mean `{s}`? To add `{name}` as a new column, pass --allow-new-columns"
                        ),
                        None => format!(
                            "pass --allow-new-columns to add `{name}` to `{key}` (columns: {})",
                            known.join(", ")
                        ),
                    };
                    return Err(Error::invalid(format!(
                        "{}:1: column `{name}` is not in table `{key}`",
                        file.display
                    ))
                    .with_hint(hint));
                }
                new_columns
                    .entry(name.clone())
                    .or_insert_with(|| data_type.clone());
            }
        }
    }
    Ok(())
}

/// A new table staged with every file's columns: numbers widen across files; otherwise
/// the first file's type stands, and a value that does not fit it fails with its line.
async fn stage_new(
    tables: &Tables,
    key: &Key,
    files: &[Arc<InputFile>],
    probes: &[Vec<(String, DataType)>],
    request: &ImportRequest,
) -> Result<Staged> {
    let mut columns: Vec<(String, DataType)> = Vec::new();
    for probe in probes {
        for (name, data_type) in probe {
            match columns.iter_mut().find(|(n, _)| n == name) {
                Some((_, t)) => *t = infer::widen(t, data_type).unwrap_or_else(|| t.clone()),
                None => columns.push((name.clone(), data_type.clone())),
            }
        }
    }
    let first = files.first().map_or("input", |f| f.display.as_str());
    let table_schema = schema::table_schema(&columns, first)?;
    let spec = schema::partition_spec(&request.partition_by, &table_schema)?;
    tables
        .stage_create(key, table_schema, spec, Default::default())
        .await
}

/// A CSV header read as one column that another delimiter would split (`id;amount;day`
/// read with `,`): almost surely the wrong delimiter, so the import stops and names it.
fn other_delimiter(file: &str, columns: &[(String, DataType)]) -> Result<()> {
    let [(header, _)] = columns else {
        return Ok(());
    };
    let Some(delimiter) = [';', '\t', '|'].into_iter().find(|d| {
        header
            .split(*d)
            .filter(|part| !part.trim().is_empty())
            .count()
            > 1
    }) else {
        return Ok(());
    };
    let shown = if delimiter == '\t' {
        "$'\\t'".to_string()
    } else {
        format!("'{delimiter}'")
    };
    Err(Error::invalid(format!(
        "{file}:1: the header `{}` reads as one column",
        header.escape_debug()
    ))
    .with_hint(format!(
        "the file looks separated by `{}`: pass --delimiter {shown} (or --delimiter ',' if it \
         really is one column)",
        delimiter.escape_debug()
    )))
}
