//! `strata import vcf`: the `variant` and `genotype` tables from a bgzipped VCF.
//!
//! The VCF is read with noodles (BGZF + VCF, lazily parsed records) and the two tables of an
//! existing dataset are added or replaced through [`DatasetWriter::amend`]: they are staged inside
//! the dataset and swapped in with the catalog only when complete, so a failure at any point
//! leaves the dataset as it was.
//!
//! # `variant`: one row per ALT allele
//! Multi-allelic sites are split. For ALT allele `a` of a record:
//! - `vid` = `<chrom without a leading "chr">-<pos>-<ref>-<alt>` (`22-10510077-C-T`), `contig` =
//!   CHROM as written in the VCF (`chr22`), `position` = POS, `ref_allele`, `alt_allele`;
//! - `dbsnp_rsid` = the first ID starting with `rs`, else null; `clinvar_classification` null;
//! - `gene_symbol` / `consequence` from INFO when present: a plain `GENE`/`SYMBOL`/`GENEINFO`/
//!   `Gene.refGene` (resp. `CONSEQUENCE`/`Consequence`) field, per allele when it has one value
//!   per ALT, else the SnpEff `ANN` or VEP `CSQ` entry of that allele; null otherwise;
//! - `gvs_all_an` = number of called (non-missing) alleles over all samples' GT, the same for
//!   every ALT of the site; `gvs_all_ac` = copies of allele `a` among them; `gvs_all_af` =
//!   ac/an, null when an = 0. A VCF without samples takes AC/AN from INFO when present.
//! - gVCF placeholders `<NON_REF>` and `<*>` are not variants and get no row (their index still
//!   counts when reading GT).
//!
//! # `genotype`: non-reference calls only
//! One row per (sample, ALT allele) whose GT holds at least one copy of that allele:
//! `person_id`, `vid`, `contig`, `position`, `gt`. `gt` is written relative to that allele:
//! each called allele of the GT becomes `1` if it is allele `a` and `0` otherwise — **other ALT
//! alleles of the same site count as non-copies**, so `1/2` gives `0/1` for both ALTs — and a
//! missing allele stays `.`; the alleles are sorted and joined with `/` (phasing is dropped):
//! `0/1` for one copy, `1/1` for two, `./1` for a half-missing call, `1` for a haploid call.
//! Missing calls (`./.`, `.`) and calls without a copy of `a` (`0/0`, `0/2`) are not stored.
//!
//! # Samples
//! Sample names map to `person_id` through the optional CSV (`sample,person_id` header); every
//! sample of the VCF must be in it (an unmapped sample is an error naming it), and two samples
//! may not share a person. Without the CSV, the first sample is person 1, the second 2, and so on.
//!
//! # Order
//! Rows are sorted by position within each contig. A sorted VCF (the norm for bgzipped,
//! indexable files) streams through in batches; when a record is found out of order, the file is
//! read again and its rows are sorted in memory.

mod annotations;
mod rows;
mod source;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use indicatif::{ProgressBar, ProgressStyle};
use noodles::vcf;
use noodles::vcf::variant::record::samples::Series as _;
use noodles::vcf::variant::record::samples::series::Value as SampleValue;
use noodles::vcf::variant::record::{AlternateBases as _, Ids as _};
use strata_engine::error::first_line;
use strata_engine::tables::{Genotype, Variant};
use strata_engine::writer::{DatasetWriter, FinishedTable, TableSpec, TableWriter};

use self::annotations::{Annotations, annotate, info_strings};
use self::rows::{GenotypeRow, VariantRow, genotype_batch, relative_gt, variant_batch, vid_contig};
use self::source::{VcfReader, open, person_ids, read_sample_map};
use crate::error::{IngestError, Result};

/// Rows buffered per table before a batch is written (streaming mode).
const BATCH_ROWS: usize = 64 * 1024;

#[derive(Debug, Clone)]
pub struct VcfImportOptions {
    pub from: PathBuf,
    /// The existing dataset (`--out` on the command line).
    pub dataset: PathBuf,
    pub samples: Option<PathBuf>,
    pub progress: bool,
}

#[derive(Debug, Clone, Default)]
pub struct VcfSummary {
    /// `variant` rows: one per ALT allele.
    pub variants: u64,
    /// `genotype` rows: non-reference calls.
    pub genotypes: u64,
}

pub fn import_vcf(opts: &VcfImportOptions) -> Result<VcfSummary> {
    let sample_map = opts.samples.as_deref().map(read_sample_map).transpose()?;
    let (reader, header) = open(&opts.from)?;
    let persons = person_ids(
        &opts.from,
        &header,
        sample_map.as_ref(),
        opts.samples.as_deref(),
    )?;
    let annotations = Annotations::from_header(&header);
    let bar = progress_bar(opts.progress);
    let job = Job {
        opts,
        header: &header,
        persons: &persons,
        annotations: &annotations,
        bar: &bar,
    };
    let summary = match job.run(reader, false) {
        Err(Stop::Unsorted) => {
            bar.set_message("not sorted by position: reading again to sort in memory");
            let (reader, _) = open(&opts.from)?;
            job.run(reader, true)
        }
        other => other,
    };
    bar.finish_and_clear();
    match summary {
        Ok(s) => Ok(s),
        Err(Stop::Failed(e)) => Err(e),
        Err(Stop::Unsorted) => Err(input_err("VCF records out of order even when sorting")),
    }
}

fn progress_bar(show: bool) -> ProgressBar {
    if !show {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if let Ok(style) =
        ProgressStyle::with_template("{spinner} import vcf: {human_pos} records {msg}")
    {
        bar.set_style(style);
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}

fn input_err(msg: impl Into<String>) -> IngestError {
    IngestError::Input(msg.into())
}

// ---------------------------------------------------------------------------------------------
// The import

enum Stop {
    /// A record came before its predecessor on the same contig (streaming mode only).
    Unsorted,
    Failed(IngestError),
}

impl From<IngestError> for Stop {
    fn from(e: IngestError) -> Self {
        Stop::Failed(e)
    }
}

impl From<strata_engine::EngineError> for Stop {
    fn from(e: strata_engine::EngineError) -> Self {
        Stop::Failed(e.into())
    }
}

struct Job<'a> {
    opts: &'a VcfImportOptions,
    header: &'a vcf::Header,
    persons: &'a [i64],
    annotations: &'a Annotations,
    bar: &'a ProgressBar,
}

impl Job<'_> {
    fn record_err(&self, n: u64, at: Option<(&str, i64)>, e: impl std::fmt::Display) -> Stop {
        let at = at.map(|(c, p)| format!(" ({c}:{p})")).unwrap_or_default();
        Stop::Failed(input_err(format!(
            "{}: record {n}{at}: {}",
            self.opts.from.display(),
            first_line(&e.to_string())
        )))
    }

    /// One pass over the VCF into the dataset's staged `variant` and `genotype` tables.
    fn run(
        &self,
        mut reader: VcfReader,
        sort_in_memory: bool,
    ) -> std::result::Result<VcfSummary, Stop> {
        let mut dataset = DatasetWriter::amend(&self.opts.dataset)?;
        let mut out = Output::open(&dataset, sort_in_memory)?;
        let mut last_position: HashMap<Arc<str>, i64> = HashMap::new();
        let mut calls: Vec<Vec<Option<usize>>> = vec![Vec::new(); self.header.sample_names().len()];
        let mut record = vcf::Record::default();
        let mut n: u64 = 0;
        loop {
            match reader.read_record(&mut record) {
                Ok(0) => break,
                Ok(_) => n += 1,
                Err(e) => return Err(self.record_err(n + 1, None, e)),
            }
            self.bar.inc(1);
            let Some(site) = self.site(&record, n, &mut last_position, sort_in_memory)? else {
                continue;
            };
            let counts = self.allele_counts(&record, &site, &mut calls)?;
            self.add_rows(&record, site, &calls, &counts, &mut out)?;
            out.flush_full()?;
        }
        let (v, g) = out.finish()?;
        let summary = VcfSummary {
            variants: v.entry.rows,
            genotypes: g.entry.rows,
        };
        dataset.add_table(v);
        dataset.add_table(g);
        dataset.finish()?;
        Ok(summary)
    }

    /// Where record `n` is and its ALT alleles; `None` when it has no variant allele (a gVCF
    /// reference block). Refuses a record out of order unless sorting in memory.
    fn site<'r>(
        &self,
        record: &'r vcf::Record,
        n: u64,
        last_position: &mut HashMap<Arc<str>, i64>,
        sort_in_memory: bool,
    ) -> std::result::Result<Option<Site<'r>>, Stop> {
        let chrom = record.reference_sequence_name();
        if chrom.is_empty() || chrom == "." || chrom == ".." || chrom.contains('/') {
            return Err(self.record_err(n, None, format!("unusable CHROM {chrom:?}")));
        }
        let position = match record.variant_start() {
            Some(Ok(p)) => usize::from(p) as i64,
            Some(Err(e)) => return Err(self.record_err(n, None, format!("bad POS: {e}"))),
            None => return Err(self.record_err(n, None, "missing POS")),
        };
        let at = Some((chrom, position));
        let contig: Arc<str> = match last_position.get_key_value(chrom) {
            Some((k, _)) => k.clone(),
            None => Arc::from(chrom),
        };
        let previous = last_position.insert(contig.clone(), position);
        if !sort_in_memory && previous.is_some_and(|p| p > position) {
            return Err(Stop::Unsorted);
        }
        let reference = record.reference_bases();
        if reference.is_empty() || reference == "." {
            return Err(self.record_err(n, at, "missing REF"));
        }
        let alternate_bases = record.alternate_bases();
        let mut alts = Vec::new();
        for (i, alt) in alternate_bases.iter().enumerate() {
            let alt = alt.map_err(|e| self.record_err(n, at, e))?;
            if alt.is_empty() || alt == "." {
                return Err(self.record_err(n, at, "empty ALT allele"));
            }
            if alt != "<NON_REF>" && alt != "<*>" {
                alts.push((i + 1, alt.to_string()));
            }
        }
        if alts.is_empty() {
            return Ok(None);
        }
        Ok(Some(Site {
            n,
            chrom,
            contig,
            position,
            reference,
            alts,
            n_alleles: alternate_bases.iter().count(),
            rsid: record
                .ids()
                .iter()
                .find(|id| id.starts_with("rs"))
                .map(str::to_string),
        }))
    }

    /// AN and AC per allele index of a site: from the samples' GT (filling `calls`, one allele
    /// list per sample), or for a VCF without GT the AN/AC its INFO gives, if any.
    fn allele_counts(
        &self,
        record: &vcf::Record,
        site: &Site<'_>,
        calls: &mut [Vec<Option<usize>>],
    ) -> std::result::Result<AlleleCounts, Stop> {
        let mut counts = AlleleCounts {
            an: 0,
            ac: vec![0; site.n_alleles + 1],
        };
        for c in calls.iter_mut() {
            c.clear();
        }
        if !calls.is_empty() && self.read_calls(record, site, calls, &mut counts)? {
            return Ok(counts);
        }
        // Sites-only VCF: the counts the caller wrote, if any.
        let (n, at) = (site.n, site.at());
        let info = record.info();
        let an_info =
            info_strings(&info, self.header, "AN").map_err(|e| self.record_err(n, at, e))?;
        let ac_info =
            info_strings(&info, self.header, "AC").map_err(|e| self.record_err(n, at, e))?;
        if let (Some(an_v), Some(ac_v)) = (an_info, ac_info) {
            counts.an = an_v
                .first()
                .cloned()
                .flatten()
                .and_then(|s| s.parse().ok())
                .unwrap_or(0);
            for (i, v) in ac_v.iter().enumerate().take(site.n_alleles) {
                counts.ac[i + 1] = v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
            }
        }
        Ok(counts)
    }

    /// Reads every sample's GT into `calls` and counts the called alleles; false when the
    /// record has no GT.
    fn read_calls(
        &self,
        record: &vcf::Record,
        site: &Site<'_>,
        calls: &mut [Vec<Option<usize>>],
        counts: &mut AlleleCounts,
    ) -> std::result::Result<bool, Stop> {
        let (n, at, n_samples) = (site.n, site.at(), calls.len());
        let samples = record.samples();
        let columns = samples.iter().count();
        if columns != n_samples {
            return Err(self.record_err(
                n,
                at,
                format!("{columns} sample columns, the header names {n_samples} samples"),
            ));
        }
        let Some(series) = samples.select("GT") else {
            return Ok(false);
        };
        for (s, value) in series.iter(self.header).enumerate() {
            let value = value.map_err(|e| self.record_err(n, at, format!("bad GT: {e}")))?;
            let Some(SampleValue::Genotype(gt)) = value else {
                continue;
            };
            for allele in gt.iter() {
                let (index, _) =
                    allele.map_err(|e| self.record_err(n, at, format!("bad GT: {e}")))?;
                if let Some(i) = index {
                    if i > site.n_alleles {
                        return Err(self.record_err(
                            n,
                            at,
                            format!(
                                "GT allele {i} but the record has {} ALT alleles",
                                site.n_alleles
                            ),
                        ));
                    }
                    counts.an += 1;
                    counts.ac[i] += 1;
                }
                calls[s].push(index);
            }
        }
        Ok(true)
    }

    /// A `variant` row per ALT allele of the site, and a `genotype` row per sample carrying it.
    fn add_rows(
        &self,
        record: &vcf::Record,
        site: Site<'_>,
        calls: &[Vec<Option<usize>>],
        counts: &AlleleCounts,
        out: &mut Output,
    ) -> std::result::Result<(), Stop> {
        let vid_prefix = vid_contig(site.chrom);
        let (n, at) = (site.n, site.at());
        let (position, reference) = (site.position, site.reference);
        for (index, alt) in site.alts {
            let (gene_symbol, consequence) = annotate(
                record,
                self.header,
                self.annotations,
                &alt,
                index - 1,
                site.n_alleles,
            )
            .map_err(|e| self.record_err(n, at, format!("bad INFO: {e}")))?;
            let vid: Arc<str> = Arc::from(format!("{vid_prefix}-{position}-{reference}-{alt}"));
            for (s, call) in calls.iter().enumerate() {
                if call.contains(&Some(index)) {
                    out.genotypes.push(GenotypeRow {
                        person_id: self.persons[s],
                        vid: vid.clone(),
                        contig: site.contig.clone(),
                        position,
                        gt: relative_gt(call, index),
                    });
                }
            }
            out.variants.push(VariantRow {
                contig: site.contig.clone(),
                position,
                vid,
                ref_allele: reference.to_string(),
                alt_allele: alt,
                gene_symbol,
                consequence,
                dbsnp_rsid: site.rsid.clone(),
                ac: counts.ac[index],
                an: counts.an,
            });
        }
        Ok(())
    }
}

/// One VCF record's site: where it is and its variant alleles.
struct Site<'r> {
    /// The record's number in the file (1-based), for error messages.
    n: u64,
    /// CHROM as written; `contig` is the same text, shared by the site's rows.
    chrom: &'r str,
    contig: Arc<str>,
    position: i64,
    reference: &'r str,
    /// `(allele index, ALT)` of the variant alleles (gVCF placeholders left out).
    alts: Vec<(usize, String)>,
    /// ALT alleles of the record, placeholders included (GT indexes count them).
    n_alleles: usize,
    rsid: Option<String>,
}

impl<'r> Site<'r> {
    fn at(&self) -> Option<(&'r str, i64)> {
        Some((self.chrom, self.position))
    }
}

/// Called alleles of a site (AN) and copies of each allele index among them (AC).
struct AlleleCounts {
    an: i64,
    ac: Vec<i64>,
}

/// The two tables being written, and the rows not yet written.
struct Output {
    variants_out: TableWriter,
    genotypes_out: TableWriter,
    variants: Vec<VariantRow>,
    genotypes: Vec<GenotypeRow>,
    /// Whether rows are held until the end, to be sorted (the VCF is out of order).
    sort_in_memory: bool,
}

impl Output {
    fn open(dataset: &DatasetWriter, sort_in_memory: bool) -> Result<Self> {
        let table = |name: &str, schema: SchemaRef| {
            dataset.table(TableSpec::standard(name, &schema), schema)
        };
        Ok(Output {
            variants_out: table(Variant::NAME, Variant::schema())?,
            genotypes_out: table(Genotype::NAME, Genotype::schema())?,
            variants: Vec::new(),
            genotypes: Vec::new(),
            sort_in_memory,
        })
    }

    /// Streaming mode: writes a table's rows once a batch is full.
    fn flush_full(&mut self) -> Result<()> {
        if self.sort_in_memory {
            return Ok(());
        }
        if self.variants.len() >= BATCH_ROWS {
            self.variants_out.write(&variant_batch(&self.variants)?)?;
            self.variants.clear();
        }
        if self.genotypes.len() >= BATCH_ROWS {
            self.genotypes_out
                .write(&genotype_batch(&self.genotypes)?)?;
            self.genotypes.clear();
        }
        Ok(())
    }

    /// Writes the rows left (sorted by position within each contig when held in memory).
    fn finish(mut self) -> Result<(FinishedTable, FinishedTable)> {
        if self.sort_in_memory {
            // Stable: records at one position keep their file order.
            self.variants
                .sort_by(|a, b| a.contig.cmp(&b.contig).then(a.position.cmp(&b.position)));
            self.genotypes
                .sort_by(|a, b| a.contig.cmp(&b.contig).then(a.position.cmp(&b.position)));
        }
        for chunk in self.variants.chunks(BATCH_ROWS) {
            self.variants_out.write(&variant_batch(chunk)?)?;
        }
        for chunk in self.genotypes.chunks(BATCH_ROWS) {
            self.genotypes_out.write(&genotype_batch(chunk)?)?;
        }
        Ok((self.variants_out.finish()?, self.genotypes_out.finish()?))
    }
}

#[cfg(test)]
mod tests {
    use super::annotations::vep_allele;
    use super::*;
    use arrow::array::{Array, AsArray, RecordBatch};
    use arrow::datatypes::{Float64Type, Int64Type};
    use noodles::bgzf;
    use std::collections::HashSet;
    use std::fs::File;
    use std::io::Write;
    use std::path::Path;

    const VCF: &str = "##fileformat=VCFv4.2
##contig=<ID=chr22>
##INFO=<ID=GENE,Number=1,Type=String,Description=\"Gene\">
##FORMAT=<ID=GT,Number=1,Type=String,Description=\"Genotype\">
##FORMAT=<ID=DP,Number=1,Type=Integer,Description=\"Depth\">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\tS3\tS4
chr22\t100\trs1\tC\tT\t50\tPASS\tGENE=APOL1\tGT:DP\t0/1:3\t1/1:4\t./.:0\t0/0:9
chr22\t200\t.\tG\tA,GT\t50\tPASS\t.\tGT\t1/2\t2/2\t0/1\t./1
chr22\t300\tesv9\tT\t<NON_REF>\t.\t.\t.\tGT\t0/0\t0/0\t0/0\t0/0
chr22\t400\t.\tA\tG\t.\t.\t.\tGT\t.\t0|1\t1\t0/0
";

    fn bgzip(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        let mut w = bgzf::io::Writer::new(File::create(&path).unwrap());
        w.write_all(text.as_bytes()).unwrap();
        w.finish().unwrap();
        path
    }

    fn empty_dataset(dir: &Path) -> PathBuf {
        let ds = dir.join("ds");
        DatasetWriter::create(&ds, "t", "test", 2)
            .unwrap()
            .finish()
            .unwrap();
        ds
    }

    fn read(ds: &Path, table: &str) -> Vec<RecordBatch> {
        let mut out = Vec::new();
        let mut dirs: Vec<_> = std::fs::read_dir(ds.join(table))
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        dirs.sort();
        for d in dirs {
            let f = File::open(d.join("part-0.parquet")).unwrap();
            let r = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(f)
                .unwrap()
                .build()
                .unwrap();
            out.extend(r.map(|b| b.unwrap()));
        }
        out
    }

    fn opts(from: &Path, ds: &Path) -> VcfImportOptions {
        VcfImportOptions {
            from: from.to_path_buf(),
            dataset: ds.to_path_buf(),
            samples: None,
            progress: false,
        }
    }

    #[test]
    fn splits_alleles_and_counts_calls() {
        let tmp = tempfile::tempdir().unwrap();
        let vcf = bgzip(tmp.path(), "t.vcf.gz", VCF);
        let ds = empty_dataset(tmp.path());
        let summary = import_vcf(&opts(&vcf, &ds)).unwrap();
        assert_eq!(summary.variants, 4);
        let v = read(&ds, "variant");
        assert_eq!(v.len(), 1);
        let v = &v[0];
        let vid: Vec<&str> = v.column(0).as_string::<i32>().iter().flatten().collect();
        assert_eq!(
            vid,
            vec!["22-100-C-T", "22-200-G-A", "22-200-G-GT", "22-400-A-G"]
        );
        let ac: Vec<i64> = v.column(9).as_primitive::<Int64Type>().values().to_vec();
        let an: Vec<i64> = v.column(10).as_primitive::<Int64Type>().values().to_vec();
        // 100: 0/1 1/1 ./. 0/0 → AC 3 of AN 6. 200: 1/2 2/2 0/1 ./1 → AN 7, A: 1+1+1, GT: 1+2.
        // 400: . 0|1 1 0/0 → AN 5, AC 2.
        assert_eq!(ac, vec![3, 3, 3, 2]);
        assert_eq!(an, vec![6, 7, 7, 5]);
        let af = v.column(11).as_primitive::<Float64Type>();
        assert!((af.value(0) - 0.5).abs() < 1e-12);
        assert_eq!(v.column(1).as_string::<i32>().value(0), "chr22");
        assert_eq!(v.column(5).as_string::<i32>().value(0), "APOL1");
        assert!(v.column(5).is_null(1));
        assert_eq!(v.column(7).as_string::<i32>().value(0), "rs1");
        assert!(v.column(7).is_null(1));
        assert!(v.column(8).is_null(0));

        let g = read(&ds, "genotype");
        let g = &g[0];
        let rows: Vec<(i64, String, String)> = (0..g.num_rows())
            .map(|i| {
                (
                    g.column(0).as_primitive::<Int64Type>().value(i),
                    g.column(1).as_string::<i32>().value(i).to_string(),
                    g.column(4).as_string::<i32>().value(i).to_string(),
                )
            })
            .collect();
        let expect = [
            (1, "22-100-C-T", "0/1"),
            (2, "22-100-C-T", "1/1"),
            (1, "22-200-G-A", "0/1"),
            (3, "22-200-G-A", "0/1"),
            (4, "22-200-G-A", "./1"),
            (1, "22-200-G-GT", "0/1"),
            (2, "22-200-G-GT", "1/1"),
            (2, "22-400-A-G", "0/1"),
            (3, "22-400-A-G", "1"),
        ];
        let expect: Vec<(i64, String, String)> = expect
            .iter()
            .map(|(p, v, gt)| (*p, v.to_string(), gt.to_string()))
            .collect();
        assert_eq!(rows, expect);
        assert!(ds.join("genotype/contig=chr22/part-0.parquet").exists());
        let catalog = strata_engine::Catalog::load(&ds).unwrap();
        assert_eq!(catalog.tables["variant"].rows, 4);
        assert_eq!(catalog.tables["genotype"].rows, 9);
        assert_eq!(
            catalog.tables["genotype"].tier,
            strata_engine::Tier::Controlled
        );

        // Importing again replaces the tables.
        import_vcf(&opts(&vcf, &ds)).unwrap();
        assert_eq!(read(&ds, "variant")[0].num_rows(), 4);
    }

    #[test]
    fn unsorted_input_is_sorted_and_samples_mapped() {
        let tmp = tempfile::tempdir().unwrap();
        let text = VCF.replace("chr22\t100\t", "chr22\t900\t");
        let vcf = bgzip(tmp.path(), "t.vcf.gz", &text);
        let ds = empty_dataset(tmp.path());
        let map = tmp.path().join("map.csv");
        std::fs::write(
            &map,
            "sample,person_id\nS1,11\nS2,12\nS3,13\nS4,14\nS5,15\n",
        )
        .unwrap();
        let mut o = opts(&vcf, &ds);
        o.samples = Some(map);
        import_vcf(&o).unwrap();
        let v = &read(&ds, "variant")[0];
        let pos: Vec<i64> = v.column(2).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!(pos, vec![200, 200, 400, 900]);
        let g = &read(&ds, "genotype")[0];
        let pos: Vec<i64> = g.column(3).as_primitive::<Int64Type>().values().to_vec();
        assert!(pos.windows(2).all(|w| w[0] <= w[1]));
        let persons: HashSet<i64> = g
            .column(0)
            .as_primitive::<Int64Type>()
            .values()
            .iter()
            .copied()
            .collect();
        assert_eq!(persons, HashSet::from([11, 12, 13, 14]));
    }

    fn assert_untouched(ds: &Path) {
        let names: Vec<String> = std::fs::read_dir(ds)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().to_string())
            .collect();
        assert_eq!(names, vec!["catalog.toml".to_string()], "dataset changed");
    }

    #[test]
    fn bad_inputs_are_one_line_errors() {
        let tmp = tempfile::tempdir().unwrap();
        let ds = empty_dataset(tmp.path());
        let check = |o: &VcfImportOptions, needle: &str| {
            let e = import_vcf(o).unwrap_err().to_string();
            assert!(e.contains(needle) && !e.contains('\n'), "{e}");
            assert_untouched(&ds);
        };
        check(
            &opts(&tmp.path().join("missing.vcf.gz"), &ds),
            "no such file",
        );
        let plain = tmp.path().join("plain.vcf.gz");
        std::fs::write(&plain, VCF).unwrap();
        check(&opts(&plain, &ds), "not bgzip");
        let good = bgzip(tmp.path(), "good.vcf.gz", VCF);
        check(
            &opts(&good, &tmp.path().join("nods")),
            "not a Strata dataset",
        );
        let bad = bgzip(
            tmp.path(),
            "bad.vcf.gz",
            &VCF.replace("chr22\t200\t", "chr22\tabc\t"),
        );
        check(&opts(&bad, &ds), "record 2");
        let bad = bgzip(
            tmp.path(),
            "bad2.vcf.gz",
            &VCF.replace("0/1:3\t1/1:4", "0/1:3"),
        );
        check(&opts(&bad, &ds), "sample columns");
        let bad = bgzip(
            tmp.path(),
            "bad3.vcf.gz",
            &VCF.replace("1/2\t2/2", "1/3\t2/2"),
        );
        check(&opts(&bad, &ds), "GT allele 3");
        let notvcf = bgzip(tmp.path(), "notvcf.vcf.gz", "hello\n");
        check(&opts(&notvcf, &ds), "invalid VCF header");
        let map = tmp.path().join("map.csv");
        std::fs::write(&map, "sample,person_id\nS1,1\nS2,2\nS3,3\n").unwrap();
        let mut o = opts(&good, &ds);
        o.samples = Some(map.clone());
        check(&o, "sample S4");
        std::fs::write(&map, "name,id\nS1,1\n").unwrap();
        check(&o, "sample,person_id");
    }

    #[test]
    fn annotations_and_sites_only_counts() {
        let text = "##fileformat=VCFv4.2
##INFO=<ID=ANN,Number=.,Type=String,Description=\"Functional annotations: 'Allele | Annotation | Annotation_Impact | Gene_Name'\">
##INFO=<ID=CSQ,Number=.,Type=String,Description=\"Consequence annotations from Ensembl VEP. Format: Allele|Consequence|IMPACT|SYMBOL\">
##INFO=<ID=GENEINFO,Number=1,Type=String,Description=\"Gene\">
##INFO=<ID=AC,Number=A,Type=Integer,Description=\"Allele count\">
##INFO=<ID=AN,Number=1,Type=Integer,Description=\"Allele number\">
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
chr1\t10\trs5;rs6\tA\tG,T\t.\t.\tANN=G|missense_variant|MODERATE|BRCA2,T|synonymous_variant|LOW|BRCA2;AC=3,1;AN=10
chr1\t20\tCOSV1;rs7\tGA\tG\t.\t.\tCSQ=-|frameshift_variant|HIGH|TP53
chr1\t30\t.\tC\tT\t.\t.\tGENEINFO=APOE:348|X:1
";
        let tmp = tempfile::tempdir().unwrap();
        let vcf = bgzip(tmp.path(), "a.vcf.gz", text);
        let ds = empty_dataset(tmp.path());
        let s = import_vcf(&opts(&vcf, &ds)).unwrap();
        assert_eq!((s.variants, s.genotypes), (4, 0));
        let v = &read(&ds, "variant")[0];
        let col = |i: usize| -> Vec<Option<String>> {
            v.column(i)
                .as_string::<i32>()
                .iter()
                .map(|x| x.map(str::to_string))
                .collect()
        };
        let some = |xs: &[&str]| {
            xs.iter()
                .map(|x| (!x.is_empty()).then(|| x.to_string()))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            col(0),
            some(&["1-10-A-G", "1-10-A-T", "1-20-GA-G", "1-30-C-T"])
        );
        assert_eq!(col(5), some(&["BRCA2", "BRCA2", "TP53", "APOE"]));
        assert_eq!(
            col(6),
            some(&[
                "missense_variant",
                "synonymous_variant",
                "frameshift_variant",
                ""
            ])
        );
        assert_eq!(col(7), some(&["rs5", "rs5", "rs7", ""]));
        let ac: Vec<i64> = v.column(9).as_primitive::<Int64Type>().values().to_vec();
        let an: Vec<i64> = v.column(10).as_primitive::<Int64Type>().values().to_vec();
        assert_eq!((ac, an), (vec![3, 1, 0, 0], vec![10, 10, 0, 0]));
        assert!(v.column(11).is_null(2));
    }

    #[test]
    fn relative_genotypes() {
        assert_eq!(relative_gt(&[Some(0), Some(1)], 1), "0/1");
        assert_eq!(relative_gt(&[Some(1), Some(0)], 1), "0/1");
        assert_eq!(relative_gt(&[Some(2), Some(2)], 2), "1/1");
        assert_eq!(relative_gt(&[Some(1), Some(2)], 2), "0/1");
        assert_eq!(relative_gt(&[Some(1), None], 1), "./1");
        assert_eq!(relative_gt(&[Some(1)], 1), "1");
        assert_eq!(vid_contig("chr22"), "22");
        assert_eq!(vid_contig("22"), "22");
        assert_eq!(vep_allele("GA", "G"), "-");
        assert_eq!(vep_allele("G", "GT"), "T");
        assert_eq!(vep_allele("C", "T"), "T");
    }

    #[test]
    fn real_slice_if_present() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../shared/data/vcf/chr22_1kg_slice.vcf.gz");
        if !path.exists() {
            return;
        }
        let tmp = tempfile::tempdir().unwrap();
        let ds = empty_dataset(tmp.path());
        let s = import_vcf(&opts(&path, &ds)).unwrap();
        assert!(s.variants >= 100, "{s:?}");
        assert!(s.genotypes > 0);
    }
}
