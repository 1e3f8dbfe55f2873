//! Whole-genome variants and genotypes for the sequenced participants (~20%).
//!
//! Two kinds of variants:
//! - named variants at real GRCh38 positions in real genes (APOE e4/e2, TCF7L2, PCSK9, FTO, HBB,
//!   CFTR F508del, HFE C282Y, F5 Leiden, MTHFR, SLCO1B1, CYP2C19, APOL1 G1, BRCA1/BRCA2 founder
//!   frameshifts, LDLR familial-hypercholesterolemia variants), drawn for every participant with
//!   ancestry-specific allele frequencies and feeding the clinical model (APOE e4 raises
//!   Alzheimer's risk, TCF7L2 type 2 diabetes, LDLR and PCSK9 move LDL cholesterol, BRCA breast
//!   cancer, APOL1 kidney disease, CFTR homozygotes are exactly the planted cystic-fibrosis
//!   participants);
//! - a catalog of random variants inside those genes and between genes, with a realistic
//!   allele-frequency spectrum (most rare, a few common), drawn variant by variant under
//!   Hardy–Weinberg equilibrium.
//!
//! `gvs_all_an` is twice the number of sequenced participants (no missing calls), `gvs_all_ac`
//! the number of alternate alleles among the written calls, `gvs_all_af` their ratio; only
//! variants with at least one alternate allele are listed.

use arrow::array::RecordBatch;

use super::people::Demographics;
use super::rng::{Rand, chance, int_in, pick, rng_for, stream, uniform};
use super::tables::{Genotype, Variant};

/// Contigs and their GRCh38 lengths.
pub const CONTIGS: [(&str, i64); 22] = [
    ("chr1", 248_956_422),
    ("chr2", 242_193_529),
    ("chr3", 198_295_559),
    ("chr4", 190_214_555),
    ("chr5", 181_538_259),
    ("chr6", 170_805_979),
    ("chr7", 159_345_973),
    ("chr8", 145_138_636),
    ("chr9", 138_394_717),
    ("chr10", 133_797_422),
    ("chr11", 135_086_622),
    ("chr12", 133_275_309),
    ("chr13", 114_364_328),
    ("chr14", 107_043_718),
    ("chr15", 101_991_189),
    ("chr16", 90_338_345),
    ("chr17", 83_257_441),
    ("chr18", 80_373_285),
    ("chr19", 58_617_616),
    ("chr20", 64_444_167),
    ("chr21", 46_709_983),
    ("chr22", 50_818_468),
];

/// Genes with approximate GRCh38 spans: `(symbol, contig index, start, end)`.
const GENES: &[(&str, usize, i64, i64)] = &[
    ("MTHFR", 0, 11_785_723, 11_806_455),
    ("PCSK9", 0, 55_039_548, 55_064_852),
    ("F5", 0, 169_511_951, 169_586_630),
    ("HFE", 5, 26_087_281, 26_098_343),
    ("CFTR", 6, 117_480_025, 117_668_665),
    ("CYP2C19", 9, 94_762_681, 94_855_547),
    ("TCF7L2", 9, 112_950_247, 113_167_678),
    ("HBB", 10, 5_225_464, 5_229_395),
    ("SLCO1B1", 11, 21_131_194, 21_239_796),
    ("BRCA2", 12, 32_315_474, 32_400_266),
    ("FTO", 15, 53_701_692, 54_158_512),
    ("BRCA1", 16, 43_044_295, 43_125_483),
    ("LDLR", 18, 11_089_462, 11_133_820),
    ("APOE", 18, 44_905_796, 44_909_393),
    ("APOL1", 21, 36_253_070, 36_267_530),
];

/// A variant drawn per participant (it shapes the clinical model).
pub struct NamedVariant {
    pub gene: &'static str,
    pub contig: usize,
    pub position: i64,
    pub ref_allele: &'static str,
    pub alt_allele: &'static str,
    pub rsid: Option<&'static str>,
    pub consequence: &'static str,
    pub clinvar: Option<&'static str>,
    /// Alternate allele frequency by ancestry: EUR, AFR, AMR, EAS, other.
    pub af: [f64; 5],
}

#[allow(clippy::too_many_arguments)]
const fn nv(
    gene: &'static str,
    contig: usize,
    position: i64,
    ref_allele: &'static str,
    alt_allele: &'static str,
    rsid: Option<&'static str>,
    consequence: &'static str,
    clinvar: Option<&'static str>,
    af: [f64; 5],
) -> NamedVariant {
    NamedVariant {
        gene,
        contig,
        position,
        ref_allele,
        alt_allele,
        rsid,
        consequence,
        clinvar,
        af,
    }
}

pub const APOE_E4: usize = 0;
pub const TCF7L2: usize = 2;
pub const PCSK9_R46L: usize = 3;
pub const FTO: usize = 4;
pub const CFTR_F508DEL: usize = 6;
pub const APOL1_G1: usize = 12;
pub const BRCA: [usize; 3] = [13, 14, 15];
pub const LDLR_FH: [usize; 2] = [16, 17];

pub const NAMED: &[NamedVariant] = &[
    nv(
        "APOE",
        18,
        44_908_684,
        "T",
        "C",
        Some("rs429358"),
        "missense_variant",
        Some("risk factor"),
        [0.15, 0.20, 0.10, 0.09, 0.14],
    ),
    nv(
        "APOE",
        18,
        44_908_822,
        "C",
        "T",
        Some("rs7412"),
        "missense_variant",
        Some("protective"),
        [0.07, 0.10, 0.04, 0.08, 0.07],
    ),
    nv(
        "TCF7L2",
        9,
        112_998_590,
        "C",
        "T",
        Some("rs7903146"),
        "intron_variant",
        Some("risk factor"),
        [0.30, 0.28, 0.22, 0.03, 0.25],
    ),
    nv(
        "PCSK9",
        0,
        55_039_974,
        "G",
        "T",
        Some("rs11591147"),
        "missense_variant",
        Some("protective"),
        [0.02, 0.002, 0.005, 0.0005, 0.01],
    ),
    nv(
        "FTO",
        15,
        53_786_615,
        "T",
        "A",
        Some("rs9939609"),
        "intron_variant",
        None,
        [0.41, 0.45, 0.30, 0.14, 0.35],
    ),
    nv(
        "HBB",
        10,
        5_227_002,
        "T",
        "A",
        Some("rs334"),
        "missense_variant",
        Some("Pathogenic"),
        [0.0005, 0.04, 0.005, 0.0001, 0.01],
    ),
    nv(
        "CFTR",
        6,
        117_559_590,
        "ATCT",
        "A",
        Some("rs113993960"),
        "inframe_deletion",
        Some("Pathogenic"),
        [0.012, 0.002, 0.005, 0.0005, 0.006],
    ),
    nv(
        "HFE",
        5,
        26_092_913,
        "G",
        "A",
        Some("rs1800562"),
        "missense_variant",
        Some("Pathogenic"),
        [0.06, 0.005, 0.015, 0.0005, 0.03],
    ),
    nv(
        "F5",
        0,
        169_549_811,
        "C",
        "T",
        Some("rs6025"),
        "missense_variant",
        Some("Pathogenic"),
        [0.025, 0.003, 0.01, 0.0005, 0.015],
    ),
    nv(
        "MTHFR",
        0,
        11_796_321,
        "G",
        "A",
        Some("rs1801133"),
        "missense_variant",
        Some("Benign"),
        [0.34, 0.10, 0.45, 0.30, 0.30],
    ),
    nv(
        "SLCO1B1",
        11,
        21_178_615,
        "T",
        "C",
        Some("rs4149056"),
        "missense_variant",
        Some("drug response"),
        [0.16, 0.02, 0.12, 0.12, 0.12],
    ),
    nv(
        "CYP2C19",
        9,
        94_781_859,
        "G",
        "A",
        Some("rs4244285"),
        "synonymous_variant",
        Some("drug response"),
        [0.15, 0.18, 0.10, 0.30, 0.15],
    ),
    nv(
        "APOL1",
        21,
        36_265_860,
        "A",
        "G",
        Some("rs73885319"),
        "missense_variant",
        Some("risk factor"),
        [0.0005, 0.23, 0.03, 0.0005, 0.05],
    ),
    nv(
        "BRCA1",
        16,
        43_057_062,
        "T",
        "TG",
        Some("rs80357906"),
        "frameshift_variant",
        Some("Pathogenic"),
        [0.0004, 0.0001, 0.0002, 0.0001, 0.0002],
    ),
    nv(
        "BRCA1",
        16,
        43_124_027,
        "ACT",
        "A",
        Some("rs80357914"),
        "frameshift_variant",
        Some("Pathogenic"),
        [0.0004, 0.0001, 0.0002, 0.0001, 0.0002],
    ),
    nv(
        "BRCA2",
        12,
        32_340_300,
        "GT",
        "G",
        Some("rs80359550"),
        "frameshift_variant",
        Some("Pathogenic"),
        [0.0005, 0.0001, 0.0002, 0.0001, 0.0002],
    ),
    nv(
        "LDLR",
        18,
        11_105_600,
        "G",
        "A",
        None,
        "missense_variant",
        Some("Pathogenic"),
        [0.001, 0.001, 0.001, 0.0008, 0.001],
    ),
    nv(
        "LDLR",
        18,
        11_116_900,
        "C",
        "T",
        None,
        "missense_variant",
        Some("Likely pathogenic"),
        [0.001, 0.0008, 0.001, 0.0008, 0.001],
    ),
];

/// A participant's alternate-allele counts at the named variants.
#[derive(Debug, Clone)]
pub struct Genome {
    pub alt: Vec<u8>,
}

impl Genome {
    pub fn count(&self, v: usize) -> u8 {
        self.alt[v]
    }

    pub fn carries_any(&self, vs: &[usize]) -> bool {
        vs.iter().any(|v| self.alt[*v] > 0)
    }
}

/// Draws the named genotypes of a participant (whether or not they are sequenced).
pub fn person_genome(seed: u64, d: &Demographics, cystic_fibrosis: bool) -> Genome {
    let mut rng = rng_for(seed, stream::GENOME, d.pid as u64);
    let a = d.ancestry().index();
    let mut alt: Vec<u8> = NAMED
        .iter()
        .map(|v| chance(&mut rng, v.af[a]) as u8 + chance(&mut rng, v.af[a]) as u8)
        .collect();
    // CFTR F508del homozygotes have cystic fibrosis: exactly the planted participants.
    if cystic_fibrosis {
        alt[CFTR_F508DEL] = 2;
    } else if alt[CFTR_F508DEL] == 2 {
        alt[CFTR_F508DEL] = 1;
    }
    Genome { alt }
}

/// One variant of the catalog.
struct CatalogVariant {
    contig: usize,
    position: i64,
    ref_allele: String,
    alt_allele: String,
    gene: Option<&'static str>,
    consequence: &'static str,
    rsid: Option<String>,
    clinvar: Option<&'static str>,
    kind: Kind,
}

enum Kind {
    Named(usize),
    /// Drawn variant by variant with this alternate allele frequency.
    Random(f64),
}

const BASES: [&str; 4] = ["A", "C", "G", "T"];

fn random_bases(rng: &mut Rand, n: usize) -> String {
    (0..n).map(|_| BASES[int_in(rng, 0, 3) as usize]).collect()
}

/// The allele-frequency spectrum: mostly rare, some low-frequency, a few common.
fn draw_af(rng: &mut Rand) -> f64 {
    let u = uniform(rng);
    if u < 0.72 {
        10f64.powf(-5.0 + 2.0 * uniform(rng))
    } else if u < 0.95 {
        10f64.powf(-3.0 + (0.05f64.log10() + 3.0) * uniform(rng))
    } else {
        0.05 + 0.45 * uniform(rng)
    }
}

fn random_alleles(rng: &mut Rand) -> (String, String) {
    let r = uniform(rng);
    if r < 0.86 {
        let ref_i = int_in(rng, 0, 3) as usize;
        let alt_i = (ref_i + int_in(rng, 1, 3) as usize) % 4;
        (BASES[ref_i].to_string(), BASES[alt_i].to_string())
    } else if r < 0.94 {
        let first = random_bases(rng, 1);
        let len = int_in(rng, 1, 6) as usize;
        (format!("{first}{}", random_bases(rng, len)), first)
    } else {
        let first = random_bases(rng, 1);
        let len = int_in(rng, 1, 4) as usize;
        (first.clone(), format!("{first}{}", random_bases(rng, len)))
    }
}

fn rsid_for(rng: &mut Rand, af: f64) -> Option<String> {
    let p = if af >= 0.05 {
        1.0
    } else if af >= 0.001 {
        0.85
    } else {
        0.45
    };
    chance(rng, p).then(|| format!("rs{}", int_in(rng, 1_000_000, 1_500_000_000)))
}

#[allow(clippy::explicit_auto_deref)]
fn gene_consequence(rng: &mut Rand, indel: bool) -> &'static str {
    if indel {
        *pick(
            rng,
            &[
                ("frameshift_variant", 0.35),
                ("inframe_deletion", 0.1),
                ("intron_variant", 0.45),
                ("3_prime_UTR_variant", 0.1),
            ],
        )
    } else {
        *pick(
            rng,
            &[
                ("missense_variant", 0.3),
                ("synonymous_variant", 0.2),
                ("intron_variant", 0.35),
                ("5_prime_UTR_variant", 0.03),
                ("3_prime_UTR_variant", 0.05),
                ("splice_region_variant", 0.04),
                ("stop_gained", 0.03),
            ],
        )
    }
}

fn clinvar_for(rng: &mut Rand, consequence: &str, af: f64) -> Option<&'static str> {
    if consequence == "intron_variant" && chance(rng, 0.7) {
        return None;
    }
    if !chance(rng, 0.7) {
        return None;
    }
    let damaging = matches!(consequence, "frameshift_variant" | "stop_gained");
    Some(if af > 0.01 {
        *pick(rng, &[("Benign", 0.7), ("Likely benign", 0.3)])
    } else if damaging {
        *pick(
            rng,
            &[
                ("Pathogenic", 0.6),
                ("Likely pathogenic", 0.25),
                ("Uncertain significance", 0.15),
            ],
        )
    } else {
        *pick(
            rng,
            &[
                ("Uncertain significance", 0.5),
                ("Likely benign", 0.25),
                ("Benign", 0.1),
                ("Conflicting classifications of pathogenicity", 0.1),
                ("Likely pathogenic", 0.05),
            ],
        )
    })
}

/// Number of random variants between genes.
const INTERGENIC_VARIANTS: usize = 2400;

/// The variant catalog, sorted by contig and position (positions unique per contig).
fn catalog(seed: u64) -> Vec<CatalogVariant> {
    let mut rng = rng_for(seed, stream::VARIANT_CATALOG, 0);
    let rng = &mut rng;
    let mut out: Vec<CatalogVariant> = Vec::new();
    for (i, v) in NAMED.iter().enumerate() {
        out.push(CatalogVariant {
            contig: v.contig,
            position: v.position,
            ref_allele: v.ref_allele.to_string(),
            alt_allele: v.alt_allele.to_string(),
            gene: Some(v.gene),
            consequence: v.consequence,
            rsid: v.rsid.map(str::to_string),
            clinvar: v.clinvar,
            kind: Kind::Named(i),
        });
    }
    for &(gene, contig, start, end) in GENES {
        let n = ((end - start) / 2_500).clamp(15, 60) as usize;
        for _ in 0..n {
            let af = draw_af(rng);
            let (r, a) = random_alleles(rng);
            let consequence = gene_consequence(rng, r.len() != a.len());
            let clinvar = clinvar_for(rng, consequence, af);
            out.push(CatalogVariant {
                contig,
                position: int_in(rng, start, end),
                ref_allele: r,
                alt_allele: a,
                gene: Some(gene),
                consequence,
                rsid: rsid_for(rng, af),
                clinvar,
                kind: Kind::Random(af),
            });
        }
    }
    let genome_length: i64 = CONTIGS.iter().map(|(_, l)| l).sum();
    for _ in 0..INTERGENIC_VARIANTS {
        // A contig with probability proportional to its length, then a position outside genes.
        let mut x = int_in(rng, 0, genome_length - 1);
        let mut contig = 0;
        while x >= CONTIGS[contig].1 {
            x -= CONTIGS[contig].1;
            contig += 1;
        }
        let len = CONTIGS[contig].1;
        let mut position = int_in(rng, 10_000, len - 10_000);
        while GENES
            .iter()
            .any(|g| g.1 == contig && (g.2 - 5_000..=g.3 + 5_000).contains(&position))
        {
            position = int_in(rng, 10_000, len - 10_000);
        }
        let af = draw_af(rng);
        let (r, a) = random_alleles(rng);
        out.push(CatalogVariant {
            contig,
            position,
            ref_allele: r,
            alt_allele: a,
            gene: None,
            consequence: "intergenic_variant",
            rsid: rsid_for(rng, af),
            clinvar: None,
            kind: Kind::Random(af),
        });
    }
    // Sort by position; on a clash keep the first (named variants come first).
    out.sort_by_key(|v| (v.contig, v.position));
    out.dedup_by_key(|v| (v.contig, v.position));
    out
}

/// Calls of one random variant among the sequenced participants (sorted ids): each carries
/// 0, 1 or 2 alternate alleles under Hardy–Weinberg; participants are skipped geometrically so
/// the work is proportional to the number of calls. At least one call (a singleton) is made.
fn random_calls(rng: &mut Rand, af: f64, sequenced: &[i64], out: &mut Vec<(i64, u8)>) {
    out.clear();
    if sequenced.is_empty() {
        return;
    }
    let q = 1.0 - (1.0 - af) * (1.0 - af);
    let hom = af * af / q;
    let ln_miss = (1.0 - q).ln();
    let mut i: i64 = -1;
    loop {
        let u = 1.0 - uniform(rng); // (0, 1]
        let skip = (u.ln() / ln_miss).floor();
        if !skip.is_finite() || skip > sequenced.len() as f64 {
            break;
        }
        i += 1 + skip as i64;
        if i >= sequenced.len() as i64 {
            break;
        }
        let gt = if chance(rng, hom) { 2 } else { 1 };
        out.push((sequenced[i as usize], gt));
    }
    if out.is_empty() {
        let pick = int_in(rng, 0, sequenced.len() as i64 - 1) as usize;
        out.push((sequenced[pick], 1));
    }
}

/// Variant and genotype batches of one contig.
pub struct ContigBatches {
    pub variants: RecordBatch,
    pub genotypes: Vec<RecordBatch>,
}

/// Everything needed to write the genomic tables.
pub struct GenomicsInput {
    pub seed: u64,
    /// Sequenced participants, ascending.
    pub sequenced: Vec<i64>,
    /// Per named variant: `(person_id, alternate allele count)` of sequenced carriers, by id.
    pub named_calls: Vec<Vec<(i64, u8)>>,
}

const GENOTYPE_BATCH_ROWS: usize = 256 * 1024;

/// Generates the genomic tables contig by contig, handing each contig's batches to `sink` in
/// contig order (chr1 … chr22).
pub fn generate(
    input: &GenomicsInput,
    mut sink: impl FnMut(ContigBatches) -> crate::error::Result<()>,
) -> crate::error::Result<()> {
    let catalog = catalog(input.seed);
    let an = 2 * input.sequenced.len() as i64;
    let mut calls: Vec<(i64, u8)> = Vec::new();
    let mut start = 0;
    for (contig, (contig_name, _)) in CONTIGS.iter().enumerate() {
        let end = start
            + catalog[start..]
                .iter()
                .take_while(|v| v.contig == contig)
                .count();
        let chrom = &contig_name[3..];
        let mut variants = Variant::new();
        let mut genotypes = Genotype::new();
        let mut genotype_batches = Vec::new();
        for (index, v) in catalog[start..end].iter().enumerate() {
            let global = (start + index) as u64;
            match v.kind {
                Kind::Named(n) => {
                    calls.clear();
                    calls.extend_from_slice(&input.named_calls[n]);
                }
                Kind::Random(af) => {
                    let mut rng = rng_for(input.seed, stream::VARIANT_CALLS, global);
                    random_calls(&mut rng, af, &input.sequenced, &mut calls);
                }
            }
            let ac: i64 = calls.iter().map(|(_, g)| *g as i64).sum();
            if ac == 0 {
                continue;
            }
            let vid = format!("{chrom}-{}-{}-{}", v.position, v.ref_allele, v.alt_allele);
            variants.vid.append_value(&vid);
            variants.contig.append_value(contig_name);
            variants.position.append_value(v.position);
            variants.ref_allele.append_value(&v.ref_allele);
            variants.alt_allele.append_value(&v.alt_allele);
            variants.gene_symbol.append_option(v.gene);
            variants.consequence.append_value(v.consequence);
            variants.dbsnp_rsid.append_option(v.rsid.as_deref());
            variants.clinvar_classification.append_option(v.clinvar);
            variants.gvs_all_ac.append_value(ac);
            variants.gvs_all_an.append_value(an);
            variants
                .gvs_all_af
                .append_value(if an > 0 { ac as f64 / an as f64 } else { 0.0 });
            for &(pid, gt) in &calls {
                genotypes.person_id.append_value(pid);
                genotypes.vid.append_value(&vid);
                genotypes.contig.append_value(contig_name);
                genotypes.position.append_value(v.position);
                genotypes
                    .gt
                    .append_value(if gt == 2 { "1/1" } else { "0/1" });
            }
            if genotypes.len() >= GENOTYPE_BATCH_ROWS {
                genotype_batches.push(genotypes.finish());
            }
        }
        if !genotypes.is_empty() {
            genotype_batches.push(genotypes.finish());
        }
        sink(ContigBatches {
            variants: variants.finish(),
            genotypes: genotype_batches,
        })?;
        start = end;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_is_sorted_and_unique() {
        let c = catalog(11);
        assert!(c.len() > 2_500);
        for w in c.windows(2) {
            assert!((w[0].contig, w[0].position) < (w[1].contig, w[1].position));
        }
        let named = c
            .iter()
            .filter(|v| matches!(v.kind, Kind::Named(_)))
            .count();
        assert_eq!(named, NAMED.len(), "a random variant displaced a named one");
        let common = c
            .iter()
            .filter(|v| matches!(v.kind, Kind::Random(af) if af >= 0.05))
            .count();
        let rare = c
            .iter()
            .filter(|v| matches!(v.kind, Kind::Random(af) if af < 0.001))
            .count();
        assert!(
            rare > 10 * common,
            "spectrum: {rare} rare vs {common} common"
        );
    }

    #[test]
    fn random_calls_follow_hardy_weinberg() {
        let sequenced: Vec<i64> = (1..=200_000).collect();
        let mut rng = rng_for(5, 99, 0);
        let mut calls = Vec::new();
        let p = 0.3;
        random_calls(&mut rng, p, &sequenced, &mut calls);
        let het = calls.iter().filter(|c| c.1 == 1).count() as f64 / sequenced.len() as f64;
        let hom = calls.iter().filter(|c| c.1 == 2).count() as f64 / sequenced.len() as f64;
        assert!((het - 2.0 * p * (1.0 - p)).abs() < 0.01, "het {het}");
        assert!((hom - p * p).abs() < 0.01, "hom {hom}");
        assert!(calls.windows(2).all(|w| w[0].0 < w[1].0));
    }
}
