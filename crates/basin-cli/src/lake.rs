//! Where a command's operations run: on the lakehouse folder on this machine, or on a
//! `basin serve` named by `--remote URL` / `BASIN_REMOTE`, through its HTTP API. Both sides
//! answer with the same types, so each command has one body and prints the same either way.
//! With `--remote`, a ref or branch left out means the server's `main`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use basin_catalog::{Commit, Ref, RefKind, ReviewRecord, ReviewState, TokenRecord};
use basin_core::{Error, Result};
use basin_ingest::{ImportReport, ImportRequest, Mode, Progress};
use basin_service::pipeline::RunRecord;
use basin_service::{
    Direction, GraphEntry, Lakehouse, LineageGraph, LogEntry, MergeReport, RefInfo, ReviewDetail,
    Role, TableEntry, UsageBy, UsageReport,
};
use basin_sql::QueryResult;
use basin_table::TableSummary;
use reqwest::Method;
use serde_json::json;

use crate::remote::{JsonBody, Remote};

mod sent;

/// What `--home`, `--remote` and `--token` said.
pub struct Context {
    pub home: Option<PathBuf>,
    pub remote: Option<String>,
    pub token: Option<String>,
    pub ca_cert: Option<PathBuf>,
    pub bypass_protection: bool,
}

/// Opens the lakehouse named by `--home`, or the one holding the current folder.
pub async fn open_local(home: Option<&Path>) -> anyhow::Result<Lakehouse> {
    let cwd = std::env::current_dir()?;
    Ok(Lakehouse::open(home, &cwd).await?)
}

impl Context {
    /// The lakehouse the command works on, here or at `--remote`.
    pub async fn open(&self) -> anyhow::Result<Lake> {
        Ok(match &self.remote {
            Some(url) => {
                let mut remote = Remote::new(url, self.token.clone(), self.ca_cert.as_deref())?;
                remote.bypass_protection = self.bypass_protection;
                Lake::Remote(remote)
            }
            None => Lake::Local(open_local(self.home.as_deref()).await?),
        })
    }

    /// The lakehouse folder, for commands that only run on this machine.
    pub fn home(&self, command: &str) -> Result<Option<&Path>> {
        match &self.remote {
            Some(_) => Err(local_only(command)),
            None => Ok(self.home.as_deref()),
        }
    }
}

fn local_only(command: &str) -> Error {
    Error::invalid(format!(
        "`basin {command}` works on a lakehouse folder on this machine, not over --remote"
    ))
    .with_hint("unset BASIN_REMOTE (or drop --remote), or run it where the lakehouse lives")
}

#[allow(
    clippy::large_enum_variant,
    reason = "one per process, never moved around"
)]
pub enum Lake {
    Local(Lakehouse),
    Remote(Remote),
}

impl Lake {
    /// The lakehouse on this machine; `command` names what needs it when this is remote.
    pub fn local(&self, command: &str) -> Result<&Lakehouse> {
        match self {
            Lake::Local(lakehouse) => Ok(lakehouse),
            Lake::Remote(_) => Err(local_only(command)),
        }
    }

    /// The branch commands write to when none is named.
    pub fn current_branch(&self) -> String {
        match self {
            Lake::Local(lakehouse) => lakehouse.current_branch(),
            Lake::Remote(_) => basin_catalog::MAIN.to_string(),
        }
    }

    pub async fn list_refs(&self, kind: RefKind) -> Result<Vec<RefInfo>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().list(kind).await,
            Lake::Remote(remote) => {
                let all: Vec<RefInfo> = remote.get(&["refs"], &[]).await?;
                Ok(all.into_iter().filter(|r| r.kind == kind).collect())
            }
        }
    }

    pub async fn create_branch(&self, name: &str, from: Option<&str>) -> Result<Ref> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().create_branch(name, from).await,
            Lake::Remote(remote) => {
                let body = json!({"name": name, "from": from});
                remote.post(&["branches"], &body).await
            }
        }
    }

    pub async fn delete_branch(&self, name: &str) -> Result<()> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().delete_branch(name).await,
            Lake::Remote(remote) => remote.delete(&["branches", name], &[]).await,
        }
    }

    pub async fn create_tag(&self, name: &str, at: Option<&str>) -> Result<Ref> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().create_tag(name, at).await,
            Lake::Remote(remote) => {
                remote
                    .post(&["tags"], &json!({"name": name, "at": at}))
                    .await
            }
        }
    }

    pub async fn delete_tag(&self, name: &str) -> Result<()> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().delete_tag(name).await,
            Lake::Remote(remote) => remote.delete(&["tags", name], &[]).await,
        }
    }

    pub async fn log(&self, at: Option<&str>, limit: usize) -> Result<Vec<LogEntry>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().log(at, limit).await,
            Lake::Remote(remote) => {
                let query = [("ref", owned(at)), ("limit", Some(limit.to_string()))];
                remote.get(&["log"], &query).await
            }
        }
    }

    /// A table's lineage (`basin lineage`).
    pub async fn lineage(
        &self,
        table: &str,
        at: Option<&str>,
        depth: usize,
        direction: Direction,
    ) -> Result<LineageGraph> {
        match self {
            Lake::Local(lakehouse) => lakehouse.lineage().of(table, at, depth, direction).await,
            Lake::Remote(remote) => {
                let way = serde_json::to_value(direction).unwrap_or_default();
                let query = [
                    ("table", Some(table.to_string())),
                    ("ref", owned(at)),
                    ("depth", Some(depth.to_string())),
                    ("direction", way.as_str().map(str::to_string)),
                ];
                remote.get(&["lineage"], &query).await
            }
        }
    }

    /// Every branch's and tag's commits as a graph (`basin log --graph`).
    pub async fn graph(&self, limit: usize, runs: bool) -> Result<Vec<GraphEntry>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().graph(limit, runs).await,
            Lake::Remote(remote) => {
                let query = [
                    ("limit", Some(limit.to_string())),
                    ("runs", Some(runs.to_string())),
                ];
                remote.get(&["graph"], &query).await
            }
        }
    }

    pub async fn merge(
        &self,
        source: &str,
        into: Option<&str>,
        dry_run: bool,
    ) -> Result<MergeReport> {
        match self {
            Lake::Local(lakehouse) => lakehouse.refs().merge(source, into, dry_run).await,
            Lake::Remote(remote) => {
                let body = json!({"source": source, "into": into, "dry_run": dry_run});
                remote.post(&["merge"], &body).await
            }
        }
    }

    pub async fn list_namespaces(&self, at: Option<&str>) -> Result<Vec<String>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.namespaces().list(at).await,
            Lake::Remote(remote) => remote.get(&["namespaces"], &[("ref", owned(at))]).await,
        }
    }

    pub async fn create_namespace(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        match self {
            Lake::Local(lakehouse) => {
                lakehouse
                    .namespaces()
                    .create(name, branch, Default::default())
                    .await
            }
            Lake::Remote(remote) => {
                let body = json!({"name": name, "branch": branch});
                remote.post(&["namespaces"], &body).await
            }
        }
    }

    pub async fn drop_namespace(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        match self {
            Lake::Local(lakehouse) => lakehouse.namespaces().drop(name, branch).await,
            Lake::Remote(remote) => {
                let query = [("branch", owned(branch))];
                remote.delete_json(&["namespaces", name], &query).await
            }
        }
    }

    pub async fn list_tables(&self, at: Option<&str>) -> Result<Vec<TableEntry>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.tables().list(at).await,
            Lake::Remote(remote) => remote.get(&["tables"], &[("ref", owned(at))]).await,
        }
    }

    pub async fn show_table(&self, name: &str, at: Option<&str>) -> Result<TableSummary> {
        match self {
            Lake::Local(lakehouse) => lakehouse.tables().show(name, at).await,
            Lake::Remote(remote) => remote.get(&["tables", name], &[("ref", owned(at))]).await,
        }
    }

    pub async fn drop_table(&self, name: &str, branch: Option<&str>) -> Result<Commit> {
        match self {
            Lake::Local(lakehouse) => lakehouse.tables().drop(name, branch).await,
            Lake::Remote(remote) => {
                let query = [("branch", owned(branch))];
                remote.delete_json(&["tables", name], &query).await
            }
        }
    }

    /// Imports files. Remotely, one local file is uploaded and imported in one commit.
    pub async fn import(
        &self,
        request: ImportRequest,
        progress: Option<Progress>,
    ) -> Result<ImportReport> {
        match self {
            Lake::Local(lakehouse) => lakehouse.import(request, progress).await,
            Lake::Remote(remote) => upload(remote, request, progress).await,
        }
    }

    /// Waits for the columns this process's queries decoded to be kept on disk for the next
    /// command's (`[sql] column_cache_disk`); remotely the server keeps its own.
    pub async fn settle_columns(&self) {
        if let Lake::Local(lakehouse) = self {
            lakehouse.settle_columns().await;
        }
    }

    /// Runs SQL; remotely the rows come back as an Arrow IPC stream, types intact.
    pub async fn query(
        &self,
        sql: &str,
        at: Option<&str>,
        namespace: Option<&str>,
    ) -> Result<QueryResult> {
        match self {
            Lake::Local(lakehouse) => {
                lakehouse
                    .usage()
                    .query_via("cli", sql, at, namespace, false)
                    .await
            }
            Lake::Remote(remote) => {
                let started = std::time::Instant::now();
                let body = json!({"sql": sql, "ref": at, "namespace": namespace});
                let request = remote
                    .request(Method::POST, &["query"], &[])
                    .header(reqwest::header::ACCEPT, basin_server::ARROW_STREAM)
                    .json_body(&body)?;
                let bytes = remote
                    .send(request)
                    .await?
                    .bytes()
                    .await
                    .map_err(|e| Error::io_with("the query's answer broke off", e))?;
                let unreadable = |e: arrow::error::ArrowError| {
                    Error::internal(format!("cannot read the query's Arrow answer: {e}"))
                };
                let reader =
                    arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None)
                        .map_err(unreadable)?;
                let schema = reader.schema();
                let batches = reader.collect::<Result<Vec<_>, _>>().map_err(unreadable)?;
                Ok(QueryResult {
                    schema,
                    batches,
                    seconds: started.elapsed().as_secs_f64(),
                    // The server meters the scan; the client does not see it.
                    bytes_scanned: 0,
                })
            }
        }
    }

    pub async fn list_runs(&self, limit: usize) -> Result<Vec<RunRecord>> {
        match self {
            Lake::Local(lakehouse) => {
                lakehouse.pipelines().settle_abandoned_runs().await?;
                lakehouse.pipelines().list_runs(limit).await
            }
            Lake::Remote(remote) => {
                let query = [("limit", Some(limit.to_string()))];
                remote.get(&["runs"], &query).await
            }
        }
    }

    pub async fn show_run(&self, id: &str) -> Result<RunRecord> {
        match self {
            Lake::Local(lakehouse) => {
                lakehouse.pipelines().settle_abandoned_runs().await?;
                lakehouse.pipelines().show_run(id).await
            }
            Lake::Remote(remote) => remote.get(&["runs", id], &[]).await,
        }
    }

    pub async fn usage(&self, since_ms: i64, by: UsageBy) -> Result<UsageReport> {
        match self {
            Lake::Local(lakehouse) => lakehouse.usage().report(since_ms, by).await,
            Lake::Remote(remote) => {
                let query = [
                    ("since_ms", Some(since_ms.to_string())),
                    ("by", Some(by.as_str().to_string())),
                ];
                remote.get(&["usage"], &query).await
            }
        }
    }

    pub async fn create_token(
        &self,
        name: &str,
        role: Option<Role>,
        grants: &[basin_catalog::Grant],
    ) -> Result<(TokenRecord, String)> {
        match self {
            Lake::Local(lakehouse) => lakehouse.tokens().create(name, role, grants).await,
            Lake::Remote(remote) => {
                #[derive(serde::Deserialize)]
                struct Created {
                    token: TokenRecord,
                    secret: String,
                }
                let grants: Vec<String> = grants.iter().map(|g| g.display()).collect();
                let body = json!({"name": name, "role": role.map(Role::as_str), "grants": grants});
                let created: Created = remote.post(&["tokens"], &body).await?;
                Ok((created.token, created.secret))
            }
        }
    }

    pub async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.tokens().list().await,
            Lake::Remote(remote) => remote.get(&["tokens"], &[]).await,
        }
    }

    pub async fn revoke_token(&self, id: &str) -> Result<()> {
        match self {
            Lake::Local(lakehouse) => lakehouse.tokens().revoke(id).await,
            Lake::Remote(remote) => remote.delete(&["tokens", id], &[]).await,
        }
    }
}

fn owned(value: Option<&str>) -> Option<String> {
    value.map(str::to_string)
}

/// Streams one local file to `POST /api/v1/tables/{name}/import`, reporting progress.
async fn upload(
    remote: &Remote,
    request: ImportRequest,
    progress: Option<Progress>,
) -> Result<ImportReport> {
    use futures::StreamExt;

    let [source] = request.sources.as_slice() else {
        return Err(Error::invalid(format!(
            "a remote import takes one file, not {}",
            request.sources.len()
        ))
        .with_hint("import the files one by one, or on the server's machine"));
    };
    let path = Path::new(source);
    let file_name = path
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|_| path.is_file())
        .ok_or_else(|| {
            Error::invalid(format!("{source} is not a file on this machine"))
                .with_hint("a remote import uploads one local file (no folders, globs or s3://)")
        })?;
    let file = tokio::fs::File::open(path)
        .await
        .map_err(|e| Error::io_with(format!("cannot open {source}"), e))?;
    let total = file
        .metadata()
        .await
        .map_err(|e| Error::io_with(format!("cannot read {source}"), e))?
        .len();
    let sent = Arc::new(std::sync::atomic::AtomicU64::new(0));
    let body = tokio_util::io::ReaderStream::new(file).inspect(move |chunk| {
        if let (Ok(chunk), Some(progress)) = (chunk, &progress) {
            let done = sent.fetch_add(chunk.len() as u64, std::sync::atomic::Ordering::Relaxed)
                + chunk.len() as u64;
            progress(done, total);
        }
    });
    let csv = &request.csv;
    let query = [
        ("filename", Some(file_name.to_string())),
        ("branch", Some(request.branch.clone())),
        (
            "mode",
            Some(match request.mode {
                Mode::Append => "append".to_string(),
                Mode::Replace => "replace".to_string(),
            }),
        ),
        (
            "format",
            request.format.map(|f| format!("{f:?}").to_lowercase()),
        ),
        (
            "partition_by",
            (!request.partition_by.is_empty()).then(|| request.partition_by.join(";")),
        ),
        ("delimiter", csv.delimiter.map(|d| (d as char).to_string())),
        ("quote", Some((csv.quote as char).to_string())),
        ("header", Some(csv.header.to_string())),
        (
            "allow_new_columns",
            Some(request.allow_new_columns.to_string()),
        ),
    ];
    let upload = remote
        .request(Method::POST, &["tables", &request.table, "import"], &query)
        .header(reqwest::header::CONTENT_LENGTH, total)
        .body(reqwest::Body::wrap_stream(body));
    remote.json(upload).await
}

/// Reviews (`basin review`), here or at `--remote`.
impl Lake {
    pub async fn open_review(
        &self,
        source: &str,
        into: &str,
        title: Option<&str>,
    ) -> Result<ReviewRecord> {
        match self {
            Lake::Local(lakehouse) => lakehouse.reviews().open(source, into, title).await,
            Lake::Remote(remote) => {
                let body = json!({"source": source, "into": into, "title": title});
                remote.post(&["reviews"], &body).await
            }
        }
    }

    pub async fn reviews(&self, state: Option<ReviewState>) -> Result<Vec<ReviewRecord>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.reviews().list(state).await,
            Lake::Remote(remote) => {
                let query = [("state", state.map(|s| s.as_str().to_string()))];
                remote.get(&["reviews"], &query).await
            }
        }
    }

    pub async fn show_review(&self, id: i64) -> Result<ReviewDetail> {
        match self {
            Lake::Local(lakehouse) => lakehouse.reviews().show(id).await,
            Lake::Remote(remote) => remote.get(&["reviews", &id.to_string()], &[]).await,
        }
    }

    pub async fn approve_review(&self, id: i64) -> Result<ReviewRecord> {
        match self {
            Lake::Local(lakehouse) => lakehouse.reviews().approve(id).await,
            Lake::Remote(remote) => {
                remote
                    .post(&["reviews", &id.to_string(), "approve"], &json!({}))
                    .await
            }
        }
    }

    pub async fn merge_review(&self, id: i64) -> Result<MergeReport> {
        match self {
            Lake::Local(lakehouse) => lakehouse.reviews().merge(id).await,
            Lake::Remote(remote) => {
                remote
                    .post(&["reviews", &id.to_string(), "merge"], &json!({}))
                    .await
            }
        }
    }

    pub async fn close_review(&self, id: i64) -> Result<ReviewRecord> {
        match self {
            Lake::Local(lakehouse) => lakehouse.reviews().close(id).await,
            Lake::Remote(remote) => {
                remote
                    .post(&["reviews", &id.to_string(), "close"], &json!({}))
                    .await
            }
        }
    }
}

impl Lake {
    /// The audit log, newest first (`basin audit ls`).
    pub async fn audit(
        &self,
        principal: Option<&str>,
        since_ms: Option<i64>,
        limit: usize,
    ) -> Result<Vec<basin_catalog::AuditEntry>> {
        match self {
            Lake::Local(lakehouse) => lakehouse.audit().list(principal, since_ms, limit).await,
            Lake::Remote(remote) => {
                let query = [
                    ("principal", owned(principal)),
                    ("since_ms", since_ms.map(|s| s.to_string())),
                    ("limit", Some(limit.to_string())),
                ];
                remote.get(&["audit"], &query).await
            }
        }
    }
}
