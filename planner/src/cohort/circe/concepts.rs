//! Concept sets (`ConceptSets[].expression.items`) resolved to concept ids once per
//! definition, with Circe's rules: an item's own concept counts if the vocabulary has it;
//! `includeDescendants` adds its valid descendants (`concept_ancestor`, `invalid_reason IS
//! NULL`); excluded items (with their descendants) are taken out; `includeMapped` adds the
//! source concepts that map ('Maps to', valid) to the mapped items, less the mapped excluded.
//! Three vocabulary queries serve every concept set; the ids then become IN lists that the
//! Parquet scans prune row groups with.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, Int64Type};
use datafusion::logical_expr::{Expr, cast, col, lit};
use datafusion::prelude::SessionContext;

use super::json::Node;
use crate::cohort::CohortError;

/// Concept ids of each concept set, by its `id`.
pub type Codesets = HashMap<i64, BTreeSet<i64>>;

#[derive(Default)]
struct Item {
    concept: i64,
    excluded: bool,
    descendants: bool,
    mapped: bool,
}

pub async fn resolve(ctx: &SessionContext, sets: &[Node<'_>]) -> Result<Codesets, CohortError> {
    let mut parsed: BTreeMap<i64, Vec<Item>> = BTreeMap::new();
    for set in sets {
        let id = set
            .get("id")
            .ok_or_else(|| set.invalid("a concept set needs an id"))?
            .i64()?;
        let mut items = Vec::new();
        if let Some(expression) = set.get("expression") {
            for item in expression.list("items")? {
                let concept = item
                    .get("concept")
                    .and_then(|c| c.get("CONCEPT_ID"))
                    .ok_or_else(|| item.invalid("concept.CONCEPT_ID is needed"))?
                    .i64()?;
                items.push(Item {
                    concept,
                    excluded: item.flag("isExcluded")?,
                    descendants: item.flag("includeDescendants")?,
                    mapped: item.flag("includeMapped")?,
                });
            }
        }
        if parsed.insert(id, items).is_some() {
            return Err(set.invalid(&format!("concept set id {id} is used twice")));
        }
    }
    let all: BTreeSet<i64> = parsed.values().flatten().map(|i| i.concept).collect();
    let wanting_descendants: BTreeSet<i64> = parsed
        .values()
        .flatten()
        .filter(|i| i.descendants)
        .map(|i| i.concept)
        .collect();
    let known = existing(ctx, &all).await?;
    let descendants = valid_descendants(ctx, &wanting_descendants).await?;
    let expand = |items: &mut dyn Iterator<Item = &Item>| -> BTreeSet<i64> {
        let mut out = BTreeSet::new();
        for i in items {
            if known.contains(&i.concept) {
                out.insert(i.concept);
            }
            if i.descendants {
                out.extend(descendants.get(&i.concept).into_iter().flatten());
            }
        }
        out
    };
    // Circe: (included ∪ sources mapped to the mapped included) \ (excluded ∪ sources mapped to
    // the mapped excluded).
    let mapped_side = |items: &[Item], excluded: bool| {
        expand(&mut items.iter().filter(|i| i.excluded == excluded && i.mapped))
    };
    let targets: BTreeSet<i64> = parsed
        .values()
        .flat_map(|items| {
            mapped_side(items, false)
                .into_iter()
                .chain(mapped_side(items, true))
        })
        .collect();
    let sources = mapped_sources(ctx, &targets).await?;
    let with_sources = |mut set: BTreeSet<i64>, targets: BTreeSet<i64>| {
        for t in targets {
            set.extend(sources.get(&t).into_iter().flatten());
        }
        set
    };
    let mut resolved = HashMap::new();
    for (id, items) in &parsed {
        let included = with_sources(
            expand(&mut items.iter().filter(|i| !i.excluded)),
            mapped_side(items, false),
        );
        let excluded = with_sources(
            expand(&mut items.iter().filter(|i| i.excluded)),
            mapped_side(items, true),
        );
        resolved.insert(*id, &included - &excluded);
    }
    Ok(resolved)
}

fn int64(name: &str) -> Expr {
    cast(col(name), DataType::Int64)
}

fn in_list(name: &str, ids: &BTreeSet<i64>) -> Expr {
    int64(name).in_list(ids.iter().map(|&i| lit(i)).collect(), false)
}

async fn pairs(df: datafusion::dataframe::DataFrame) -> Result<Vec<(i64, i64)>, CohortError> {
    let mut out = Vec::new();
    for b in df.collect().await? {
        let a = b.column(0).as_primitive::<Int64Type>();
        let c = b.column(1).as_primitive::<Int64Type>();
        for i in 0..b.num_rows() {
            out.push((a.value(i), c.value(i)));
        }
    }
    Ok(out)
}

async fn existing(ctx: &SessionContext, ids: &BTreeSet<i64>) -> Result<BTreeSet<i64>, CohortError> {
    if ids.is_empty() {
        return Ok(BTreeSet::new());
    }
    let df = crate::cohort::table(ctx, "concept")
        .await?
        .filter(in_list("concept_id", ids))?
        .select(vec![
            int64("concept_id").alias("a"),
            int64("concept_id").alias("b"),
        ])?;
    Ok(pairs(df).await?.into_iter().map(|(a, _)| a).collect())
}

async fn valid_descendants(
    ctx: &SessionContext,
    ancestors: &BTreeSet<i64>,
) -> Result<HashMap<i64, BTreeSet<i64>>, CohortError> {
    let mut out: HashMap<i64, BTreeSet<i64>> = HashMap::new();
    if ancestors.is_empty() {
        return Ok(out);
    }
    let valid = crate::cohort::table(ctx, "concept")
        .await?
        .filter(col("invalid_reason").is_null())?
        .select(vec![int64("concept_id").alias("valid_id")])?;
    let df = crate::cohort::table(ctx, "concept_ancestor")
        .await?
        .filter(in_list("ancestor_concept_id", ancestors))?
        .select(vec![
            int64("ancestor_concept_id").alias("a"),
            int64("descendant_concept_id").alias("d"),
        ])?
        .join_on(
            valid,
            datafusion::common::JoinType::Inner,
            [col("d").eq(col("valid_id"))],
        )?
        .select(vec![col("a"), col("d")])?;
    for (a, d) in pairs(df).await? {
        out.entry(a).or_default().insert(d);
    }
    Ok(out)
}

/// Source concepts mapped to each target ('Maps to', valid relationships).
async fn mapped_sources(
    ctx: &SessionContext,
    targets: &BTreeSet<i64>,
) -> Result<HashMap<i64, BTreeSet<i64>>, CohortError> {
    let mut out: HashMap<i64, BTreeSet<i64>> = HashMap::new();
    if targets.is_empty() {
        return Ok(out);
    }
    let df = crate::cohort::table(ctx, "concept_relationship")
        .await?
        .filter(
            in_list("concept_id_2", targets)
                .and(col("relationship_id").eq(lit("Maps to")))
                .and(col("invalid_reason").is_null()),
        )?
        .select(vec![
            int64("concept_id_2").alias("t"),
            int64("concept_id_1").alias("s"),
        ])?;
    for (t, s) in pairs(df).await? {
        out.entry(t).or_default().insert(s);
    }
    Ok(out)
}
