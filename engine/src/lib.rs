//! Strata's storage engine: the dataset catalog, the layout contract, dataset writers, sharded
//! table providers with pruning, the cache tiers in front of object storage, and the Tables
//! contract (schemas, default tiers, person keys, OMOP event domains).

pub mod catalog;
pub mod error;
pub mod fsutil;
pub mod layout;
pub mod tables;
pub mod writer;

pub use catalog::{Catalog, Tier};
pub use error::{EngineError, Result};
pub mod cache;
pub mod dataset;
mod estimates;
pub mod pruning;
mod remote;
pub mod selectivity;
pub mod table;
pub mod yields;

pub use dataset::{Dataset, DatasetOptions};
