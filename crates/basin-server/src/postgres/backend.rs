//! What every Postgres connection shares ([`Backend`]): the lakehouse, the parser and
//! hooks, cancel keys; and what one connection keeps, its session over the ref's head
//! ([`Cached`]), with the steps every statement takes: parse, session, run.

use std::sync::Arc;

use basin_catalog::CommitId;
use basin_service::Lakehouse;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use futures::{StreamExt, stream};
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::portal::Format;
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{QueryResponse, Response};
use pgwire::api::{
    ClientInfo, ConnectionManager, METADATA_USER, PgWireServerHandlers, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::types::format::FormatOptions;

use super::errors::{basin_error, pg_error};
use super::settings::{DEFAULT_SEARCH_PATH, SEARCH_PATH, WHO, connection_ref, statement_timeout};
use super::{catalog, functions};
use crate::meter::Meter;
use crate::metrics::Metrics;
use crate::turns::{Turn, Turns};

/// What every connection shares.
pub(super) struct Backend {
    pub(super) lakehouse: Lakehouse,
    pub(super) metrics: Arc<Metrics>,
    /// Connections need no password (loopback only).
    pub(super) open: bool,
    pub(super) parser: PostgresCompatibilityParser,
    /// `SET`/`SHOW` of session variables and `BEGIN`/`COMMIT`, answered without the lakehouse.
    pub(super) hooks: Vec<Arc<dyn QueryHook>>,
    pub(super) hook_context: SessionContext,
    pub(super) parameters: DefaultServerParameterProvider,
    /// Each connection's cancel key, and the connections a cancel request can reach.
    pub(super) cancel_keys: RandomPidSecretKeyGenerator,
    pub(super) cancels: Arc<ConnectionManager>,
    /// Each reader's turns among the statements it runs at once (shared with HTTP).
    pub(super) turns: Turns,
    /// Refused logins the audit log records one by one (shared with HTTP).
    pub(super) refusals: Arc<crate::refusals::Refusals>,
}

/// A connection's session over one commit, reused while the ref's head stays there.
pub(super) struct Cached {
    pub(super) spec: String,
    pub(super) commit: CommitId,
    pub(super) session: Arc<basin_sql::Session>,
    /// The `search_path` the session follows now (set again only when the connection's
    /// changes).
    pub(super) search_path: std::sync::Mutex<Option<String>>,
}

#[derive(Clone)]
pub(crate) struct Handlers(pub(super) Arc<Backend>);

impl Handlers {
    pub(super) fn new(
        lakehouse: Lakehouse,
        metrics: Arc<Metrics>,
        shared: crate::state::Shared,
        open: bool,
    ) -> Self {
        let mut parameters = DefaultServerParameterProvider::default();
        parameters.default_transaction_read_only = true;
        parameters.server_version = format!("16.0 (Basin {})", env!("CARGO_PKG_VERSION"));
        Handlers(Arc::new(Backend {
            lakehouse,
            metrics,
            open,
            parser: PostgresCompatibilityParser::new(),
            hooks: vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)],
            hook_context: SessionContext::new(),
            parameters,
            cancel_keys: RandomPidSecretKeyGenerator::default(),
            cancels: Arc::new(ConnectionManager::new()),
            turns: shared.turns,
            refusals: shared.refusals,
        }))
    }
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::new(self.clone())
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::new(self.clone())
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::new(self.clone())
    }
}

/// Points the session's unqualified names (and `current_schema()`) at the first namespace of
/// the connection's `search_path` that exists.
fn follow_search_path<C: ClientInfo + ?Sized>(cached: &Cached, client: &C) {
    let path = client
        .metadata()
        .get(SEARCH_PATH)
        .cloned()
        .unwrap_or_else(|| DEFAULT_SEARCH_PATH.to_string());
    let mut applied = cached.search_path.lock().expect("search path lock");
    if applied.as_ref() == Some(&path) {
        return;
    }
    let session = &cached.session;
    let picked = session.search_path(&search_path(client));
    session
        .context()
        .register_udf(functions::constant_text("current_schema", &picked));
    session
        .context()
        .register_udf(functions::current_setting(&path));
    *applied = Some(path);
}

/// The namespaces of a connection's `search_path`, in order (`"$user"` left out).
fn search_path<C: ClientInfo + ?Sized>(client: &C) -> Vec<String> {
    client
        .metadata()
        .get(SEARCH_PATH)
        .map(|path| {
            path.split(',')
                .map(|n| n.trim().trim_matches('"').to_string())
                .filter(|n| !n.is_empty() && n != "$user")
                .collect()
        })
        .unwrap_or_default()
}

impl Backend {
    /// A session over the ref's current head; the connection's cached one if the head has
    /// not moved.
    pub(super) async fn session<C: ClientInfo + ?Sized>(
        &self,
        client: &C,
    ) -> PgWireResult<Arc<basin_sql::Session>> {
        let spec = connection_ref(client);
        let at = self
            .lakehouse
            .resolve(Some(&spec))
            .await
            .map_err(basin_error)?;
        if let Some(cached) = client.session_extensions().get::<Cached>()
            && cached.spec == spec
            && cached.commit == at.commit
        {
            follow_search_path(&cached, client);
            return Ok(cached.session.clone());
        }
        let session = basin_sql::Session::new(
            self.lakehouse.sql(),
            self.lakehouse.iceberg_tables(),
            &at,
            None,
        )
        .await
        .map_err(basin_error)?
        .with_namespace_option(basin_sql::NamespaceOption::SearchPath)
        .with_kept_columns(true);
        setup_pg_catalog(session.context(), basin_sql::CATALOG, EmptyContextProvider)
            .map_err(|e| pg_error("XX000", format!("cannot set up pg_catalog: {e}")))?;
        catalog::install(session.context(), self.lakehouse.clone())
            .map_err(|e| pg_error("XX000", format!("cannot set up pg_catalog: {e}")))?;
        functions::install(session.context());

        // What BI tools ask first: the database is the ref, the user the token's name (the
        // catalog's own answers would be "datafusion" and "postgres").
        let who = client
            .metadata()
            .get(WHO)
            .or_else(|| client.metadata().get(METADATA_USER))
            .cloned()
            .unwrap_or_else(|| "basin".to_string());
        session
            .context()
            .register_udf(functions::constant_text("current_database", &spec));
        session
            .context()
            .register_udf(functions::constant_text("session_user", &who));
        let cached = Cached {
            spec,
            commit: at.commit,
            session: Arc::new(session),
            search_path: std::sync::Mutex::new(None),
        };
        follow_search_path(&cached, client);
        let session = cached.session.clone();
        client.session_extensions().insert(cached);
        Ok(session)
    }

    /// Parses a statement's text: bounded first by `[sql]`'s statement bounds (the Postgres
    /// dialect's parser takes time exponential in how deeply calls nest), then parsed on a
    /// planning thread, never on a worker of the runtime.
    /// The statement's time limit covers the parse (and the wait for a planning thread).
    pub(super) async fn parse<C: ClientInfo + ?Sized>(
        self: &Arc<Self>,
        client: &C,
        sql: &str,
    ) -> PgWireResult<Vec<Statement>> {
        let engine = self.lakehouse.sql();
        let started = tokio::time::Instant::now();
        engine.check_size(sql).map_err(basin_error)?;
        let deadline =
            statement_timeout(client, engine.limits().query_timeout).map(|t| (started + t, t));
        let (backend, text) = (self.clone(), sql.to_string());
        engine
            .within(
                deadline,
                engine.on_planner(async move {
                    let engine = backend.lakehouse.sql();
                    let shape = engine.guard(&text, basin_sql::Dialect::Postgres)?;
                    // Within the parse budget first: the compatibility parser has none.
                    engine.check_postgres_parse(&text, &shape)?;
                    Ok(backend.parse_here(&text))
                }),
            )
            .await
            .map_err(basin_error)?
    }

    fn parse_here(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        let mut statements = self.parser.parse(sql).map_err(|e| {
            // The compatibility parser parses tokens without their places: parsing the text
            // again (only on this error path) gives the line and column.
            let placed = datafusion::sql::sqlparser::parser::Parser::parse_sql(
                &datafusion::sql::sqlparser::dialect::PostgreSqlDialect {},
                sql,
            )
            .err();
            let syntax = basin_sql::SyntaxError::new(placed.as_ref().unwrap_or(&e), Some(sql));
            let mut info = ErrorInfo::new("ERROR".into(), "42601".into(), syntax.message.clone());
            info.hint = syntax.hint.clone();
            info.position = syntax.offset(sql).map(|p| p.to_string());
            PgWireError::UserError(Box::new(info))
        })?;
        statements
            .iter_mut()
            .for_each(functions::drop_comment_lookups);
        Ok(statements)
    }

    /// A turn of the connection's reader for a statement (`crate::turns`), waited for at most
    /// until its `deadline`.
    pub(super) async fn turn(
        &self,
        deadline: Option<basin_sql::Deadline>,
    ) -> PgWireResult<Arc<Turn>> {
        self.turns.take(deadline).await.map_err(basin_error)
    }

    /// Runs a planned query, holding `turn` until its rows are sent, and streams its rows
    /// within `deadline`; the query is metered when the stream ends.
    pub(super) async fn run(
        &self,
        session: &basin_sql::Session,
        plan: LogicalPlan,
        format: &Format,
        options: Arc<FormatOptions>,
        (deadline, turn): (Option<basin_sql::Deadline>, Arc<Turn>),
    ) -> PgWireResult<Response> {
        let meter = Arc::new(Meter::new(
            "postgres",
            self.lakehouse.clone(),
            self.metrics.clone(),
        ));
        meter.hold(turn);
        let running = match session.execute(plan, deadline).await {
            Ok(running) => running,
            Err(e) => {
                meter.failed(&e);
                return Err(basin_error(e));
            }
        };
        meter.plan(running.plan.clone());
        let fields = Arc::new(arrow_schema_to_pg_fields(
            &running.schema,
            format,
            Some(options),
        )?);
        let encode_fields = fields.clone();
        let end = {
            let meter = meter.clone();
            stream::iter(std::iter::from_fn(move || {
                meter.ended();
                None
            }))
        };
        let rows = running.batches.flat_map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send> = match batch {
                Ok(batch) => {
                    meter.rows(batch.num_rows());
                    encode_recordbatch(encode_fields.clone(), batch)
                }
                Err(e) => {
                    meter.failed(&e);
                    Box::new(std::iter::once(Err(basin_error(e))))
                }
            };
            stream::iter(rows)
        });
        Ok(Response::Query(QueryResponse::new(fields, rows.chain(end))))
    }
}
