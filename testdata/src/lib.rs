//! Data for Strata: the deterministic synthetic research-program generator and the importers of
//! real OMOP CDM exports and VCF files, all writing the dataset layout of `strata-engine`.

pub mod error;
pub mod generate;
pub mod import_omop;
pub mod import_vcf;

pub use error::TestdataError;
