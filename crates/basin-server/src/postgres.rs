//! The Postgres wire protocol (`basin serve --pg-listen`), read-only, so `psql`, `psycopg`
//! and BI tools query the lakehouse.
//!
//! pgwire speaks the protocol, arrow-pg encodes Arrow batches as rows and
//! datafusion-pg-catalog answers the `pg_catalog` queries clients send (`\dt`).
//! datafusion-postgres' own server serves one fixed DataFusion session; Basin needs a session
//! per ref that follows the branch head, a token as password and metering, so the handlers
//! here are Basin's own, over those pieces.
//!
//! A connection reads one ref: the database name (`psql -d dev`; the default database, or
//! one named like the user, means `main`), changed with `SET basin.ref = 'dev'`. Each
//! statement sees the ref's current head.

use std::fmt::Debug;
use std::net::SocketAddr;
use std::sync::Arc;

use async_trait::async_trait;
use basin_catalog::CommitId;
use basin_core::{Error, ErrorKind};
use basin_service::Lakehouse;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{
    arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type,
};
use datafusion_postgres::datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_postgres::datafusion_pg_catalog::setup_pg_catalog;
use datafusion_postgres::datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_postgres::hooks::QueryHook;
use datafusion_postgres::hooks::set_show::SetShowHook;
use datafusion_postgres::hooks::transactions::TransactionStatementHook;
use datafusion_postgres::pgwire;
use futures::{Sink, StreamExt, stream};
use pgwire::api::auth::{DefaultServerParameterProvider, StartupHandler};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionManager, METADATA_USER, PgWireServerHandlers,
    RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;
use tracing::Instrument;

use crate::metrics::Metrics;
use crate::query::Meter;
use settings::{connection_ref, is_connection_statement, is_show, statement_timeout, text_field};

mod catalog;
mod connection;
mod functions;
mod login;
mod settings;

/// The connection setting that picks the ref.
const REF: &str = "basin.ref";
/// Connection metadata: who connected, as `current_user` answers (the token's name).
const WHO: &str = "basin.who";
/// The id of the token the connection logged in with, looked up again as it goes on
/// (`connection::TOKEN_CHECK`): revoking the token ends the connection.
const TOKEN_ID: &str = "basin.token_id";
/// The connection's `search_path`: where unqualified table names are looked up.
const SEARCH_PATH: &str = "search_path";
/// Postgres' default `search_path`.
const DEFAULT_SEARCH_PATH: &str = "\"$user\", public";

/// A statement as parsed for the extended protocol: the SQL and, unless empty, the parsed
/// statement with its plan at parse time (for Describe). The shape datafusion-postgres'
/// hooks expect.
type Parsed = (String, Option<(Statement, LogicalPlan)>);

/// What every connection shares.
struct Backend {
    lakehouse: Lakehouse,
    metrics: Arc<Metrics>,
    /// Connections need no password (loopback only).
    open: bool,
    parser: PostgresCompatibilityParser,
    /// `SET`/`SHOW` of session variables and `BEGIN`/`COMMIT`, answered without the lakehouse.
    hooks: Vec<Arc<dyn QueryHook>>,
    hook_context: SessionContext,
    parameters: DefaultServerParameterProvider,
    /// Each connection's cancel key, and the connections a cancel request can reach.
    cancel_keys: RandomPidSecretKeyGenerator,
    cancels: Arc<ConnectionManager>,
}

/// A connection's session over one commit, reused while the ref's head stays there.
struct Cached {
    spec: String,
    commit: CommitId,
    session: Arc<basin_sql::Session>,
    /// The `search_path` the session follows now (set again only when the connection's
    /// changes).
    search_path: std::sync::Mutex<Option<String>>,
}

#[derive(Clone)]
pub(crate) struct Handlers(Arc<Backend>);

/// Serves the Postgres protocol on `listener` until `shutdown` resolves.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    lakehouse: Lakehouse,
    metrics: Arc<Metrics>,
    open: bool,
    tls: Option<pgwire::tokio::TlsAcceptor>,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let mut parameters = DefaultServerParameterProvider::default();
    parameters.default_transaction_read_only = true;
    parameters.server_version = format!("16.0 (Basin {})", env!("CARGO_PKG_VERSION"));
    let handlers = Handlers(Arc::new(Backend {
        lakehouse,
        metrics,
        open,
        parser: PostgresCompatibilityParser::new(),
        hooks: vec![Arc::new(SetShowHook), Arc::new(TransactionStatementHook)],
        hook_context: SessionContext::new(),
        parameters,
        cancel_keys: RandomPidSecretKeyGenerator::default(),
        cancels: Arc::new(ConnectionManager::new()),
    }));
    tokio::pin!(shutdown);
    let server = &handlers.0.lakehouse.settings().server;
    let limits = connection::Limits {
        login_timeout: server.handshake_timeout,
        max_message_size: server.pg_max_message_size,
        idle_timeout: server.pg_idle_timeout,
        max_prepared: server.pg_max_prepared,
        max_prepared_size: server.pg_max_prepared_size,
    };
    // As over HTTP: a slot is taken once a client has logged in (`crate::slots`).
    let slots = crate::slots::Slots::new(
        server.max_connections,
        server.reserved_connections,
        server.max_connections_per_client,
        handlers.0.metrics.limit_counter(),
        "pg_",
    );
    loop {
        let (socket, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    tracing::warn!("postgres: cannot accept a connection: {e}");
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let Some(mut admitted) = slots.admit(peer.ip()) else {
            continue; // its client holds its share: closed
        };
        let handlers = handlers.clone();
        let metrics = handlers.0.metrics.clone();
        let tls = tls.clone();
        let span = tracing::info_span!("postgres", %peer);
        tokio::spawn(
            async move {
                // Its turn among the pending; the login time counts from here.
                if tokio::time::timeout(limits.login_timeout, admitted.pending())
                    .await
                    .is_err()
                {
                    metrics.limit_hit("pg_login_timeout");
                    return;
                }
                metrics.pg_connection(1);
                if let Err(e) =
                    connection::serve(socket, handlers, limits, tls, metrics.clone(), admitted)
                        .await
                {
                    tracing::debug!("connection ended: {e}");
                }
                metrics.pg_connection(-1);
            }
            .instrument(span),
        );
    }
}

/// Binds the Postgres listener (before anything is served, so a taken port fails at once).
pub(crate) async fn bind(listen: SocketAddr) -> basin_core::Result<tokio::net::TcpListener> {
    tokio::net::TcpListener::bind(listen).await.map_err(|e| {
        Error::io(format!(
            "cannot listen for Postgres clients on {listen}: {e}"
        ))
        .with_hint("pick another port with --pg-listen")
    })
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

fn pg_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// A Basin error as a Postgres error: a SQLSTATE from its kind, and its hint.
fn basin_error(e: Error) -> PgWireError {
    PgWireError::UserError(Box::new(error_info(e, "ERROR")))
}

/// A Basin error as a Postgres error of `severity` (`ERROR`, or `FATAL` to end the
/// connection).
fn error_info(e: Error, severity: &str) -> ErrorInfo {
    let code = match e.kind() {
        ErrorKind::NotFound if e.message.starts_with("column") => "42703",
        ErrorKind::NotFound if e.message.starts_with("function") => "42883",
        ErrorKind::NotFound => "42P01",
        // The statement policy: a write, or anything reaching files (read_only_sql_transaction).
        ErrorKind::InvalidInput if e.message.contains("is not allowed") => "25006",
        ErrorKind::InvalidInput => "42601",
        ErrorKind::AlreadyExists | ErrorKind::Conflict => "40001",
        ErrorKind::Timeout => "57014",
        // A statement's bounds (`[sql] max_statement_size`, ...): program_limit_exceeded and
        // statement_too_complex, as Postgres answers; else a memory limit (out_of_memory).
        ErrorKind::Limit if e.message.contains("`[sql] max_statement_size`") => "54000",
        ErrorKind::Limit
            if ["max_expression_depth", "max_joins", "parse_steps_per_token"]
                .iter()
                .any(|s| e.message.contains(&format!("`[sql] {s}`"))) =>
        {
            "54001"
        }
        ErrorKind::Limit => "53200",
        _ => "XX000",
    };
    let (message, hint) = crate::api::for_caller(&e);
    let mut info = ErrorInfo::new(severity.into(), code.into(), message);
    info.hint = hint;
    info
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

fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::empty()),
    })
}

impl Backend {
    /// A session over the ref's current head; the connection's cached one if the head has
    /// not moved.
    async fn session<C: ClientInfo + ?Sized>(
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
        let session =
            basin_sql::Session::new(self.lakehouse.sql(), self.lakehouse.tables(), &at, None)
                .await
                .map_err(basin_error)?
                .with_namespace_option(basin_sql::NamespaceOption::SearchPath);
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
    async fn parse<C: ClientInfo + ?Sized>(
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

    /// Runs a planned query and streams its rows, within `timeout`; the query is metered
    /// when the stream ends.
    async fn run(
        &self,
        session: &basin_sql::Session,
        plan: LogicalPlan,
        format: &Format,
        options: Arc<FormatOptions>,
        deadline: Option<basin_sql::Deadline>,
    ) -> PgWireResult<Response> {
        let meter = Arc::new(Meter::new(
            "postgres",
            self.lakehouse.clone(),
            self.metrics.clone(),
        ));
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
        Ok(Response::Query(QueryResponse::new(fields, rows)))
    }
}

#[async_trait]
impl SimpleQueryHandler for Handlers {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let backend = &self.0;
        let mut responses = Vec::new();
        'statements: for statement in backend.parse(client, query).await? {
            if let Some(response) = backend.connection_statement(client, &statement).await {
                responses.push(response?);
                continue;
            }
            for hook in &backend.hooks {
                if let Some(response) = hook
                    .handle_simple_query(&statement, &backend.hook_context, client)
                    .await
                {
                    responses.push(response?);
                    continue 'statements;
                }
            }
            // The time limit counts from here, as Postgres' does: planning spends it too.
            let started = tokio::time::Instant::now();
            let session = backend.session(client).await?;
            let deadline =
                statement_timeout(client, session.default_timeout()).map(|t| (started + t, t));
            let plan = session
                .plan_within(statement, deadline)
                .await
                .map_err(basin_error)?;
            let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
            responses.push(
                backend
                    .run(&session, plan, &Format::UnifiedText, options, deadline)
                    .await?,
            );
        }
        if responses.is_empty() {
            responses.push(Response::EmptyQuery);
        }
        Ok(responses)
    }
}

/// Plans statements for the extended protocol (psycopg, JDBC, most drivers).
pub(crate) struct Planner(Arc<Backend>);

#[async_trait]
impl QueryParser for Planner {
    type Statement = Parsed;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Parsed>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let backend = &self.0;
        let mut statements = backend.parse(client, sql).await?;
        if statements.len() > 1 {
            return Err(pg_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok((sql.to_string(), None));
        };
        if is_connection_statement(&statement) {
            return Ok((sql.to_string(), Some((statement, empty_plan()))));
        }
        for hook in &backend.hooks {
            if let Some(plan) = hook
                .handle_extended_parse_query(&statement, &backend.hook_context, client)
                .await
            {
                return Ok((sql.to_string(), Some((statement, plan?))));
            }
        }
        let session = backend.session(client).await?;
        let plan = session.plan(statement.clone()).await.map_err(basin_error)?;
        Ok((sql.to_string(), Some((statement, plan))))
    }

    fn get_parameter_types(&self, statement: &Parsed) -> PgWireResult<Vec<Type>> {
        let Some((_, plan)) = &statement.1 else {
            return Ok(vec![]);
        };
        parameter_types(plan)?
            .iter()
            .map(|t| t.as_ref().map_or(Ok(Type::UNKNOWN), into_pg_type))
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &Parsed,
        format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &statement.1 {
            Some((s, _)) if is_show(s, REF) => Ok(vec![text_field(REF)]),
            Some((s, _)) if is_show(s, SEARCH_PATH) => Ok(vec![text_field(SEARCH_PATH)]),
            Some((_, plan)) => arrow_schema_to_pg_fields(
                plan.schema().as_arrow(),
                format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            None => Ok(vec![]),
        }
    }
}

/// A plan's parameter types in `$1, $2, ... $10` order (numeric, not by name).
fn parameter_types(
    plan: &LogicalPlan,
) -> PgWireResult<Vec<Option<datafusion::arrow::datatypes::DataType>>> {
    let mut types: Vec<_> = plan
        .get_parameter_types()
        .map_err(|e| pg_error("42P18", e.to_string()))?
        .into_iter()
        .collect();
    types.sort_by_key(|(name, _)| {
        name.trim_start_matches('$')
            .parse::<usize>()
            .unwrap_or(usize::MAX)
    });
    Ok(types.into_iter().map(|(_, t)| t).collect())
}

#[async_trait]
impl ExtendedQueryHandler for Handlers {
    type Statement = Parsed;
    type QueryParser = Planner;

    fn query_parser(&self) -> Arc<Planner> {
        Arc::new(Planner(self.0.clone()))
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Parsed>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Parsed>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let backend = &self.0;
        let (_, Some((statement, parsed))) = &portal.statement.statement else {
            return Ok(Response::EmptyQuery);
        };
        if let Some(response) = backend.connection_statement(client, statement).await {
            return response;
        }
        let types = parameter_types(parsed)?;
        // Values as the plan's types; where the client's type does not convert (a float
        // for a decimal column), as the client sent them, for DataFusion to coerce.
        let params = deserialize_parameters(
            portal,
            &types.iter().map(Option::as_ref).collect::<Vec<_>>(),
        )
        .or_else(|_| deserialize_parameters(portal, &vec![None; types.len()]))?;
        for hook in &backend.hooks {
            if let Some(response) = hook
                .handle_extended_query(statement, parsed, &params, &backend.hook_context, client)
                .await
            {
                return response;
            }
        }
        // Planned again on the ref's current head: a prepared statement reads fresh data.
        // The time limit counts from here, planning included.
        let started = tokio::time::Instant::now();
        let session = backend.session(client).await?;
        let deadline =
            statement_timeout(client, session.default_timeout()).map(|t| (started + t, t));
        let fresh = session
            .plan_within(statement.clone(), deadline)
            .await
            .map_err(basin_error)?;
        if fresh.schema().as_arrow().fields() != parsed.schema().as_arrow().fields() {
            return Err(pg_error(
                "0A000",
                "cached plan must not change result type (the table's schema changed)",
            ));
        }
        let plan = fresh
            .replace_params_with_values(&params)
            .map_err(|e| pg_error("22023", e.to_string()))?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        backend
            .run(
                &session,
                plan,
                &portal.result_column_format,
                options,
                deadline,
            )
            .await
    }
}
