//! One file per command of the `strata` binary.

pub mod audit;
pub mod demo;
pub mod generate;
pub mod import;
/// `strata keys` and `strata token` share the dev issuer's key files.
pub mod keys;
pub mod serve;
pub mod worker;
