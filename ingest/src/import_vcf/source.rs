//! The inputs: the bgzipped VCF (checked for the usual mistakes before noodles reads it) and the
//! sample → `person_id` map.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

use noodles::bgzf;
use noodles::vcf;
use strata_engine::error::first_line;

use super::input_err;
use crate::error::{IngestError, Result};

pub(super) type VcfReader = vcf::io::Reader<bgzf::io::Reader<File>>;

/// Opens a bgzipped VCF and reads its header, with a clear word for the usual mistakes.
pub(super) fn open(path: &Path) -> Result<(VcfReader, vcf::Header)> {
    if path.is_dir() {
        return Err(input_err(format!(
            "{}: is a folder, not a .vcf.gz file",
            path.display()
        )));
    }
    let mut file = File::open(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => input_err(format!("{}: no such file", path.display())),
        _ => IngestError::io(path, e),
    })?;
    let mut magic = [0u8; 18];
    let mut n = 0;
    while n < magic.len() {
        match file.read(&mut magic[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) => return Err(IngestError::io(path, e)),
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
        .map_err(|e| IngestError::io(path, e))?;
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
pub(super) fn read_sample_map(path: &Path) -> Result<HashMap<String, i64>> {
    let text = std::fs::read_to_string(path).map_err(|e| match e.kind() {
        std::io::ErrorKind::NotFound => input_err(format!("{}: no such file", path.display())),
        std::io::ErrorKind::InvalidData => input_err(format!("{}: not UTF-8 text", path.display())),
        _ => IngestError::io(path, e),
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

pub(super) fn person_ids(
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
