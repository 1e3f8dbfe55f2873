//! What every fuzz target feeds its input to. The cargo-fuzz targets (`fuzz/`, nightly) and the
//! stable property tests (`tests/properties.rs`) call the same functions, so a crash found by
//! either is reproduced by both, and each becomes a regression test where its cause was fixed.
//!
//! Each function takes arbitrary input, drives one door or parser of the real server with it
//! (a small generated dataset, the real query service, the real Flight SQL and PostgreSQL doors)
//! and checks what must hold whatever the input: no panic, an answer or a typed error, and the
//! invariants named on each function. A broken invariant panics, which is what fuzzers report.

mod cohort;
mod flight;
mod panics;
mod passport;
mod postgres;
mod sql;
mod world;

pub use cohort::{cohort_builder_json, cohort_json};
pub use flight::{ACTION_TYPES, COMMAND_TYPES, flight_sql};
pub use panics::{PanicWatch, watch_panics};
pub use passport::{passport_claims, passport_token};
pub use postgres::{pg_after_login, pg_message, pg_raw};
pub use sql::sql;
pub use world::{SERVICE_USER, World};
