//! The gene symbol and consequence of an ALT allele, from INFO: a plain per-allele field, else
//! the SnpEff `ANN` or VEP `CSQ` entry of that allele.

use noodles::vcf;
use noodles::vcf::variant::record::info::field::Value as InfoValue;
use noodles::vcf::variant::record::info::field::value::Array as InfoArray;

/// Where the gene symbol and consequence live in this VCF's INFO.
#[derive(Debug, Default)]
pub(super) struct Annotations {
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
    pub(super) fn from_header(header: &vcf::Header) -> Self {
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
pub(super) fn info_strings(
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
pub(super) fn vep_allele(reference: &str, alt: &str) -> String {
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

pub(super) fn annotate(
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
