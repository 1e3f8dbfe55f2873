//! Scale-out on datafusion-distributed. The Strata server is the coordinator: it plans, guards
//! and rewrites every statement as on a single node, then ships plan fragments to `strata
//! worker` processes. Workers execute fragments only: they serve no door a client's query could
//! reach, and answer only a coordinator that proves the cluster secret (over TLS, mutual if the
//! workers ask for it, when `[cluster] ca_file` is set).
//!
//! A plan is shipped only when every fragment a worker would run can be encoded with the
//! functions a worker holds; anything else (a cell mask that counts into the coordinator's
//! disclosure report, a cohort spool, a catalog table) runs on the coordinator, as on a single
//! node.

mod auth;
mod codec;
mod coordinator;
mod error;
mod options;
mod settings;
mod ship;
mod worker;

pub use auth::ClusterSecret;
pub use coordinator::Coordinator;
pub use error::ClusterError;
pub use options::QueryOptions;
pub use settings::ClusterSettings;
pub use worker::{WorkerNetwork, WorkerPolicy, serve_worker};
