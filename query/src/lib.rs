//! The query service every door calls (Flight SQL and CohortService over gRPC, PostgreSQL
//! wire): passport → principal, the principal's session, planning through the planner's policy
//! rules, execution over the engine, protection and release, egress limits, and the audit log —
//! its start record durable before any data leaves. A door decodes a request into a [`Call`],
//! calls one method here, encodes the answer, and maps [`QueryError`] to its wire once.

pub mod audit;
mod auth;
mod call;
mod cohort;
pub mod cohorts;
pub mod config;
mod error;
mod execute;
mod handles;
mod ledger_file;
pub mod limits;
mod listing;
pub mod metrics;
mod prepared;
mod service;
mod session;
mod statements;
mod stream;

pub use auth::Authenticator;
pub use call::{Call, Dialect};
pub use cohort::{Breakdown, CohortCount};
pub use error::QueryError;
pub use ledger_file::open_ledger;
pub use listing::Listed;
pub use prepared::Prepared;
pub use service::{QueryService, Results, registered_policy_of};
pub use strata_passport::{Egress, Principal};
pub use strata_planner::disclosure::result::Summary;
/// PostgreSQL clients' SQL dialect and catalog, for the PostgreSQL-wire door.
pub use strata_planner::postgres;
pub use stream::QueryStream;
