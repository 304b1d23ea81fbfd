//! Statements through both of the protocol's flows: the simple one (`psql`) and the
//! extended one (psycopg, JDBC, most drivers: parse, bind, execute), and the statements about
//! the connection itself, answered without the lakehouse.

use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::common::DFSchema;
use datafusion::logical_expr::{EmptyRelation, LogicalPlan};
use datafusion::sql::sqlparser::ast::Statement;
use datafusion_postgres::arrow_pg::datatypes::df::deserialize_parameters;
use datafusion_postgres::arrow_pg::datatypes::{arrow_schema_to_pg_fields, into_pg_type};
use datafusion_postgres::pgwire;
use futures::Sink;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, Type};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::types::format::FormatOptions;

use super::backend::{Backend, Handlers};
use super::errors::{basin_error, pg_error};
use super::settings::{
    DEFAULT_SEARCH_PATH, REF, SEARCH_PATH, connection_ref, engine_setting, is_connection_statement,
    is_show, set_value, show_value, statement_timeout, text_field,
};

/// A statement as parsed for the extended protocol: the SQL and, unless empty, the parsed
/// statement with its plan at parse time (for Describe). The shape datafusion-postgres'
/// hooks expect.
pub(super) type Parsed = (String, Option<(Statement, LogicalPlan)>);

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
        // The message's statements share one turn: their plans all start before the first
        // answer is sent, so a turn each would have the reader wait for itself.
        let mut turn = None;
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
            let turn = match &turn {
                Some(turn) => Arc::clone(turn),
                None => turn.insert(backend.turn(deadline).await?).clone(),
            };
            responses.push(
                backend
                    .run(
                        &session,
                        plan,
                        &Format::UnifiedText,
                        options,
                        (deadline, turn),
                    )
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
        let turn = backend.turn(deadline).await?;
        backend
            .run(
                &session,
                plan,
                &portal.result_column_format,
                options,
                (deadline, turn),
            )
            .await
    }
}

fn empty_plan() -> LogicalPlan {
    LogicalPlan::EmptyRelation(EmptyRelation {
        produce_one_row: false,
        schema: Arc::new(DFSchema::empty()),
    })
}

impl Backend {
    /// Answers `SET basin.ref` (after checking the ref exists), `SET search_path` and their
    /// `SHOW`s; `None` for any other statement.
    pub(super) async fn connection_statement<C: ClientInfo + ?Sized>(
        &self,
        client: &mut C,
        statement: &Statement,
    ) -> Option<PgWireResult<Response>> {
        if let Some(refused) = engine_setting(statement) {
            return Some(Err(basin_error(refused)));
        }
        if let Some(spec) = set_value(statement, REF) {
            if let Err(e) = self.lakehouse.resolve(Some(&spec)).await {
                return Some(Err(basin_error(e)));
            }
            client.metadata_mut().insert(REF.to_string(), spec);
            return Some(Ok(Response::Execution(Tag::new("SET"))));
        }
        if let Some(path) = set_value(statement, SEARCH_PATH) {
            client.metadata_mut().insert(SEARCH_PATH.to_string(), path);
            return Some(Ok(Response::Execution(Tag::new("SET"))));
        }
        if is_show(statement, REF) {
            return Some(show_value(REF, &connection_ref(client)));
        }
        if is_show(statement, SEARCH_PATH) {
            let path = client.metadata().get(SEARCH_PATH).cloned();
            return Some(show_value(
                SEARCH_PATH,
                path.as_deref().unwrap_or(DEFAULT_SEARCH_PATH),
            ));
        }
        None
    }
}
