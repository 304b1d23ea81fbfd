//! The cluster's side of a query: a session whose plans go to the scheduler, and the stages
//! Ballista's planner cuts a plan into (for `EXPLAIN`).

use std::collections::HashMap;
use std::fmt;
use std::sync::Arc;

use ballista_core::extension::{SessionConfigExt, SessionStateExt};
use basin_core::{Error, Result};
use datafusion::execution::context::SessionContext;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::displayable;
use datafusion::physical_planner::{DefaultPhysicalPlanner, PhysicalPlanner};
use datafusion::prelude::SessionConfig;

use super::{Cluster, codec, nodes};
use crate::engine::Engine;
use crate::provider::{CATALOG, RefCatalog};

/// A session context whose queries run on `cluster`: the same tables as `catalog`, read
/// without string views (Ballista 53 sends no view arrays between executors).
pub(crate) fn context(
    engine: &Engine,
    catalog: &RefCatalog,
    cluster: &Cluster,
    local: &SessionContext,
) -> Result<SessionContext> {
    let options = local.state().config().options().clone();
    let mut config = SessionConfig::from(options.as_ref().clone())
        .with_ballista_logical_extension_codec(Arc::new(codec::BasinCodec::client()))
        .with_ballista_grpc_metadata(HashMap::from([(
            nodes::TOKEN_HEADER.to_string(),
            cluster.token().to_string(),
        )]));
    config = config.set_bool(
        "datafusion.execution.parquet.schema_force_view_types",
        false,
    );
    let state = crate::rules::add(
        SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(engine.session_runtime())
            .with_default_features()
            .with_table_factories(HashMap::new()),
    )
    .build()
    .upgrade_for_ballista(cluster.url.clone())
    .map_err(|e| Error::internal(format!("cannot set up a distributed session: {e}")))?;
    let ctx = SessionContext::new_with_state(state);
    ctx.register_catalog(CATALOG, Arc::new(catalog.with_string_views(false)));
    Ok(ctx)
}

/// The stages of `plan` as Ballista's planner cuts them.
pub(super) async fn stages(ctx: &SessionContext, plan: &LogicalPlan) -> Result<Vec<String>> {
    use ballista_scheduler::planner::{DefaultDistributedPlanner, DistributedPlanner};
    let state = ctx.state();
    let internal = |e: &dyn fmt::Display| Error::internal(format!("cannot plan the stages: {e}"));
    let optimized = state.optimize(plan).map_err(|e| internal(&e))?;
    let physical = DefaultPhysicalPlanner::default()
        .create_physical_plan(&optimized, &state)
        .await
        .map_err(|e| internal(&e))?;
    let stages = DefaultDistributedPlanner::new()
        .plan_query_stages("explain", physical, state.config().options())
        .map_err(|e| internal(&e))?;
    Ok(stages
        .iter()
        .map(|stage| {
            displayable(stage.as_ref() as &dyn datafusion::physical_plan::ExecutionPlan)
                .indent(false)
                .to_string()
        })
        .collect())
}
