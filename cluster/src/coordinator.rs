//! The coordinator's side: sessions that plan as on one node, then spread what can be shipped
//! over the workers.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{Result, internal_err};
use datafusion::error::DataFusionError;
use datafusion::execution::SessionStateBuilder;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::LogicalPlan;
use datafusion::physical_plan::ExecutionPlan;
use datafusion_distributed::{
    DistributedExec, DistributedExt, SessionStateBuilderExt, WorkerResolver,
};
use url::Url;

use crate::auth::{AuthChannels, ClusterSecret};
use crate::codec::StrataCodec;
use crate::error::ClusterError;
use crate::options::QueryOptions;
use crate::settings::ClusterSettings;
use crate::ship::{
    WorkerFunctions, keep_top_on_coordinator, refusal, selective_scan_tasks, unshippable_shape,
};

pub struct Coordinator {
    workers: Vec<Url>,
    channels: AuthChannels,
    functions: Arc<WorkerFunctions>,
    scan_bytes_per_partition: usize,
}

impl std::fmt::Debug for Coordinator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coordinator")
            .field("workers", &self.workers)
            .finish()
    }
}

impl Coordinator {
    pub fn new(settings: &ClusterSettings, secret: ClusterSecret) -> Result<Self, ClusterError> {
        let tls = settings.client_tls()?;
        let scheme = if tls.is_some() { "https" } else { "http" };
        let mut workers: Vec<Url> = Vec::new();
        for address in &settings.workers {
            // The same worker twice (in the config and on the command line) would take two
            // tasks of each stage.
            let url = worker_url(address, scheme)?;
            if !workers.contains(&url) {
                workers.push(url);
            }
        }
        Ok(Coordinator {
            workers,
            channels: AuthChannels::new(secret, settings.connect_timeout(), tls),
            functions: Arc::new(WorkerFunctions::new()),
            scan_bytes_per_partition: settings.scan_bytes_per_partition.max(1) as usize,
        })
    }

    pub fn workers(&self) -> &[Url] {
        &self.workers
    }

    /// `builder`'s sessions plan for the cluster: `planner` (Strata's, every policy rewrite
    /// included) plans as on one node, and the physical plan is then spread over the workers
    /// when every fragment can be shipped; `options` tell the workers the principal's
    /// protection.
    pub fn coordinate(
        &self,
        builder: SessionStateBuilder,
        planner: Arc<dyn QueryPlanner + Send + Sync>,
        options: QueryOptions,
    ) -> Result<SessionStateBuilder, ClusterError> {
        let planned = Arc::new(Mutex::new(None));
        let mut builder = builder
            .with_query_planner(Arc::new(Planned(planned.clone())))
            .with_distributed_worker_resolver(Workers(self.workers.clone()))
            .with_distributed_channel_resolver(self.channels.clone())
            .with_distributed_user_codec(StrataCodec)
            .with_distributed_option_extension(options)
            .with_distributed_file_scan_config_bytes_per_partition(self.scan_bytes_per_partition)?
            .with_distributed_desired_task_count_handler(selective_scan_tasks)
            .with_distributed_planner();
        // datafusion-distributed turns DataFusion's physical scalar subqueries off for the whole
        // session; its fallback rewrite answers a subquery of several rows instead of failing.
        // Plans with a scalar subquery stay on the coordinator instead (`unshippable_shape`).
        builder
            .config()
            .get_or_insert_default()
            .options_mut()
            .optimizer
            .enable_physical_uncorrelated_scalar_subquery = true;
        let Some(distributed) = builder.query_planner().take() else {
            return Err(DataFusionError::Internal("no distributed planner".into()).into());
        };
        Ok(builder.with_query_planner(Arc::new(ClusterPlanner {
            local: planner,
            distributed,
            planned,
            serial: tokio::sync::Mutex::new(()),
            functions: self.functions.clone(),
        })))
    }
}

/// `host:port` or a URL of `scheme`: the workers speak gRPC over HTTP/2, over TLS (`https`) when
/// `[cluster] ca_file` is set, in clear text (`http`) on a private cluster network otherwise.
fn worker_url(address: &str, scheme: &'static str) -> Result<Url, ClusterError> {
    let text = if address.contains("://") {
        address.to_string()
    } else {
        format!("{scheme}://{address}")
    };
    let bad = || ClusterError::WorkerAddress(address.into(), scheme);
    let url = Url::parse(&text).map_err(|_| bad())?;
    if url.scheme() != scheme || url.host_str().is_none() || url.port().is_none() {
        return Err(bad());
    }
    Ok(url)
}

#[derive(Debug, Clone)]
struct Workers(Vec<Url>);

impl WorkerResolver for Workers {
    fn get_urls(&self) -> Result<Vec<Url>, DataFusionError> {
        Ok(self.0.clone())
    }
}

/// Hands datafusion-distributed's planner the plan Strata made (it distributes the plan its
/// inner planner returns).
#[derive(Debug)]
struct Planned(Arc<Mutex<Option<Arc<dyn ExecutionPlan>>>>);

#[async_trait]
impl QueryPlanner for Planned {
    async fn create_physical_plan(
        &self,
        _logical: &LogicalPlan,
        _session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        match self.0.lock().unwrap_or_else(|e| e.into_inner()).take() {
            Some(plan) => Ok(plan),
            None => internal_err!("the cluster planner had no plan to distribute"),
        }
    }
}

struct ClusterPlanner {
    local: Arc<dyn QueryPlanner + Send + Sync>,
    distributed: Arc<dyn QueryPlanner + Send + Sync>,
    planned: Arc<Mutex<Option<Arc<dyn ExecutionPlan>>>>,
    /// One distribution at a time per session: `planned` holds one plan.
    serial: tokio::sync::Mutex<()>,
    functions: Arc<WorkerFunctions>,
}

impl std::fmt::Debug for ClusterPlanner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClusterPlanner")
    }
}

#[async_trait]
impl QueryPlanner for ClusterPlanner {
    async fn create_physical_plan(
        &self,
        logical: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let local = self.local.create_physical_plan(logical, session).await?;
        if let Some(reason) = unshippable_shape(&local) {
            tracing::debug!(%reason, "plan kept on the coordinator");
            return Ok(local);
        }
        let local = keep_top_on_coordinator(local, &self.functions)?;
        let _one = self.serial.lock().await;
        *self.planned.lock().unwrap_or_else(|e| e.into_inner()) = Some(local.clone());
        let distributed = match self
            .distributed
            .create_physical_plan(logical, session)
            .await
        {
            Ok(plan) => plan,
            Err(e) => {
                self.planned
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .take();
                tracing::debug!(error = %e, "plan kept on the coordinator: not distributable");
                return Ok(local);
            }
        };
        if !distributed.is::<DistributedExec>() {
            return Ok(local);
        }
        match refusal(&distributed, &self.functions) {
            None => {
                tracing::debug!("plan shipped to the workers");
                Ok(distributed)
            }
            Some(reason) => {
                tracing::debug!(%reason, "plan kept on the coordinator");
                Ok(local)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn worker_addresses_are_host_and_port() {
        assert_eq!(
            worker_url("127.0.0.1:7001", "http").unwrap().as_str(),
            "http://127.0.0.1:7001/"
        );
        assert_eq!(
            worker_url("http://w1.cluster:7001", "http")
                .unwrap()
                .as_str(),
            "http://w1.cluster:7001/"
        );
        // With [cluster] ca_file the same addresses are reached over TLS.
        assert_eq!(
            worker_url("w1.cluster:7001", "https").unwrap().as_str(),
            "https://w1.cluster:7001/"
        );
        for (bad, scheme) in [
            ("127.0.0.1", "http"),
            ("https://w1:7001", "http"),
            ("http://w1:7001", "https"),
            ("w1:notaport", "http"),
            ("", "http"),
            ("ftp://w1:21", "http"),
        ] {
            assert!(
                matches!(
                    worker_url(bad, scheme),
                    Err(ClusterError::WorkerAddress(_, _))
                ),
                "{bad} accepted"
            );
        }
    }
}
