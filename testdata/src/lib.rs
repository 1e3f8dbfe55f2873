//! Synthetic data for Strata: the deterministic research-program generator, writing the dataset
//! layout and the Tables contract of `strata-engine`. (The importers of real data are the
//! `strata-ingest` crate.)

pub mod error;
pub mod generate;

pub use error::TestdataError;
