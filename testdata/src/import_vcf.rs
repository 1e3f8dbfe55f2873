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

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, Int64Array, RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use indicatif::{ProgressBar, ProgressStyle};
use noodles::bgzf;
use noodles::vcf;
use noodles::vcf::variant::record::info::field::Value as InfoValue;
use noodles::vcf::variant::record::info::field::value::Array as InfoArray;
use noodles::vcf::variant::record::samples::Series as _;
use noodles::vcf::variant::record::samples::series::Value as SampleValue;
use noodles::vcf::variant::record::{AlternateBases as _, Ids as _};
use strata_engine::error::first_line;
use strata_engine::writer::{DatasetWriter, TableSpec};

use crate::error::{Result, TestdataError};

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

pub fn variant_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("vid", DataType::Utf8, false),
        Field::new("contig", DataType::Utf8, false),
        Field::new("position", DataType::Int64, false),
        Field::new("ref_allele", DataType::Utf8, false),
        Field::new("alt_allele", DataType::Utf8, false),
        Field::new("gene_symbol", DataType::Utf8, true),
        Field::new("consequence", DataType::Utf8, true),
        Field::new("dbsnp_rsid", DataType::Utf8, true),
        Field::new("clinvar_classification", DataType::Utf8, true),
        Field::new("gvs_all_ac", DataType::Int64, false),
        Field::new("gvs_all_an", DataType::Int64, false),
        Field::new("gvs_all_af", DataType::Float64, true),
    ]))
}

pub fn genotype_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("person_id", DataType::Int64, false),
        Field::new("vid", DataType::Utf8, false),
        Field::new("contig", DataType::Utf8, false),
        Field::new("position", DataType::Int64, false),
        Field::new("gt", DataType::Utf8, false),
    ]))
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

fn input_err(msg: impl Into<String>) -> TestdataError {
    TestdataError::Input(msg.into())
}

type VcfReader = vcf::io::Reader<bgzf::io::Reader<File>>;

/// Opens a bgzipped VCF and reads its header, with a clear word for the usual mistakes.
fn open(path: &Path) -> Result<(VcfReader, vcf::Header)> {
    if path.is_dir() {
        return Err(input_err(format!(
            "{}: is a folder, not a .vcf.gz file",
            path.display()
        )));
    }
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => input_err(format!("{}: no such file", path.display())),
        _ => TestdataError::io(path, e),
    })?;
    let mut magic = [0u8; 18];
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(TestdataError::io(path, e)),
        }
    }
    if n == 0 {
        return Err(input_err(format!("{}: empty file", path.display())));
    }
    if n < 2 || magic[..2] != [0x1f, 0x8b] {
        return Err(input_err(format!(
            "{}: not bgzip-compressed (expected a .vcf.gz written by bgzip)",
            path.display()
        )));
    }
    // BGZF: a gzip member with the FEXTRA flag and a `BC` subfield holding the block size.
    if n < 18 || magic[3] & 0x04 == 0 || &magic[12..14] != b"BC" {
        return Err(input_err(format!(
            "{}: gzip-compressed but not BGZF; recompress it with bgzip",
            path.display()
        )));
    }
    file.seek(SeekFrom::Start(0))
        .map_err(|e| TestdataError::io(path, e))?;
    let mut reader = vcf::io::Reader::new(bgzf::io::Reader::new(file));
    let header = reader.read_header().map_err(|e| {
        input_err(format!(
            "{}: invalid VCF header: {}",
            path.display(),
            first_line(&e.to_string())
        ))
    })?;
    Ok((reader, header))
}

/// `sample,person_id` CSV → map.
fn read_sample_map(path: &Path) -> Result<HashMap<String, i64>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => input_err(format!("{}: no such file", path.display())),
        std::io::ErrorKind::InvalidData => input_err(format!("{}: not UTF-8 text", path.display())),
        _ => TestdataError::io(path, e),
    })?;
    let unquote = |s: &str| s.trim().trim_matches('"').trim().to_string();
    let mut lines = text
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty());
    let header: Vec<String> = match lines.next() {
        Some((_, l)) => l
            .trim_start_matches('\u{feff}')
            .split(',')
            .map(|s| unquote(s).to_lowercase())
            .collect(),
        None => {
            return Err(input_err(format!(
                "{}: empty file (expected a sample,person_id header)",
                path.display()
            )));
        }
    };
    if header != ["sample", "person_id"] {
        return Err(input_err(format!(
            "{}: the header must be sample,person_id (found {})",
            path.display(),
            header.join(",")
        )));
    }
    let mut map = HashMap::new();
    for (i, line) in lines {
        let fields: Vec<String> = line.split(',').map(unquote).collect();
        let [sample, pid] = fields.as_slice() else {
            return Err(input_err(format!(
                "{}: line {}: expected two fields, sample,person_id",
                path.display(),
                i + 1
            )));
        };
        if sample.is_empty() {
            return Err(input_err(format!(
                "{}: line {}: empty sample name",
                path.display(),
                i + 1
            )));
        }
        let pid: i64 = pid.parse().map_err(|_| {
            input_err(format!(
                "{}: line {}: person_id {pid:?} is not an integer",
                path.display(),
                i + 1
            ))
        })?;
        if map.insert(sample.clone(), pid).is_some() {
            return Err(input_err(format!(
                "{}: line {}: sample {sample} listed twice",
                path.display(),
                i + 1
            )));
        }
    }
    Ok(map)
}

fn person_ids(
    vcf_path: &Path,
    header: &vcf::Header,
    map: Option<&HashMap<String, i64>>,
    map_path: Option<&Path>,
) -> Result<Vec<i64>> {
    let names = header.sample_names();
    let Some(map) = map else {
        return Ok((1..=names.len() as i64).collect());
    };
    let map_path = map_path
        .map(|p| p.display().to_string())
        .unwrap_or_default();
    let mut out = Vec::with_capacity(names.len());
    let mut seen = HashSet::new();
    for name in names {
        let Some(&pid) = map.get(name) else {
            return Err(input_err(format!(
                "{map_path}: sample {name} of {} has no person_id",
                vcf_path.display()
            )));
        };
        if !seen.insert(pid) {
            return Err(input_err(format!(
                "{map_path}: two samples of {} map to person_id {pid} (one is {name})",
                vcf_path.display()
            )));
        }
        out.push(pid);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Annotations from INFO

/// Where the gene symbol and consequence live in this VCF's INFO.
#[derive(Debug, Default)]
struct Annotations {
    /// VEP `CSQ` field positions (from the header's `Format: Allele|Consequence|…`).
    csq_allele: Option<usize>,
    csq_symbol: Option<usize>,
    csq_consequence: Option<usize>,
    has_csq: bool,
    has_ann: bool,
}

const GENE_KEYS: &[&str] = &[
    "GENE",
    "Gene",
    "GENE_SYMBOL",
    "GENESYMBOL",
    "SYMBOL",
    "Gene.refGene",
    "GENEINFO",
];
const CONSEQUENCE_KEYS: &[&str] = &["CONSEQUENCE", "Consequence", "consequence"];

impl Annotations {
    fn from_header(header: &vcf::Header) -> Self {
        let mut a = Annotations {
            has_ann: header.infos().contains_key("ANN"),
            ..Default::default()
        };
        if let Some(csq) = header.infos().get("CSQ") {
            a.has_csq = true;
            let desc = csq.description();
            if let Some(i) = desc.find("Format:") {
                let fields: Vec<&str> = desc[i + "Format:".len()..]
                    .trim()
                    .trim_end_matches('"')
                    .split('|')
                    .map(str::trim)
                    .collect();
                let find = |name: &str| fields.iter().position(|f| *f == name);
                a.csq_allele = find("Allele");
                a.csq_symbol = find("SYMBOL");
                a.csq_consequence = find("Consequence");
            }
        }
        a
    }
}

/// An INFO field's values as text (one for a scalar, several for an array), or None if absent.
fn info_strings(
    info: &vcf::record::Info<'_>,
    header: &vcf::Header,
    key: &str,
) -> std::io::Result<Option<Vec<Option<String>>>> {
    let Some(value) = info.get(header, key).transpose()? else {
        return Ok(None);
    };
    let Some(value) = value else {
        return Ok(Some(vec![None]));
    };
    Ok(Some(match value {
        InfoValue::Integer(n) => vec![Some(n.to_string())],
        InfoValue::Float(n) => vec![Some(n.to_string())],
        InfoValue::Flag => vec![None],
        InfoValue::Character(c) => vec![Some(c.to_string())],
        InfoValue::String(s) => vec![Some(s.into_owned())],
        InfoValue::Array(InfoArray::Integer(v)) => v
            .iter()
            .map(|x| x.map(|x| x.map(|n| n.to_string())))
            .collect::<std::io::Result<_>>()?,
        InfoValue::Array(InfoArray::Float(v)) => v
            .iter()
            .map(|x| x.map(|x| x.map(|n| n.to_string())))
            .collect::<std::io::Result<_>>()?,
        InfoValue::Array(InfoArray::Character(v)) => v
            .iter()
            .map(|x| x.map(|x| x.map(|c| c.to_string())))
            .collect::<std::io::Result<_>>()?,
        InfoValue::Array(InfoArray::String(v)) => v
            .iter()
            .map(|x| x.map(|x| x.map(|s| s.into_owned())))
            .collect::<std::io::Result<_>>()?,
    }))
}

/// The value for ALT number `alt_index` (0-based) of a field that may be per-allele.
fn per_allele(values: &[Option<String>], alt_index: usize, n_alts: usize) -> Option<String> {
    let v = if values.len() == n_alts && n_alts > 1 {
        values.get(alt_index)
    } else {
        values.first()
    };
    v.cloned().flatten().filter(|s| !s.is_empty())
}

/// VEP writes an indel's allele without the base it shares with REF (`-` when nothing is left).
fn vep_allele(reference: &str, alt: &str) -> String {
    if !reference.is_empty()
        && !alt.is_empty()
        && reference.as_bytes()[0] == alt.as_bytes()[0]
        && (reference.len() > 1 || alt.len() > 1)
    {
        let rest = &alt[1..];
        if rest.is_empty() {
            "-".to_string()
        } else {
            rest.to_string()
        }
    } else {
        alt.to_string()
    }
}

fn annotate(
    record: &vcf::Record,
    header: &vcf::Header,
    ann: &Annotations,
    alt: &str,
    alt_index: usize,
    n_alts: usize,
) -> std::io::Result<(Option<String>, Option<String>)> {
    let info = record.info();
    let mut gene = None;
    for key in GENE_KEYS {
        if let Some(values) = info_strings(&info, header, key)? {
            gene = per_allele(&values, alt_index, n_alts).map(|g| {
                // GENEINFO=SYMBOL:ID|SYMBOL2:ID2
                g.split(['|', ':']).next().unwrap_or_default().to_string()
            });
            if gene.is_some() {
                break;
            }
        }
    }
    let mut consequence = None;
    for key in CONSEQUENCE_KEYS {
        if let Some(values) = info_strings(&info, header, key)? {
            consequence = per_allele(&values, alt_index, n_alts);
            if consequence.is_some() {
                break;
            }
        }
    }
    let split = |entries: Vec<Option<String>>| -> Vec<Vec<String>> {
        entries
            .into_iter()
            .flatten()
            .map(|e| e.split('|').map(str::to_string).collect())
            .collect()
    };
    let only = |entries: &[Vec<String>]| {
        if n_alts == 1 {
            entries.first().cloned()
        } else {
            None
        }
    };
    if (gene.is_none() || consequence.is_none())
        && ann.has_ann
        && let Some(entries) = info_strings(&info, header, "ANN")?
    {
        // SnpEff: Allele | Annotation | Impact | Gene_Name | …
        let entries = split(entries);
        let pick = entries
            .iter()
            .find(|e| e.first().is_some_and(|a| a == alt))
            .cloned();
        if let Some(e) = pick.or_else(|| only(&entries)) {
            let field = |i: usize| e.get(i).filter(|s| !s.is_empty()).cloned();
            consequence = consequence.or_else(|| field(1));
            gene = gene.or_else(|| field(3));
        }
    }
    if (gene.is_none() || consequence.is_none())
        && ann.has_csq
        && let Some(entries) = info_strings(&info, header, "CSQ")?
    {
        // VEP: the fields the header's `Format:` names.
        let entries = split(entries);
        let vep = vep_allele(record.reference_bases(), alt);
        let pick = ann.csq_allele.and_then(|i| {
            entries
                .iter()
                .find(|e| e.get(i).is_some_and(|a| a == alt || *a == vep))
                .cloned()
        });
        if let Some(e) = pick.or_else(|| only(&entries)) {
            let field =
                |i: Option<usize>| i.and_then(|i| e.get(i)).filter(|s| !s.is_empty()).cloned();
            consequence = consequence.or_else(|| field(ann.csq_consequence));
            gene = gene.or_else(|| field(ann.csq_symbol));
        }
    }
    Ok((gene, consequence))
}

// ---------------------------------------------------------------------------------------------
// Rows

struct VariantRow {
    contig: Arc<str>,
    position: i64,
    vid: Arc<str>,
    ref_allele: String,
    alt_allele: String,
    gene_symbol: Option<String>,
    consequence: Option<String>,
    dbsnp_rsid: Option<String>,
    ac: i64,
    an: i64,
}

struct GenotypeRow {
    person_id: i64,
    vid: Arc<str>,
    contig: Arc<str>,
    position: i64,
    gt: String,
}

fn variant_batch(rows: &[VariantRow]) -> Result<RecordBatch> {
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
    Ok(RecordBatch::try_new(variant_schema(), columns)?)
}

fn genotype_batch(rows: &[GenotypeRow]) -> Result<RecordBatch> {
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
    Ok(RecordBatch::try_new(genotype_schema(), columns)?)
}

/// `vid` prefix: the contig without a leading `chr`.
fn vid_contig(contig: &str) -> &str {
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
fn relative_gt(call: &[Option<usize>], allele: usize) -> String {
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

// ---------------------------------------------------------------------------------------------
// The import

enum Stop {
    /// A record came before its predecessor on the same contig (streaming mode only).
    Unsorted,
    Failed(TestdataError),
}

impl From<TestdataError> for Stop {
    fn from(e: TestdataError) -> Self {
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

    fn run(
        &self,
        mut reader: VcfReader,
        sort_in_memory: bool,
    ) -> std::result::Result<VcfSummary, Stop> {
        let mut dataset = DatasetWriter::amend(&self.opts.dataset)?;
        let vschema = variant_schema();
        let gschema = genotype_schema();
        let mut variants_out =
            dataset.table(TableSpec::standard("variant", &vschema), vschema.clone())?;
        let mut genotypes_out =
            dataset.table(TableSpec::standard("genotype", &gschema), gschema.clone())?;

        let mut variants: Vec<VariantRow> = Vec::new();
        let mut genotypes: Vec<GenotypeRow> = Vec::new();
        let mut last_position: HashMap<Arc<str>, i64> = HashMap::new();
        let n_samples = self.header.sample_names().len();
        let mut calls: Vec<Vec<Option<usize>>> = vec![Vec::new(); n_samples];
        let mut record = vcf::Record::default();
        let mut n: u64 = 0;
        loop {
            match reader.read_record(&mut record) {
                Ok(0) => break,
                Ok(_) => n += 1,
                Err(e) => return Err(self.record_err(n + 1, None, e)),
            }
            self.bar.inc(1);
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
            let mut alts: Vec<(usize, &str)> = Vec::new();
            for (i, alt) in alternate_bases.iter().enumerate() {
                let alt = alt.map_err(|e| self.record_err(n, at, e))?;
                if alt.is_empty() || alt == "." {
                    return Err(self.record_err(n, at, "empty ALT allele"));
                }
                if alt != "<NON_REF>" && alt != "<*>" {
                    alts.push((i + 1, alt));
                }
            }
            let n_alleles = alternate_bases.iter().count();
            if alts.is_empty() {
                continue;
            }
            let rsid = record
                .ids()
                .iter()
                .find(|id| id.starts_with("rs"))
                .map(str::to_string);

            // Calls: one allele list per sample, from GT.
            let mut an: i64 = 0;
            let mut ac: Vec<i64> = vec![0; n_alleles + 1];
            let mut have_calls = false;
            if n_samples > 0 {
                let samples = record.samples();
                let columns = samples.iter().count();
                if columns != n_samples {
                    return Err(self.record_err(
                        n,
                        at,
                        format!("{columns} sample columns, the header names {n_samples} samples"),
                    ));
                }
                for c in calls.iter_mut() {
                    c.clear();
                }
                if let Some(series) = samples.select("GT") {
                    have_calls = true;
                    for (s, value) in series.iter(self.header).enumerate() {
                        let value =
                            value.map_err(|e| self.record_err(n, at, format!("bad GT: {e}")))?;
                        let Some(SampleValue::Genotype(gt)) = value else {
                            continue;
                        };
                        for allele in gt.iter() {
                            let (index, _) = allele
                                .map_err(|e| self.record_err(n, at, format!("bad GT: {e}")))?;
                            if let Some(i) = index {
                                if i > n_alleles {
                                    return Err(self.record_err(
                                        n,
                                        at,
                                        format!("GT allele {i} but the record has {n_alleles} ALT alleles"),
                                    ));
                                }
                                an += 1;
                                ac[i] += 1;
                            }
                            calls[s].push(index);
                        }
                    }
                }
            }
            if !have_calls {
                // Sites-only VCF: the counts the caller wrote, if any.
                let info = record.info();
                let an_info = info_strings(&info, self.header, "AN")
                    .map_err(|e| self.record_err(n, at, e))?;
                let ac_info = info_strings(&info, self.header, "AC")
                    .map_err(|e| self.record_err(n, at, e))?;
                if let (Some(an_v), Some(ac_v)) = (an_info, ac_info) {
                    an = an_v
                        .first()
                        .cloned()
                        .flatten()
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(0);
                    for (i, v) in ac_v.iter().enumerate().take(n_alleles) {
                        ac[i + 1] = v.as_deref().and_then(|s| s.parse().ok()).unwrap_or(0);
                    }
                }
            }

            let vid_prefix = vid_contig(chrom);
            for &(index, alt) in &alts {
                let (gene_symbol, consequence) = annotate(
                    &record,
                    self.header,
                    self.annotations,
                    alt,
                    index - 1,
                    n_alleles,
                )
                .map_err(|e| self.record_err(n, at, format!("bad INFO: {e}")))?;
                let vid: Arc<str> = Arc::from(format!("{vid_prefix}-{position}-{reference}-{alt}"));
                for (s, call) in calls.iter().enumerate() {
                    if call.contains(&Some(index)) {
                        genotypes.push(GenotypeRow {
                            person_id: self.persons[s],
                            vid: vid.clone(),
                            contig: contig.clone(),
                            position,
                            gt: relative_gt(call, index),
                        });
                    }
                }
                variants.push(VariantRow {
                    contig: contig.clone(),
                    position,
                    vid,
                    ref_allele: reference.to_string(),
                    alt_allele: alt.to_string(),
                    gene_symbol,
                    consequence,
                    dbsnp_rsid: rsid.clone(),
                    ac: ac[index],
                    an,
                });
            }
            if !sort_in_memory {
                if variants.len() >= BATCH_ROWS {
                    variants_out.write(&variant_batch(&variants)?)?;
                    variants.clear();
                }
                if genotypes.len() >= BATCH_ROWS {
                    genotypes_out.write(&genotype_batch(&genotypes)?)?;
                    genotypes.clear();
                }
            }
        }
        if sort_in_memory {
            // Stable: records at one position keep their file order.
            variants.sort_by(|a, b| a.contig.cmp(&b.contig).then(a.position.cmp(&b.position)));
            genotypes.sort_by(|a, b| a.contig.cmp(&b.contig).then(a.position.cmp(&b.position)));
        }
        for chunk in variants.chunks(BATCH_ROWS) {
            variants_out.write(&variant_batch(chunk)?)?;
        }
        for chunk in genotypes.chunks(BATCH_ROWS) {
            genotypes_out.write(&genotype_batch(chunk)?)?;
        }
        let v = variants_out.finish()?;
        let g = genotypes_out.finish()?;
        let summary = VcfSummary {
            variants: v.entry.rows,
            genotypes: g.entry.rows,
        };
        dataset.add_table(v);
        dataset.add_table(g);
        dataset.finish()?;
        Ok(summary)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Float64Type, Int64Type};
    use std::io::Write;

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
