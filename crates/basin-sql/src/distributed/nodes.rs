//! Ballista's scheduler and executors, embedded: the scheduler in `basin serve`, an executor
//! in each `basin worker`. Both read the warehouse through the engine's read-only stores and
//! hold their memory to the node's `[sql]` limits.
//!
//! The scheduler accepts plans and executors only with the cluster's token (a secret the
//! nodes read from the shared catalog). Executors' Arrow Flight ports, where other
//! executors and the client fetch stage outputs, carry no token: Ballista 53's shuffle
//! reader cannot send one. They bind loopback unless told otherwise, and docs/scale-out.md
//! says to keep them on a private network.

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use ballista_core::extension::{
    BallistaGrpcMetadataInterceptor, SessionConfigExt, ballista_aggregate_functions,
    ballista_scalar_functions, ballista_window_functions,
};
use ballista_core::serde::protobuf::ExecutorRegistration;
use ballista_core::serde::protobuf::scheduler_grpc_client::SchedulerGrpcClient;
use ballista_core::serde::protobuf::scheduler_grpc_server::SchedulerGrpcServer;
use ballista_core::serde::scheduler::{
    ExecutorOperatingSystemSpecification, ExecutorSpecification,
};
use ballista_core::serde::{BallistaCodec, BallistaPhysicalExtensionCodec};
use ballista_core::utils::{GrpcServerConfig, create_grpc_server};
use ballista_core::{ConfigProducer, RuntimeProducer};
use ballista_executor::execution_engine::QueryStageExecutor;
use ballista_executor::executor::Executor as BallistaExecutor;
use ballista_executor::flight_service::BallistaFlightService;
use ballista_executor::metrics::ExecutorMetricsCollector;
use ballista_scheduler::cluster::BallistaCluster;
use ballista_scheduler::config::SchedulerConfig;
use ballista_scheduler::scheduler_server::SchedulerServer;
use basin_core::{Error, Result};
use basin_table::Tables;
use datafusion::execution::{SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use datafusion_proto::protobuf::{LogicalPlanNode, PhysicalPlanNode};
use tokio::net::TcpListener;

use super::codec::BasinCodec;
use super::handles::{Scheduler, SqlExecutor, Task};
use crate::engine::Engine;

/// The gRPC header that carries the cluster's token.
pub(crate) const TOKEN_HEADER: &str = "x-basin-cluster-token";

/// Starts the scheduler on `listen` (`host:port`; port 0 picks one). It plans the queries
/// clients send with `tables` and hands their stages to executors; it keeps no state on
/// disk (a restart loses the queries in flight, which then fail).
pub async fn start_scheduler(
    listen: &str,
    engine: &Engine,
    tables: &Tables,
    token: &str,
) -> Result<Scheduler> {
    let listener = bind(listen, "the SQL scheduler").await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("the SQL scheduler's address").with_source(e))?;
    let session_engine = engine.clone();
    let builder = Arc::new(move |config: SessionConfig| Ok(session(&session_engine, config)));
    let producer: ConfigProducer = Arc::new(SessionConfig::new_with_ballista);
    let cluster = BallistaCluster::new_memory(addr.to_string(), builder, producer);
    let codec = BallistaCodec::new(
        Arc::new(BasinCodec::scheduler(engine.clone(), tables.clone())),
        Arc::new(BallistaPhysicalExtensionCodec::default()),
    );
    let executor_timeout = engine.limits().ballista.executor_timeout;
    let mut config = SchedulerConfig::default()
        .with_hostname(addr.ip().to_string())
        .with_port(addr.port())
        .with_scheduler_policy(ballista_core::config::TaskSchedulingPolicy::PullStaged);
    config.executor_timeout_seconds = executor_timeout.as_secs().max(1);
    config.expire_dead_executor_interval_seconds = (executor_timeout.as_secs() / 3).clamp(1, 15);
    let metrics = ballista_scheduler::metrics::default_metrics_collector().map_err(ballista)?;
    let mut server: SchedulerServer<LogicalPlanNode, PhysicalPlanNode> = SchedulerServer::new(
        config.scheduler_name(),
        cluster,
        codec,
        Arc::new(config),
        metrics,
    );
    server.init().await.map_err(ballista)?;
    let max = SessionConfig::new_with_ballista().ballista_grpc_client_max_message_size();
    let service = SchedulerGrpcServer::new(server.clone())
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let service = tonic::service::interceptor::InterceptedService::new(service, check(token));
    let serve = create_grpc_server(&GrpcServerConfig::default())
        .add_service(service)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let task = tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the SQL scheduler stopped");
        }
    });
    tracing::info!(%addr, "SQL scheduler (Ballista) listening");
    Ok(Scheduler {
        addr,
        executor_timeout,
        server,
        _task: Arc::new(Task(task)),
    })
}

/// Counts the tasks an executor ran, and the node's (its engine's counters).
struct TaskCounter(Arc<AtomicU64>, Engine);

impl ExecutorMetricsCollector for TaskCounter {
    fn record_stage(
        &self,
        job_id: &str,
        stage_id: usize,
        partition: usize,
        _plan: Arc<dyn QueryStageExecutor>,
    ) {
        self.0.fetch_add(1, Ordering::Relaxed);
        self.1
            .counters()
            .executor_tasks
            .fetch_add(1, Ordering::Relaxed);
        tracing::debug!(job_id, stage_id, partition, "SQL task done");
    }
}

/// Joins the scheduler at `scheduler` (`host:port`) as an executor of `slots` tasks at once,
/// serving its stage outputs on `listen` from `work_dir` (emptied of a job's files when the
/// job ends). `advertise` is the host other nodes reach it by (the listen address's, unless
/// that is unspecified).
pub async fn start_executor(
    scheduler: &str,
    listen: &str,
    advertise: Option<&str>,
    slots: usize,
    work_dir: &Path,
    engine: &Engine,
    token: &str,
) -> Result<SqlExecutor> {
    std::fs::create_dir_all(work_dir)
        .map_err(|e| Error::io(format!("cannot create {}", work_dir.display())).with_source(e))?;
    let listener = bind(listen, "the SQL executor").await?;
    let addr = listener
        .local_addr()
        .map_err(|e| Error::io("the SQL executor's address").with_source(e))?;
    let host = match advertise {
        Some(host) => host.to_string(),
        None if addr.ip().is_unspecified() => {
            return Err(Error::invalid(format!(
                "the SQL executor listens on {addr}, which other nodes cannot dial"
            ))
            .with_hint("set [sql.ballista] executor_advertise to this node's address"));
        }
        None => addr.ip().to_string(),
    };
    let slots = slots.max(1);
    let registration = ExecutorRegistration {
        id: uuid::Uuid::new_v4().to_string(),
        host: Some(host),
        port: u32::from(addr.port()),
        grpc_port: 0,
        specification: Some(
            ExecutorSpecification::default()
                .with_task_slots(slots as u32)
                .into(),
        ),
        os_info: Some(ExecutorOperatingSystemSpecification::default().into()),
    };
    let state = session(engine, SessionConfig::new_with_ballista());
    let tasks = Arc::new(AtomicU64::new(0));
    let config = state.config().clone();
    let config_producer: ConfigProducer = Arc::new(move || config.clone());
    let runtime_engine = engine.clone();
    let runtime_producer: RuntimeProducer =
        Arc::new(move |_: &SessionConfig| Ok(runtime_engine.session_runtime()));
    let work_dir = work_dir.to_string_lossy().into_owned();
    let executor = Arc::new(BallistaExecutor::with_default_execution_engine(
        registration,
        &work_dir,
        runtime_producer,
        config_producer,
        Arc::new((&state).into()),
        Arc::new(TaskCounter(tasks.clone(), engine.clone())),
        slots,
    ));
    let max = state.config().ballista_grpc_client_max_message_size();
    let flight = FlightServiceServer::new(BallistaFlightService::new(work_dir))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let serve = create_grpc_server(&GrpcServerConfig::default())
        .add_service(flight)
        .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener));
    let flight_task = tokio::spawn(async move {
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "the SQL executor's data port stopped");
        }
    });
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{scheduler}"))
        .map_err(|e| {
            Error::invalid(format!("`{scheduler}` is not a scheduler address: {e}"))
                .with_hint("[sql.ballista] scheduler is HOST:PORT")
        })?
        .connect_timeout(Duration::from_secs(10))
        .connect_lazy();
    let client = SchedulerGrpcClient::with_interceptor(channel, token_metadata(token))
        .max_decoding_message_size(max)
        .max_encoding_message_size(max);
    let codec: BallistaCodec = BallistaCodec::new(
        Arc::new(BasinCodec::client()),
        Arc::new(BallistaPhysicalExtensionCodec::default()),
    );
    let poll_task = tokio::spawn(async move {
        if let Err(e) = ballista_executor::execution_loop::poll_loop(client, executor, codec).await
        {
            tracing::error!(error = %e, "the SQL executor stopped polling its scheduler");
        }
    });
    tracing::info!(%addr, scheduler, slots, "SQL executor (Ballista) joined");
    Ok(SqlExecutor {
        addr,
        tasks,
        _tasks: vec![Task(flight_task), Task(poll_task)],
    })
}

/// A session on a scheduler or an executor: Ballista's functions, the engine's files and
/// memory.
fn session(engine: &Engine, config: SessionConfig) -> SessionState {
    crate::rules::add(
        SessionStateBuilder::new()
            .with_default_features()
            .with_config(config)
            .with_runtime_env(engine.session_runtime())
            .with_scalar_functions(ballista_scalar_functions())
            .with_aggregate_functions(ballista_aggregate_functions())
            .with_window_functions(ballista_window_functions()),
    )
    .build()
}

/// The metadata every call to the scheduler carries.
pub(crate) fn token_metadata(token: &str) -> BallistaGrpcMetadataInterceptor {
    BallistaGrpcMetadataInterceptor::new(HashMap::from([(
        TOKEN_HEADER.to_string(),
        token.to_string(),
    )]))
}

/// Refuses a call without the cluster's token.
fn check(
    token: &str,
) -> impl FnMut(tonic::Request<()>) -> std::result::Result<tonic::Request<()>, tonic::Status>
+ Clone
+ Send
+ 'static {
    let token: Arc<[u8]> = Arc::from(token.as_bytes());
    move |request: tonic::Request<()>| {
        let given = request
            .metadata()
            .get(TOKEN_HEADER)
            .map(|v| v.as_bytes())
            .unwrap_or_default();
        if constant_time_eq(given, &token) {
            Ok(request)
        } else {
            Err(tonic::Status::unauthenticated(
                "this Basin cluster's SQL scheduler needs its token",
            ))
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

async fn bind(listen: &str, what: &str) -> Result<TcpListener> {
    TcpListener::bind(listen).await.map_err(|e| {
        Error::io(format!("{what} cannot listen on {listen}"))
            .with_source(e)
            .with_hint("pick a free HOST:PORT in [sql.ballista] (port 0: any free port)")
    })
}

fn ballista(e: ballista_core::error::BallistaError) -> Error {
    Error::internal(format!("Ballista: {e}"))
}
