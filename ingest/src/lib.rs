//! Operator ETL for Strata: `strata import omop` (an OMOP CDM export into a new dataset) and
//! `strata import vcf` (the `variant` and `genotype` tables from a bgzipped VCF), both writing
//! the dataset layout and the Tables contract of `strata-engine`.

pub mod error;
pub mod import_omop;
pub mod import_vcf;

pub use error::IngestError;
