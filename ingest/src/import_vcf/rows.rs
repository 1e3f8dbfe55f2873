//! The rows of `variant` and `genotype` as the import collects them, and their batches in the
//! contract's schemas.

use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use strata_engine::tables::{Genotype, Variant};

use crate::error::Result;

pub(super) struct VariantRow {
    pub(super) contig: Arc<str>,
    pub(super) position: i64,
    pub(super) vid: Arc<str>,
    pub(super) ref_allele: String,
    pub(super) alt_allele: String,
    pub(super) gene_symbol: Option<String>,
    pub(super) consequence: Option<String>,
    pub(super) dbsnp_rsid: Option<String>,
    pub(super) ac: i64,
    pub(super) an: i64,
}

pub(super) struct GenotypeRow {
    pub(super) person_id: i64,
    pub(super) vid: Arc<str>,
    pub(super) contig: Arc<str>,
    pub(super) position: i64,
    pub(super) gt: String,
}

pub(super) fn variant_batch(rows: &[VariantRow]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &*r.vid))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.contig),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.position),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.ref_allele),
        )),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &r.alt_allele),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.gene_symbol.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.consequence.as_deref()),
        )),
        Arc::new(StringArray::from_iter(
            rows.iter().map(|r| r.dbsnp_rsid.as_deref()),
        )),
        Arc::new(StringArray::from_iter(rows.iter().map(|_| None::<&str>))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.ac))),
        Arc::new(Int64Array::from_iter_values(rows.iter().map(|r| r.an))),
        Arc::new(Float64Array::from_iter(
            rows.iter()
                .map(|r| (r.an > 0).then(|| r.ac as f64 / r.an as f64)),
        )),
    ];
    Ok(RecordBatch::try_new(Variant::schema(), columns)?)
}

pub(super) fn genotype_batch(rows: &[GenotypeRow]) -> Result<RecordBatch> {
    let columns: Vec<ArrayRef> = vec![
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.person_id),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &*r.vid))),
        Arc::new(StringArray::from_iter_values(
            rows.iter().map(|r| &*r.contig),
        )),
        Arc::new(Int64Array::from_iter_values(
            rows.iter().map(|r| r.position),
        )),
        Arc::new(StringArray::from_iter_values(rows.iter().map(|r| &r.gt))),
    ];
    Ok(RecordBatch::try_new(Genotype::schema(), columns)?)
}

/// `vid` prefix: the contig without a leading `chr`.
pub(super) fn vid_contig(contig: &str) -> &str {
    for prefix in ["chr", "CHR", "Chr"] {
        if let Some(rest) = contig.strip_prefix(prefix)
            && !rest.is_empty()
        {
            return rest;
        }
    }
    contig
}

/// The `gt` of a call relative to allele `allele`: see the module doc.
pub(super) fn relative_gt(call: &[Option<usize>], allele: usize) -> String {
    let mut marks: Vec<u8> = call
        .iter()
        .map(|a| match a {
            None => b'.',
            Some(i) if *i == allele => b'1',
            Some(_) => b'0',
        })
        .collect();
    marks.sort_unstable();
    let mut s = String::with_capacity(marks.len() * 2);
    for (i, m) in marks.iter().enumerate() {
        if i > 0 {
            s.push('/');
        }
        s.push(*m as char);
    }
    s
}
