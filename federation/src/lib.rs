//! Federation: a table of a remote Flight SQL server (another Strata, or any Flight SQL server)
//! registered in `catalog.toml` and queried like a local one. The scan sends the remote only
//! the columns and the filters that are safe to push (see `pushdown`); everything else, and
//! every policy, runs locally on the rows that arrive.

pub mod error;
pub mod pushdown;
pub mod source;
pub mod table;

pub use error::FederationError;
pub use source::{FlightSqlSource, SourceConfig};
pub use table::{RemoteScanExec, RemoteTable};
