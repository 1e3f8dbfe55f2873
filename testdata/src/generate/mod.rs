//! `strata generate`: a deterministic synthetic research-program dataset.
//!
//! Every table of DESIGN.md "Tables" is written through `strata_engine`'s dataset writer:
//! the vocabulary (`concept`, `concept_ancestor`, `concept_relationship`), OMOP CDM 5.4 EHR tables
//! (`person`, `observation_period`, `visit_occurrence`, `condition_occurrence`, `drug_exposure`,
//! `procedure_occurrence`, `measurement`, `observation`, `death`), the survey table `ds_survey`,
//! the Fitbit tables (`activity_summary`, `heart_rate_minute_level`, `heart_rate_summary`,
//! `steps_intraday`, `sleep_daily_summary`, `sleep_level`) and the genomic tables `variant` and
//! `genotype`. Same seed and arguments give byte-identical files.
//!
//! # What is in it
//! - Participants `person_id` 1..=N, adults with a US-like mix of sex (8507/8532), race (8527,
//!   8516, 8515, 8657, 8557, 8522 other/multiracial, 0 unknown) and ethnicity (38003563/38003564),
//!   2–3% aged 89 or older, ~3% with a missing month or day of birth (`birth_datetime` is
//!   always filled, missing parts taken as 1). ~76% have EHR data, ~15% Fitbit data, ~20% whole
//!   genomes; a few percent have died (death after all their events).
//! - Chronic conditions with realistic prevalence and comorbidity (hypertension 320128, type 2
//!   diabetes 201826 with raised HbA1c 3004410 and metformin, hyperlipidemia 432867 with statins,
//!   asthma/COPD with albuterol, depression with sertraline, obesity with BMI 3038553, coronary
//!   disease, atrial fibrillation, heart failure, stroke, CKD, Alzheimer's, breast cancer, …),
//!   plus the GiBleed concepts (gastrointestinal hemorrhage 192671, more often on celecoxib
//!   1118084 or diclofenac 1124300; acute bronchitis 260139). Every EHR event hangs off a visit
//!   (9201/9202/9203) and is dated inside it; enrollment physical measurements (type 44818701)
//!   and survey answers (type 45905771) have no visit. Everything lies inside the participant's
//!   single observation period. Survey answers (The Basics, Overall Health, Lifestyle; real PPI
//!   concept ids) are in `ds_survey` and in `observation`. Row ids are
//!   `person_id * 10_000 + n`. See `ehr`, `survey`, `fitbit`, `genomics` for the models.
//!
//! # Planted rare conditions
//! With `--persons` of 1000 or more, these conditions occur in exactly this many distinct
//! participants (whatever the seed and the size), each with one or more
//! `condition_occurrence` rows (so row counts exceed participant counts). Nothing else in the
//! dataset carries these concepts. Planted participants are alive, have EHR data and are under
//! 80 at the data cutoff (2023-06-30).
//!
//! | concept_id | condition | participants |
//! |---:|---|---:|
//! | 4043241 | Familial Alzheimer's disease of early onset | 1 |
//! | 441267 | Cystic fibrosis | 5 |
//! | 374919 | Multiple sclerosis | 19 |
//! | 76685 | Myasthenia gravis | 20 |
//! | 257628 | Systemic lupus erythematosus | 21 |
//! | 4310024 | Angiodysplasia of stomach | 40 |
//!
//! In `concept_ancestor`, 4043241 descends from 378419 Alzheimer's disease (which generated
//! participants also have), the others only from 4274025 Disease and 441840 Clinical finding.
//! The cystic-fibrosis participants are the only CFTR F508del (rs113993960, `7-117559590-ATCT-A`)
//! homozygotes (seen in `genotype` when they are among the sequenced) and the only users of
//! dornase alfa (ingredient 1125443).
//!
//! # Planted dominant contributors
//! Every angiodysplasia participant is prescribed omeprazole (923645); the two of them with the
//! smallest `person_id` get `quantity` 50,000 on each omeprazole row (everyone else's quantity
//! is the days supply), so that `SUM(quantity)` over a group holding them is dominated (the
//! (n, k) rule) however many participants it has.
//!
//! # Scale
//! Participants are generated in chunks of [`CHUNK_PERSONS`] on all cores (each participant
//! from its own random streams keyed by seed and `person_id`), and written in order, one thread
//! per table, so memory stays bounded and every shard file is sorted by `person_id`.

mod ehr;
mod fitbit;
mod genomics;
mod ids;
mod participant;
mod people;
mod rng;
mod survey;
mod tables;
mod vocabulary;

#[cfg(test)]
mod tests;

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, SyncSender, sync_channel};
use std::thread;

use arrow::array::RecordBatch;
use indicatif::{ProgressBar, ProgressStyle};
use strata_engine::writer::{DatasetWriter, FinishedTable, TableSpec, TableWriter};

use crate::error::{Result, TestdataError};

pub use people::{PLANTED, PlantedGroup};

#[derive(Debug, Clone)]
pub struct GenerateOptions {
    pub out: PathBuf,
    pub persons: u64,
    pub shards: u32,
    pub seed: u64,
    /// Show an indicatif progress bar on stderr.
    pub progress: bool,
}

#[derive(Debug, Clone, Default)]
pub struct GenerateSummary {
    pub tables: Vec<(String, u64)>,
}

/// Participants per chunk of work.
pub const CHUNK_PERSONS: u64 = 2_000;
/// Largest supported dataset (row ids are `person_id * 10_000 + n`).
pub const MAX_PERSONS: u64 = 100_000_000;

pub fn generate(opts: &GenerateOptions) -> Result<GenerateSummary> {
    if opts.persons == 0 {
        return Err(TestdataError::Input("--persons must be at least 1".into()));
    }
    if opts.persons > MAX_PERSONS {
        return Err(TestdataError::Input(format!(
            "--persons must be at most {MAX_PERSONS}"
        )));
    }
    if opts.shards == 0 {
        return Err(TestdataError::Input("--shards must be at least 1".into()));
    }
    let source = format!(
        "generate --seed {} --persons {} --shards {}",
        opts.seed, opts.persons, opts.shards
    );
    let mut writer = DatasetWriter::create(&opts.out, "synthetic", &source, opts.shards)?;
    let mut summary = GenerateSummary::default();

    for batch in [
        vocabulary::concept_batch(),
        vocabulary::concept_ancestor_batch(),
        vocabulary::concept_relationship_batch(),
    ] {
        let name = match batch.schema().fields().len() {
            10 => tables::Concept::NAME,
            4 => tables::ConceptAncestor::NAME,
            _ => tables::ConceptRelationship::NAME,
        };
        let done = write_whole_table(&writer, name, &[batch])?;
        summary.tables.push((done.name.clone(), done.entry.rows));
        writer.add_table(done);
    }

    let progress = if opts.progress {
        let pb = ProgressBar::new(opts.persons);
        if let Ok(style) = ProgressStyle::with_template(
            "{spinner} {msg:12} [{elapsed_precise}] [{bar:40}] {pos}/{len} participants (eta {eta})",
        ) {
            pb.set_style(style.progress_chars("=> "));
        }
        pb.set_message("participants");
        pb
    } else {
        ProgressBar::hidden()
    };

    let planted = people::planted_participants(opts.seed, opts.persons);
    let dominant = people::dominant_contributors(&planted);
    let ctx = participant::Context {
        seed: opts.seed,
        planted: &planted,
        dominant: &dominant,
    };
    let (finished, genomics_input) = write_participants(&writer, &ctx, opts, &progress)?;
    for done in finished {
        summary.tables.push((done.name.clone(), done.entry.rows));
        writer.add_table(done);
    }

    progress.set_message("genomes");
    for done in write_genomics(&writer, &genomics_input)? {
        summary.tables.push((done.name.clone(), done.entry.rows));
        writer.add_table(done);
    }
    progress.set_message("finishing");
    writer.finish()?;
    progress.finish_and_clear();
    Ok(summary)
}

fn open_table(
    writer: &DatasetWriter,
    name: &str,
    schema: arrow::datatypes::SchemaRef,
) -> Result<TableWriter> {
    Ok(writer.table(TableSpec::standard(name, &schema), schema)?)
}

fn write_whole_table(
    writer: &DatasetWriter,
    name: &str,
    batches: &[RecordBatch],
) -> Result<FinishedTable> {
    let schema = batches[0].schema();
    let mut t = open_table(writer, name, schema)?;
    for b in batches {
        t.write(b)?;
    }
    Ok(t.finish()?)
}

fn thread_failed(what: &str) -> TestdataError {
    TestdataError::Input(format!("generate: the {what} thread stopped unexpectedly"))
}

/// Generates all participants on worker threads and writes them in order, one writer thread
/// per table. Returns the finished tables and what the genomic pass needs.
fn write_participants(
    writer: &DatasetWriter,
    ctx: &participant::Context,
    opts: &GenerateOptions,
    progress: &ProgressBar,
) -> Result<(Vec<FinishedTable>, genomics::GenomicsInput)> {
    let chunks = opts.persons.div_ceil(CHUNK_PERSONS);
    let workers = thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2)
        .clamp(1, 8) as u64;
    let workers = workers.min(chunks).max(1);
    let mut table_writers = Vec::new();
    for name in tables::PERSON_TABLES {
        table_writers.push(open_table(writer, name, tables::person_table_schema(name))?);
    }
    let mut sequenced: Vec<i64> = Vec::new();
    let mut named_calls: Vec<Vec<(i64, u8)>> = vec![Vec::new(); genomics::NAMED.len()];

    let finished = thread::scope(|s| -> Result<Vec<FinishedTable>> {
        // Writers: one per table.
        let mut senders: Vec<SyncSender<RecordBatch>> = Vec::new();
        let mut writer_threads = Vec::new();
        for mut t in table_writers {
            let (tx, rx) = sync_channel::<RecordBatch>(2);
            senders.push(tx);
            writer_threads.push(s.spawn(move || -> Result<FinishedTable> {
                for batch in rx {
                    t.write(&batch)?;
                }
                Ok(t.finish()?)
            }));
        }
        // Generators: chunk c on worker c % workers, each handing back its chunks in order.
        let mut outputs: Vec<Receiver<participant::ChunkOutput>> = Vec::new();
        let mut generator_threads = Vec::new();
        for w in 0..workers {
            let (tx, rx) = sync_channel(1);
            outputs.push(rx);
            generator_threads.push(s.spawn(move || {
                let mut c = w;
                while c < chunks {
                    let first = 1 + c * CHUNK_PERSONS;
                    let last = (first + CHUNK_PERSONS - 1).min(opts.persons);
                    let out = participant::generate_chunk(ctx, first as i64, last as i64);
                    if tx.send(out).is_err() {
                        break;
                    }
                    c += workers;
                }
            }));
        }

        let mut failure: Option<TestdataError> = None;
        'chunks: for c in 0..chunks {
            let Ok(out) = outputs[(c % workers) as usize].recv() else {
                failure = Some(thread_failed("generator"));
                break;
            };
            let persons = out.batches.first().map(|b| b.num_rows()).unwrap_or(0) as u64;
            for (i, batch) in out.batches.into_iter().enumerate() {
                if senders[i].send(batch).is_err() {
                    // The writer stopped on an error; it is reported when joined below.
                    break 'chunks;
                }
            }
            sequenced.extend_from_slice(&out.sequenced);
            for (v, pid, count) in out.named_calls {
                named_calls[v].push((pid, count));
            }
            progress.inc(persons);
        }
        drop(senders);
        drop(outputs);
        for h in generator_threads {
            if h.join().is_err() && failure.is_none() {
                failure = Some(thread_failed("generator"));
            }
        }
        let mut finished = Vec::new();
        for h in writer_threads {
            match h.join() {
                Ok(Ok(done)) => finished.push(done),
                Ok(Err(e)) => {
                    failure.get_or_insert(e);
                }
                Err(_) => {
                    failure.get_or_insert_with(|| thread_failed("writer"));
                }
            }
        }
        match failure {
            Some(e) => Err(e),
            None => Ok(finished),
        }
    })?;
    Ok((
        finished,
        genomics::GenomicsInput {
            seed: ctx.seed,
            sequenced,
            named_calls,
        },
    ))
}

/// Writes `variant` and `genotype`, generating the next contig while the previous is written.
fn write_genomics(
    writer: &DatasetWriter,
    input: &genomics::GenomicsInput,
) -> Result<Vec<FinishedTable>> {
    let mut variants = open_table(writer, tables::Variant::NAME, tables::Variant::schema())?;
    let mut genotypes = open_table(writer, tables::Genotype::NAME, tables::Genotype::schema())?;
    thread::scope(|s| -> Result<()> {
        let (tx, rx) = sync_channel::<genomics::ContigBatches>(2);
        let producer = s.spawn(move || {
            // A send error means the writer below stopped on an error; stop quietly.
            genomics::generate(input, |batches| {
                tx.send(batches)
                    .map_err(|_| thread_failed("genotype writer"))
            })
        });
        let mut result = Ok(());
        for contig in rx {
            result = variants
                .write(&contig.variants)
                .map_err(TestdataError::from);
            for g in &contig.genotypes {
                if result.is_ok() {
                    result = genotypes.write(g).map_err(TestdataError::from);
                }
            }
            if result.is_err() {
                break;
            }
        }
        let produced = producer
            .join()
            .map_err(|_| thread_failed("genome generator"))?;
        result?;
        produced
    })?;
    Ok(vec![variants.finish()?, genotypes.finish()?])
}
