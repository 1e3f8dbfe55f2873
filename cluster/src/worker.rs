//! `strata worker`: executes the plan fragments its coordinator ships, over the same dataset.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::common::{Result, config_err};
use std::num::NonZeroUsize;

use datafusion::execution::memory_pool::{FairSpillPool, TrackConsumersPool};
use datafusion::execution::{FunctionRegistry, SessionState, SessionStateBuilder};
use datafusion::prelude::SessionConfig;
use std::collections::HashSet;

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::datasource::physical_plan::FileScanConfig;
use datafusion::datasource::source::DataSourceExec;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DistributedExt, DistributedTaskContext, Worker, WorkerPlanRewriteEvent,
    WorkerPlanRewriteEventResponse, WorkerQueryContext, WorkerSessionBuilder,
};
use strata_engine::Dataset;
use strata_planner::registered::policy::RegisteredPolicy;
use strata_planner::shipped::Functions;
use tokio::net::TcpListener;
use tonic::transport::{ClientTlsConfig, ServerTlsConfig};

use crate::auth::{AuthChannels, ClusterSecret};
use crate::codec::StrataCodec;
use crate::error::ClusterError;
use crate::options::{BUILD, QueryOptions};
use crate::settings::ClusterSettings;

/// The registered tier as this worker computed it (same dataset and date-shift secret as the
/// coordinator), checked against the coordinator's fingerprint on every registered-tier query.
#[derive(Clone)]
pub struct WorkerPolicy(pub Arc<RegisteredPolicy>);

/// How a worker is reached and reaches the other workers: the coordinator's secret, its
/// listener's TLS (its `[tls]`; mutual with `client_ca`), and `[cluster]`'s channels (the workers'
/// CA and this worker's client certificate, for the outputs it reads from the other workers).
pub struct WorkerNetwork {
    secret: ClusterSecret,
    tls: Option<ServerTlsConfig>,
    channels: AuthChannels,
}

impl WorkerNetwork {
    /// `peers` is `[cluster]`'s `client_tls()`.
    pub fn new(
        secret: ClusterSecret,
        tls: Option<ServerTlsConfig>,
        peers: Option<ClientTlsConfig>,
        settings: &ClusterSettings,
    ) -> Self {
        let channels = AuthChannels::new(secret.clone(), settings.connect_timeout(), peers);
        WorkerNetwork {
            secret,
            tls,
            channels,
        }
    }
}

/// Serves `dataset` to the coordinator holding `network`'s secret on `listener` until
/// `shutdown`.
pub async fn serve_worker(
    dataset: Arc<Dataset>,
    listener: TcpListener,
    network: WorkerNetwork,
    policy: Option<WorkerPolicy>,
    shutdown: impl Future<Output = ()> + Send,
) -> Result<(), ClusterError> {
    let WorkerNetwork {
        secret,
        tls,
        channels,
    } = network;
    let addr = listener.local_addr().map_err(|e| ClusterError::Serve {
        addr: "0.0.0.0:0".parse().expect("address"),
        reason: e.to_string(),
    })?;
    let stores: HashSet<String> = dataset
        .tables()
        .values()
        .flat_map(|t| t.shards().iter().map(|s| s.store.as_str().to_string()))
        .collect();
    let sessions = Sessions {
        stores: Arc::new(stores),
        dataset: dataset.fingerprint().to_string(),
        channels,
        fingerprint: policy.as_ref().map(|p| p.0.fingerprint()),
        policy: policy.map(|p| p.0),
    };
    let worker = Worker::from_session_builder(sessions).with_runtime_env(dataset.runtime().clone());
    let service = tonic::service::interceptor::InterceptedService::new(
        worker.into_worker_server(),
        move |request| secret.check(request),
    );
    let serve_error = |reason: String| ClusterError::Serve { addr, reason };
    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = tls {
        server = server
            .tls_config(tls)
            .map_err(|e| serve_error(with_source(&e)))?;
    }
    server
        .http2_keepalive_interval(Some(Duration::from_secs(10)))
        .add_service(service)
        .serve_with_incoming_shutdown(
            tokio_stream::wrappers::TcpListenerStream::new(listener),
            shutdown,
        )
        .await
        .map_err(|e| serve_error(with_source(&e)))
}

/// tonic's transport errors say what failed in their source ("transport error" alone).
fn with_source(e: &dyn std::error::Error) -> String {
    match e.source() {
        Some(source) => format!("{e}: {source}"),
        None => e.to_string(),
    }
}

/// The query's memory limit, shared by the tasks of the stage this task belongs to (each task a
/// pool of its part): past it, operators that can spill do, and the others fail the query as on
/// a single node.
fn limit_memory(builder: &mut SessionStateBuilder, bytes: usize) {
    let config = builder.config().get_or_insert_default();
    let tasks = config
        .get_extension::<DistributedTaskContext>()
        .map_or(1, |t| t.task_count.max(1));
    let share = (bytes / tasks).max(1 << 20);
    let partitions = config.target_partitions().max(1);
    let execution = &mut config.options_mut().execution;
    // As on the coordinator (`Dataset::session_with`): a sort's merge reservation must fit.
    execution.sort_spill_reservation_bytes = execution
        .sort_spill_reservation_bytes
        .min(share / (4 * partitions));
    if let Some(runtime) = builder.runtime_env().clone() {
        let mut own = runtime.as_ref().clone();
        own.memory_pool = Arc::new(TrackConsumersPool::new(
            FairSpillPool::new(share),
            NonZeroUsize::new(3).expect("nonzero"),
        ));
        *builder.runtime_env() = Some(Arc::new(own));
    }
}

/// A fragment reads the dataset's stores and writes nothing: whatever the secret lets a caller
/// send, a worker serves no other file (its own state folder, say) and changes none.
fn read_only_over(stores: &HashSet<String>, plan: &Arc<dyn ExecutionPlan>) -> Result<()> {
    plan.apply(|node| {
        if node.name().contains("Sink") {
            return config_err!("a Strata worker writes nothing ({})", node.name());
        }
        if let Some(scan) = node.downcast_ref::<DataSourceExec>()
            && let Some(files) = scan.data_source().downcast_ref::<FileScanConfig>()
            && !stores.contains(files.object_store_url.as_str())
        {
            return config_err!("a Strata worker reads its dataset's files only");
        }
        Ok(TreeNodeRecursion::Continue)
    })
    .map(|_| ())
}

/// Each task's session: the functions its fragment names, with the coordinator's parameters.
#[derive(Clone)]
struct Sessions {
    /// The object stores of the dataset's files: the only ones a fragment may read.
    stores: Arc<HashSet<String>>,
    /// This worker's dataset (`Dataset::fingerprint`).
    dataset: String,
    channels: AuthChannels,
    policy: Option<Arc<RegisteredPolicy>>,
    fingerprint: Option<String>,
}

#[async_trait]
impl WorkerSessionBuilder for Sessions {
    async fn build_session_state(&self, ctx: WorkerQueryContext) -> Result<SessionState> {
        let mut builder = ctx.builder;
        let options = SessionConfig::new()
            .with_distributed_option_extension_from_headers::<QueryOptions>(&ctx.headers)?
            .options()
            .extensions
            .get::<QueryOptions>()
            .cloned()
            .unwrap_or_default();
        if options.memory_bytes > 0 {
            limit_memory(&mut builder, options.memory_bytes as usize);
        }
        let stores = self.stores.clone();
        let mut state = builder
            .with_distributed_worker_plan_rewrite_handler(move |ev: WorkerPlanRewriteEvent| {
                read_only_over(&stores, &ev.plan)?;
                Ok(WorkerPlanRewriteEventResponse::new(ev.plan))
            })
            .with_distributed_user_codec(StrataCodec)
            .with_distributed_channel_resolver(self.channels.clone())
            .build();
        // Configuration errors: their text reaches the client (execution errors' may quote
        // data and are withheld).
        if options.build != BUILD {
            return config_err!(
                "this worker runs Strata build {BUILD}, its coordinator build {:?}: run the same \
                 build on both",
                options.build
            );
        }
        if options.dataset != self.dataset {
            return config_err!(
                "this worker serves other files than its coordinator's dataset: give both the \
                 same dataset (same catalog and files)"
            );
        }
        let policy = match options.registered_policy.as_str() {
            "" => None,
            theirs if self.fingerprint.as_deref() == Some(theirs) => self.policy.as_ref(),
            _ => {
                return config_err!(
                    "this worker's registered tier differs from the coordinator's: serve the \
                     same dataset with the same state folder (date-shift secret) on both"
                );
            }
        };
        tracing::info!(
            protected = options.protected,
            registered = !options.registered_policy.is_empty(),
            "executing a plan fragment"
        );
        let functions = Functions::shipped(options.protection(), policy);
        for f in functions.scalars {
            state.register_udf(f)?;
        }
        for f in functions.aggregates {
            state.register_udaf(f)?;
        }
        Ok(state)
    }
}
