//! Basin's SQL: a DataFusion session over the tables of one ref (a branch, a tag, or a past
//! commit), with tables named `namespace.table`. Time travel is just another ref.
//!
//! ```no_run
//! # async fn demo(tables: &basin_table::Tables) -> basin_catalog::Result<()> {
//! let at = tables.catalog().resolve("main").await?;
//! let session = basin_sql::Session::new(tables, &at, Some("tpch")).await?;
//! let result = session.run("SELECT count(*) FROM lineitem").await?;
//! # Ok(()) }
//! ```

mod provider;

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use basin_catalog::{Error, ErrorKind, Resolved, Result, suggest};
use basin_table::Tables;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::execution::context::SQLOptions;
use datafusion::execution::context::SessionContext;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::prelude::SessionConfig;
use datafusion::sql::parser::{DFParser, Statement};
use futures::StreamExt;

use crate::provider::RefCatalog;

/// The catalog name DataFusion sees; users write `ns.table`.
pub const CATALOG: &str = "basin";

/// The result of the last statement of a script.
#[derive(Debug)]
pub struct QueryResult {
    pub schema: SchemaRef,
    pub batches: Vec<RecordBatch>,
    pub seconds: f64,
    /// Bytes the script's scans read from storage (see [`bytes_scanned`]).
    pub bytes_scanned: u64,
}

impl QueryResult {
    pub fn num_rows(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }
}

pub struct Session {
    ctx: SessionContext,
    catalog: Arc<RefCatalog>,
}

impl Session {
    /// A session over the tables at `at`. Unqualified table names resolve in `namespace`.
    pub async fn new(tables: &Tables, at: &Resolved, namespace: Option<&str>) -> Result<Self> {
        let catalog = Arc::new(RefCatalog::load(tables.clone(), at).await?);
        let default_schema = namespace.unwrap_or("default");
        if namespace.is_some() && !catalog.has_namespace(default_schema) {
            let names = catalog.namespace_names();
            let hint = match suggest(default_schema, names.iter().map(String::as_str)) {
                Some(s) => format!("did you mean `{s}`?"),
                None => format!("namespaces on `{}`: {}", at.spec, names.join(", ")),
            };
            return Err(Error::not_found(format!(
                "namespace `{default_schema}` does not exist on `{}`",
                at.spec
            ))
            .with_hint(hint));
        }
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(CATALOG, default_schema)
            .with_information_schema(true)
            .with_create_default_catalog_and_schema(false);
        let ctx = SessionContext::new_with_config(config);
        ctx.register_catalog(CATALOG, catalog.clone());
        Ok(Self { ctx, catalog })
    }

    /// Makes `namespace.name` read `table` in this session, in front of a stored table of
    /// that name (pipelines hand a model's fresh output to the models that read it).
    pub fn shadow(
        &self,
        namespace: &str,
        name: &str,
        table: Arc<dyn datafusion::catalog::TableProvider>,
    ) -> Result<()> {
        if self.catalog.shadow(namespace, name, table) {
            Ok(())
        } else {
            Err(Error::not_found(format!(
                "namespace `{namespace}` does not exist"
            )))
        }
    }

    pub fn context(&self) -> &SessionContext {
        &self.ctx
    }

    /// Runs a script of `;`-separated statements; returns the last statement's rows.
    /// Views created by the script live only in this session.
    pub async fn run(&self, sql: &str) -> Result<QueryResult> {
        let started = Instant::now();
        let statements = DFParser::parse_sql(sql).map_err(|e| sql_error(e, &self.catalog))?;
        if statements.is_empty() {
            return Err(Error::invalid("the query is empty")
                .with_hint("write a statement, e.g. `SELECT 1`"));
        }
        // The rows of the last query; DDL (CREATE/DROP VIEW, SET) only if nothing else ran.
        let mut last = None;
        let mut last_query = None;
        let mut scanned = 0;
        for statement in statements {
            if is_write(&statement) {
                return Err(read_only_error());
            }
            let state = self.ctx.state();
            let plan = state
                .statement_to_plan(statement)
                .await
                .map_err(|e| sql_error(e, &self.catalog))?;
            let is_query = !matches!(plan, LogicalPlan::Ddl(_) | LogicalPlan::Statement(_));
            let frame = self
                .ctx
                .execute_logical_plan(plan)
                .await
                .map_err(|e| sql_error(e, &self.catalog))?;
            let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
            let physical = frame
                .create_physical_plan()
                .await
                .map_err(|e| sql_error(e, &self.catalog))?;
            let batches = datafusion::physical_plan::collect(physical.clone(), self.ctx.task_ctx())
                .await
                .map_err(|e| sql_error(e, &self.catalog))?;
            scanned += bytes_scanned(&physical);
            if is_query {
                last_query = Some((schema, batches));
            } else {
                last = Some((schema, batches));
            }
        }
        let (schema, batches) = last_query.or(last).expect("at least one statement");
        Ok(QueryResult {
            schema,
            batches,
            seconds: started.elapsed().as_secs_f64(),
            bytes_scanned: scanned,
        })
    }
}

impl Session {
    /// Streams the rows of one read-only query without collecting them (a function's input).
    pub async fn stream(&self, sql: &str) -> Result<(SchemaRef, RecordBatchStream)> {
        let frame = self
            .ctx
            .sql_with_options(sql, read_only())
            .await
            .map_err(|e| sql_error(e, &self.catalog))?;
        let running = self.execute(frame.logical_plan().clone()).await?;
        Ok((running.schema, running.batches))
    }

    /// Plans one parsed statement (a front door that parses SQL its own way, like the
    /// Postgres endpoint). Only reads are planned: DDL, DML and `SET` are refused.
    pub async fn plan(
        &self,
        statement: datafusion::sql::sqlparser::ast::Statement,
    ) -> Result<LogicalPlan> {
        let statement = Statement::Statement(Box::new(statement));
        if is_write(&statement) {
            return Err(read_only_error());
        }
        let plan = self
            .ctx
            .state()
            .statement_to_plan(statement)
            .await
            .map_err(|e| sql_error(e, &self.catalog))?;
        read_only()
            .verify_plan(&plan)
            .map_err(|_| read_only_error())?;
        Ok(plan)
    }

    /// Runs a planned query; its batches stream as they are computed.
    pub async fn execute(&self, plan: LogicalPlan) -> Result<Running> {
        let physical = self
            .ctx
            .execute_logical_plan(plan)
            .await
            .map_err(|e| sql_error(e, &self.catalog))?
            .create_physical_plan()
            .await
            .map_err(|e| sql_error(e, &self.catalog))?;
        let stream =
            datafusion::physical_plan::execute_stream(physical.clone(), self.ctx.task_ctx())
                .map_err(|e| sql_error(e, &self.catalog))?;
        let schema = stream.schema();
        let catalog = self.catalog.clone();
        Ok(Running {
            schema,
            batches: stream
                .map(move |batch| batch.map_err(|e| sql_error(e, &catalog)))
                .boxed(),
            plan: physical,
        })
    }
}

fn read_only() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

fn read_only_error() -> Error {
    Error::invalid("SQL writes are not supported: Basin's SQL is read-only")
        .with_hint("change data with `basin import`, a pipeline (`basin run`) or an Iceberg engine through the REST catalog")
}

/// A query being executed: its batches as they are computed, and its physical plan, whose
/// metrics say what it read once the batches are consumed.
pub struct Running {
    pub schema: SchemaRef,
    pub batches: RecordBatchStream,
    pub plan: Arc<dyn ExecutionPlan>,
}

/// Bytes a physical plan's scans read from storage, from DataFusion's Parquet scan metrics.
/// Scans through iceberg-datafusion (tables with delete files, or in object storage) record
/// no such metric and count 0.
pub fn bytes_scanned(plan: &Arc<dyn ExecutionPlan>) -> u64 {
    let own = plan
        .metrics()
        .and_then(|m| m.sum_by_name("bytes_scanned"))
        .map_or(0, |v| v.as_usize() as u64);
    own + plan.children().into_iter().map(bytes_scanned).sum::<u64>()
}

/// Batches of a query, as they are computed.
pub type RecordBatchStream = futures::stream::BoxStream<'static, Result<RecordBatch>>;

fn is_write(statement: &Statement) -> bool {
    use datafusion::sql::sqlparser::ast::Statement as S;
    match statement {
        Statement::Statement(s) => {
            matches!(
                s.as_ref(),
                S::Insert(_)
                    | S::Update { .. }
                    | S::Delete(_)
                    | S::Merge { .. }
                    | S::Truncate { .. }
                    | S::AlterTable { .. }
            ) || matches!(
                s.as_ref(),
                S::CreateTable(_)
                    | S::Drop {
                        object_type: datafusion::sql::sqlparser::ast::ObjectType::Table,
                        ..
                    }
            )
        }
        Statement::CopyTo(_) => true,
        _ => false,
    }
}

/// DataFusion's error as a Basin error: user mistakes (unknown table or column, bad SQL) are
/// invalid input with a hint; execution failures keep their cause.
fn sql_error(e: DataFusionError, catalog: &RefCatalog) -> Error {
    let root = e.find_root();
    let message = root
        .to_string()
        .trim_start_matches("Error during planning: ")
        .to_string();
    let lower = message.to_ascii_lowercase();
    let kind = match root {
        DataFusionError::External(inner) => match inner.downcast_ref::<Error>() {
            Some(basin) => basin.kind(),
            None => ErrorKind::Io,
        },
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_) => ErrorKind::Io,
        DataFusionError::Internal(_) => ErrorKind::Internal,
        _ if lower.contains("not found") || lower.contains("no field named") => ErrorKind::NotFound,
        _ => ErrorKind::InvalidInput,
    };
    let missing_table = message
        .split("table '")
        .nth(1)
        .and_then(|s| s.split('\'').next());
    if let Some(missing) = missing_table.filter(|_| kind == ErrorKind::NotFound) {
        let name = missing
            .trim_start_matches(&format!("{CATALOG}."))
            .to_string();
        let tables = catalog.table_names();
        let hint = match suggest(&name, tables.iter().map(String::as_str)) {
            Some(s) => format!("did you mean `{s}`?"),
            None if tables.is_empty() => {
                "this ref has no tables yet; import one with `basin import`".to_string()
            }
            None => format!("tables: {}", tables.join(", ")),
        };
        return Error::not_found(format!("table `{name}` does not exist")).with_hint(hint);
    }
    if let DataFusionError::SchemaError(inner, _) = root
        && let SchemaError::FieldNotFound {
            field,
            valid_fields,
        } = inner.as_ref()
    {
        let column = field.name();
        let mut valid: Vec<&str> = valid_fields.iter().map(|c| c.name()).collect();
        valid.dedup();
        let hint = match suggest(column, valid.iter().copied()) {
            Some(s) => format!("did you mean `{s}`?"),
            None if valid.is_empty() => "the query reads no table: add FROM NAMESPACE.TABLE, \
                                         or quote a string with '...'"
                .to_string(),
            None => format!("columns: {}", valid.join(", ")),
        };
        return Error::not_found(format!("column `{}` does not exist", field.flat_name()))
            .with_hint(hint);
    }
    Error::new(kind, message)
}
