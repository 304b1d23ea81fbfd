//! `table_changes('ns.table', FROM [, TO])`: the rows a table gained and lost between two
//! points of its history, on every SQL door. Each side is a branch, a tag, a commit
//! (`main@1a2b3c`) or one of the table's snapshot ids (`0`: before its first one); `TO` is
//! the session's ref when left out. Each row comes with `_change` (`insert`, `delete`; `update_before`, `update_after`
//! when the table declares a key), `_commit` (the Basin commit on `TO`'s history that brought
//! the change) and `_snapshot_id`.
//!
//! DataFusion asks for a table function's table while it plans, synchronously; reading the
//! sides (the catalog, table metadata, manifests) is I/O. So the session resolves every
//! `table_changes` call of a statement before planning it ([`Feeds::prepare`]), and the
//! function hands out what was resolved. Which files changed is read then; the rows are
//! compared when the query runs (`rows`).

mod rows;

use std::any::Any;
use std::collections::HashMap;
use std::ops::ControlFlow;
use std::sync::{Arc, Mutex};

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use basin_catalog::actor::{self, Actor};
use basin_catalog::{Content, Key, Operation, Resolved};
use basin_core::{Error, Result};
use basin_table::Tables;
use basin_table::feed::{FileChanges, Side, file_changes};
use datafusion::catalog::{Session as DfSession, TableFunctionImpl, TableProvider};
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result as DfResult};
use datafusion::execution::TaskContext;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, Partitioning};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchReceiverStream;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SendableRecordBatchStream,
};
use datafusion::sql::parser::{CopyToSource, Statement};
use datafusion::sql::sqlparser::ast::{
    self as ast, FunctionArg, FunctionArgExpr, TableFactor, Visit, Visitor,
};
use iceberg::table::Table;

use rows::Sides;
pub use rows::conform;

/// The function's name in SQL.
pub(crate) const FUNCTION: &str = "table_changes";

/// The snapshot id that stands for a table before its first snapshot (no rows): a side
/// given as `0` holds nothing.
pub const BEFORE_THE_TABLE: i64 = 0;

/// How many commits of `TO`'s history are read to name the commit of each change; changes
/// made further back have no `_commit`.
const COMMITS_LOOKED_AT: usize = 1000;

/// The `table_changes` calls of one session, resolved before the statements that make them
/// are planned.
#[derive(Debug)]
pub(crate) struct Feeds {
    tables: Tables,
    /// The session's ref: `TO` when a call leaves it out.
    at: Resolved,
    /// Who opened the session: the sides are read with its grants (planning runs on a
    /// thread of its own, outside the door's scope).
    actor: Option<Actor>,
    resolved: Mutex<HashMap<Vec<String>, Arc<ChangesTable>>>,
}

impl Feeds {
    pub(crate) fn new(tables: Tables, at: Resolved) -> Self {
        Self {
            tables,
            at,
            actor: actor::current(),
            resolved: Mutex::default(),
        }
    }

    /// Resolves `calls` (each one's arguments, from [`calls`]); unqualified tables are in
    /// `namespace`.
    pub(crate) async fn prepare(&self, calls: Vec<Vec<String>>, namespace: &str) -> Result<()> {
        // Resolved again for every statement: a ref named in a call may have moved since the
        // session's last statement (a Postgres connection lives long).
        for args in calls {
            let table = actor::carried(self.actor.clone(), self.resolve(&args, namespace)).await?;
            self.resolved
                .lock()
                .expect("feeds lock")
                .insert(args, Arc::new(table));
        }
        Ok(())
    }

    async fn resolve(&self, args: &[String], namespace: &str) -> Result<ChangesTable> {
        let (name, from, to) = match args {
            [name, from] => (name, from.as_str(), None),
            [name, from, to] => (name, from.as_str(), Some(to.as_str())),
            _ => return Err(usage(format!("{FUNCTION} takes 2 or 3 arguments"))),
        };
        let key = if name.contains('.') {
            Key::table(name)?
        } else {
            Key::table(&format!("{namespace}.{name}"))?
        };
        let catalog = self.tables.catalog();
        // `TO` as a ref (the session's when it is left out or a snapshot id).
        let to_ref = match to.filter(|s| snapshot_id(s).is_none()) {
            Some(spec) => catalog.resolve(spec).await?,
            None => self.at.clone(),
        };
        let to_table = self.tables.load_if_present(&to_ref, &key).await?;
        let after = match to.and_then(snapshot_id) {
            Some(BEFORE_THE_TABLE) => None,
            Some(id) => Some(at_snapshot(to_table.as_ref(), &key, id, &to_ref)?),
            None => to_table.map(|t| current(&t)),
        };
        let (before, from_ref) = match snapshot_id(from) {
            Some(BEFORE_THE_TABLE) => (None, None),
            Some(id) => {
                let table = after.as_ref().map(|(t, _)| t.clone());
                (Some(at_snapshot(table.as_ref(), &key, id, &to_ref)?), None)
            }
            None => {
                let from_ref = catalog.resolve(from).await?;
                let table = self.tables.load_if_present(&from_ref, &key).await?;
                (table.map(|t| current(&t)), Some(from_ref))
            }
        };
        if before.is_none() && after.is_none() {
            return Err(Error::not_found(format!(
                "table `{key}` is on neither `{from}` nor `{}`",
                to.unwrap_or(&self.at.spec)
            ))
            .with_hint("see the tables of a ref with `basin table ls --ref REF`"));
        }
        let files = file_changes(
            before.as_ref().map(|(t, s)| Side {
                table: t,
                snapshot: *s,
            }),
            after.as_ref().map(|(t, s)| Side {
                table: t,
                snapshot: *s,
            }),
        )
        .await?;
        let commits = self
            .commits(&key, &to_ref, from_ref.as_ref(), &files)
            .await?;
        ChangesTable::new(
            before.map(|(t, _)| t),
            after.map(|(t, _)| t),
            files,
            commits,
        )
    }

    /// The Basin commit on `to`'s history (back to `from`, or [`COMMITS_LOOKED_AT`]
    /// commits) that brought each snapshot a change was made in: the commit whose table
    /// metadata first holds it.
    async fn commits(
        &self,
        key: &Key,
        to: &Resolved,
        from: Option<&Resolved>,
        files: &FileChanges,
    ) -> Result<HashMap<i64, String>> {
        let wanted: std::collections::HashSet<i64> = files
            .appeared_in
            .values()
            .chain(files.disappeared_in.values())
            .copied()
            .collect();
        let mut found = HashMap::new();
        if wanted.is_empty() {
            return Ok(found);
        }
        let log = self.tables.catalog().log(to, COMMITS_LOOKED_AT).await?;
        // Newest first: a snapshot belongs to the oldest commit whose metadata holds it.
        for commit in &log {
            if from.is_some_and(|f| f.commit == commit.id) {
                break;
            }
            let location = commit.operations.iter().find_map(|op| match op {
                Operation::Put {
                    key: k,
                    content: Content::Table { metadata_location },
                } if k == key => Some(metadata_location),
                _ => None,
            });
            let Some(location) = location else { continue };
            let table = self.tables.load_from(key, location).await?;
            for snapshot in table.metadata().snapshots() {
                let id = snapshot.snapshot_id();
                if wanted.contains(&id) {
                    found.insert(id, commit.id.to_string());
                }
            }
        }
        Ok(found)
    }

    fn get(&self, args: &[String]) -> Option<Arc<ChangesTable>> {
        self.resolved.lock().expect("feeds lock").get(args).cloned()
    }
}

fn usage(message: String) -> Error {
    Error::invalid(message).with_hint(format!(
        "write {FUNCTION}('ns.table', 'FROM' [, 'TO']), each side a branch, tag, commit \
         (`main@1a2b3c`) or snapshot id, e.g. SELECT * FROM {FUNCTION}('sales.orders', 'v1', 'main')"
    ))
}

fn snapshot_id(spec: &str) -> Option<i64> {
    spec.parse().ok()
}

fn current(table: &Table) -> (Table, Option<i64>) {
    (table.clone(), table.metadata().current_snapshot_id())
}

/// `table` at its snapshot `id`, which must be in its history.
fn at_snapshot(
    table: Option<&Table>,
    key: &Key,
    id: i64,
    at: &Resolved,
) -> Result<(Table, Option<i64>)> {
    match table {
        Some(t) if t.metadata().snapshot_by_id(id).is_some() => Ok((t.clone(), Some(id))),
        _ => Err(Error::not_found(format!(
            "snapshot {id} is not in the history of `{key}` on `{}`",
            at.spec
        ))
        .with_hint(format!("see its snapshots with `basin table show {key}`"))),
    }
}

/// The arguments of every `table_changes` call in `statement`, as text.
pub(crate) fn calls(statement: &Statement) -> Vec<Vec<String>> {
    let mut found = Calls::default();
    match statement {
        Statement::Statement(s) => {
            let _ = s.visit(&mut found);
        }
        Statement::Explain(e) => return calls(&e.statement),
        Statement::CopyTo(c) => {
            if let CopyToSource::Query(q) = &c.source {
                let _ = q.visit(&mut found);
            }
        }
        _ => {}
    }
    found.0
}

#[derive(Default)]
struct Calls(Vec<Vec<String>>);

impl Visitor for Calls {
    type Break = ();

    fn pre_visit_table_factor(&mut self, factor: &TableFactor) -> ControlFlow<()> {
        if let TableFactor::Table {
            name,
            args: Some(args),
            ..
        } = factor
            && name.to_string().eq_ignore_ascii_case(FUNCTION)
        {
            self.0.push(args.args.iter().map(argument).collect());
        }
        ControlFlow::Continue(())
    }
}

/// An argument as text: what [`TableChangesFunction::call`] sees of the same literal.
fn argument(arg: &FunctionArg) -> String {
    match arg {
        FunctionArg::Unnamed(FunctionArgExpr::Expr(ast::Expr::Value(v))) => match &v.value {
            ast::Value::SingleQuotedString(s) | ast::Value::DoubleQuotedString(s) => s.clone(),
            ast::Value::Number(n, _) => n.clone(),
            other => other.to_string(),
        },
        other => other.to_string(),
    }
}

/// The SQL function; hands out the tables [`Feeds::prepare`] resolved.
#[derive(Debug)]
pub(crate) struct TableChangesFunction(pub(crate) Arc<Feeds>);

impl TableFunctionImpl for TableChangesFunction {
    fn call(&self, args: &[Expr]) -> DfResult<Arc<dyn TableProvider>> {
        let args: Vec<String> = args
            .iter()
            .map(|arg| match arg {
                Expr::Literal(ScalarValue::Utf8(Some(s)) | ScalarValue::Utf8View(Some(s)), _) => {
                    Ok(s.clone())
                }
                Expr::Literal(ScalarValue::Int64(Some(n)), _) => Ok(n.to_string()),
                other => Err(DataFusionError::Plan(format!(
                    "{FUNCTION} takes literal arguments, not `{other}`: write \
                     {FUNCTION}('ns.table', 'FROM' [, 'TO'])"
                ))),
            })
            .collect::<DfResult<_>>()?;
        match self.0.get(&args) {
            Some(table) => Ok(table),
            None => Err(DataFusionError::Plan(format!(
                "{FUNCTION}({}) was not resolved before planning",
                args.join(", ")
            ))),
        }
    }
}

/// What one call reads: the changed files of both sides, compared when scanned.
#[derive(Debug)]
pub(crate) struct ChangesTable {
    sides: Arc<Sides>,
}

impl ChangesTable {
    fn new(
        before: Option<Table>,
        after: Option<Table>,
        files: FileChanges,
        commits: HashMap<i64, String>,
    ) -> Result<Self> {
        let shape = after
            .as_ref()
            .or(before.as_ref())
            .expect("one side holds the table");
        let schema = shape.metadata().current_schema();
        let arrow = iceberg::arrow::schema_to_arrow_schema(schema).map_err(|e| {
            Error::internal(format!("cannot describe `{}` in Arrow", shape.identifier()))
                .with_source(e)
        })?;
        let data: SchemaRef = Arc::new(Schema::new(
            arrow
                .fields()
                .iter()
                .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                .collect::<Vec<_>>(),
        ));
        let key = schema
            .identifier_field_ids()
            .filter_map(|id| schema.name_by_field_id(id))
            .filter_map(|name| data.index_of(name).ok())
            .collect();
        let mut fields: Vec<Field> = data.fields().iter().map(|f| f.as_ref().clone()).collect();
        fields.push(Field::new("_change", DataType::Utf8, false));
        fields.push(Field::new("_commit", DataType::Utf8, true));
        fields.push(Field::new("_snapshot_id", DataType::Int64, true));
        Ok(Self {
            sides: Arc::new(Sides {
                before,
                after,
                files,
                commits,
                data,
                key,
                schema: Arc::new(Schema::new(fields)),
            }),
        })
    }
}

#[async_trait]
impl TableProvider for ChangesTable {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn schema(&self) -> SchemaRef {
        self.sides.schema.clone()
    }

    fn table_type(&self) -> TableType {
        TableType::Temporary
    }

    async fn scan(
        &self,
        _state: &dyn DfSession,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        _limit: Option<usize>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        let exec: Arc<dyn ExecutionPlan> = Arc::new(ChangesExec::new(self.sides.clone()));
        match projection {
            None => Ok(exec),
            Some(columns) => {
                let exprs = columns
                    .iter()
                    .map(|&i| {
                        let field = self.sides.schema.field(i);
                        let column = datafusion::physical_expr::expressions::col(
                            field.name(),
                            &self.sides.schema,
                        )?;
                        Ok((column, field.name().clone()))
                    })
                    .collect::<DfResult<Vec<_>>>()?;
                Ok(Arc::new(ProjectionExec::try_new(exprs, exec)?))
            }
        }
    }
}

/// Computes the changed rows when run: one partition.
#[derive(Debug)]
struct ChangesExec {
    sides: Arc<Sides>,
    properties: Arc<PlanProperties>,
}

impl ChangesExec {
    fn new(sides: Arc<Sides>) -> Self {
        let properties = Arc::new(PlanProperties::new(
            EquivalenceProperties::new(sides.schema.clone()),
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        ));
        Self { sides, properties }
    }
}

impl DisplayAs for ChangesExec {
    fn fmt_as(&self, _: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "TableChangesExec: files removed={}, added={}",
            self.sides.files.removed.len(),
            self.sides.files.added.len()
        )
    }
}

impl ExecutionPlan for ChangesExec {
    fn name(&self) -> &str {
        "TableChangesExec"
    }

    fn as_any(&self) -> &dyn Any {
        self
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        Vec::new()
    }

    fn with_new_children(
        self: Arc<Self>,
        _: Vec<Arc<dyn ExecutionPlan>>,
    ) -> DfResult<Arc<dyn ExecutionPlan>> {
        Ok(self)
    }

    fn execute(
        &self,
        _partition: usize,
        context: Arc<TaskContext>,
    ) -> DfResult<SendableRecordBatchStream> {
        let mut builder = RecordBatchReceiverStream::builder(self.sides.schema.clone(), 2);
        let tx = builder.tx();
        let sides = self.sides.clone();
        let pool = context.memory_pool().clone();
        builder.spawn(async move { rows::send(sides, pool, tx).await });
        Ok(builder.build())
    }
}
