//! The program's Cohort Builder JSON (`CohortDefinition {includes, excludes, dataFilters}`):
//! include groups are intersected, exclude groups subtracted, the items of a group united. Each
//! item is a filter over its domain's table; concept sets with descendants are expanded through
//! `concept_ancestor` once per definition.
//!
//! Groups of domain items (condition, drug, measurement, procedure, observation, visit: standard
//! or source concepts, with descendants, NUM and CAT value attributes), person items (gender,
//! sex, race, ethnicity, age, deceased), the four modifiers, data filters and temporal groups
//! (first/last/any mention; same encounter, X days before/after, within X days). Survey, Fitbit
//! and variant items are refused with the JSON path of the construct, never silently ignored.

use std::collections::{BTreeSet, HashMap};

use arrow::datatypes::DataType;
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, cast, col, lit};
use datafusion::prelude::SessionContext;
use serde_json::Value;
use strata_engine::tables::events::{EventDomain, cohort_builder_domain};

use super::CohortError;

/// The plan of the cohort's distinct person ids (one column, `person_id`).
pub async fn persons(ctx: &SessionContext, def: &Value) -> Result<DataFrame, CohortError> {
    let obj = def
        .as_object()
        .ok_or_else(|| CohortError::Invalid("the definition must be a JSON object".into()))?;
    let filters: Vec<&Value> = obj
        .get("dataFilters")
        .and_then(Value::as_array)
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let includes = groups(obj.get("includes"), "$.includes")?;
    let excludes = groups(obj.get("excludes"), "$.excludes")?;
    if includes.is_empty() {
        return Err(CohortError::Invalid(
            "$.includes: at least one search group is needed".into(),
        ));
    }
    let descendants = expand_concepts(ctx, &includes, &excludes).await?;
    let mut cohort: Option<DataFrame> = None;
    for (i, g) in includes.iter().enumerate() {
        let people = group(ctx, g, &format!("$.includes[{i}]"), &descendants).await?;
        cohort = Some(match cohort {
            None => people,
            Some(c) => c.intersect(people)?,
        });
    }
    let mut cohort = cohort.expect("at least one include group");
    for (i, f) in filters.iter().enumerate() {
        let path = format!("$.dataFilters[{i}]");
        let name = f
            .as_str()
            .ok_or_else(|| CohortError::Invalid(format!("{path}: a string is needed")))?;
        cohort = cohort.intersect(with_data(ctx, name, &path).await?)?;
    }
    for (i, g) in excludes.iter().enumerate() {
        let people = group(ctx, g, &format!("$.excludes[{i}]"), &descendants).await?;
        cohort = cohort.except(people)?;
    }
    Ok(cohort.distinct()?)
}

/// Participants who have a kind of data (`dataFilters`).
async fn with_data(ctx: &SessionContext, name: &str, path: &str) -> Result<DataFrame, CohortError> {
    let persons = |table: &'static str| async move {
        Ok::<_, CohortError>(
            crate::cohort::table(ctx, table)
                .await?
                .select_columns(&["person_id"])?,
        )
    };
    Ok(match name {
        "HAS_EHR_DATA" => persons("visit_occurrence")
            .await?
            .union(persons("condition_occurrence").await?)?,
        // Physical measurements: measurements recorded by physical examination.
        "HAS_PHYSICAL_MEASUREMENT_DATA" => crate::cohort::table(ctx, "measurement")
            .await?
            .filter(
                datafusion::logical_expr::cast(
                    col("measurement_type_concept_id"),
                    arrow::datatypes::DataType::Int64,
                )
                .eq(lit(44_818_701_i64)),
            )?
            .select_columns(&["person_id"])?,
        "HAS_PPI_SURVEY_DATA" => persons("ds_survey").await?,
        "HAS_FITBIT_DATA" | "HAS_FITBIT" => persons("activity_summary").await?,
        "HAS_WHOLE_GENOME_VARIANT" => persons("genotype").await?,
        other => return Err(unsupported(path, &format!("data filter {other}"))),
    })
}

fn unsupported(path: &str, what: &str) -> CohortError {
    CohortError::Unsupported {
        path: path.to_string(),
        what: what.to_string(),
    }
}

fn groups<'a>(v: Option<&'a Value>, path: &str) -> Result<Vec<&'a Value>, CohortError> {
    match v {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(a)) => Ok(a.iter().collect()),
        Some(_) => Err(CohortError::Invalid(format!("{path} must be an array"))),
    }
}

/// `conceptId`s that want their descendants, expanded in one vocabulary query.
async fn expand_concepts(
    ctx: &SessionContext,
    includes: &[&Value],
    excludes: &[&Value],
) -> Result<HashMap<i64, Vec<i64>>, CohortError> {
    let mut wanted = BTreeSet::new();
    for g in includes.iter().chain(excludes) {
        for item in g
            .get("items")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            for p in item
                .get("searchParameters")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let with_descendants = flag(p, "group") || flag(p, "ancestorData");
                if with_descendants && let Some(id) = p.get("conceptId").and_then(Value::as_i64) {
                    wanted.insert(id);
                }
            }
        }
    }
    let mut out: HashMap<i64, Vec<i64>> = wanted.iter().map(|&id| (id, vec![id])).collect();
    if wanted.is_empty() {
        return Ok(out);
    }
    let ids: Vec<Expr> = wanted.iter().map(|&id| lit(id)).collect();
    let batches = crate::cohort::table(ctx, "concept_ancestor")
        .await?
        .filter(col("ancestor_concept_id").in_list(ids, false))?
        .select(vec![
            datafusion::logical_expr::cast(
                col("ancestor_concept_id"),
                arrow::datatypes::DataType::Int64,
            )
            .alias("a"),
            datafusion::logical_expr::cast(
                col("descendant_concept_id"),
                arrow::datatypes::DataType::Int64,
            )
            .alias("d"),
        ])?
        .collect()
        .await?;
    for b in batches {
        use arrow::array::AsArray;
        let a = b.column(0).as_primitive::<arrow::datatypes::Int64Type>();
        let d = b.column(1).as_primitive::<arrow::datatypes::Int64Type>();
        for i in 0..b.num_rows() {
            let list = out.entry(a.value(i)).or_default();
            if !list.contains(&d.value(i)) {
                list.push(d.value(i));
            }
        }
    }
    Ok(out)
}

fn flag(v: &Value, key: &str) -> bool {
    v.get(key).and_then(Value::as_bool).unwrap_or(false)
}

/// A search group: the union of its items' participants.
async fn group(
    ctx: &SessionContext,
    g: &Value,
    path: &str,
    descendants: &HashMap<i64, Vec<i64>>,
) -> Result<DataFrame, CohortError> {
    if flag(g, "temporal") {
        return temporal_group(ctx, g, path, descendants).await;
    }
    let items = g
        .get("items")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            CohortError::Invalid(format!("{path}.items: a non-empty array is needed"))
        })?;
    let mut out: Option<DataFrame> = None;
    for (i, item) in items.iter().enumerate() {
        let people = self::item(ctx, item, &format!("{path}.items[{i}]"), descendants).await?;
        out = Some(match out {
            None => people,
            Some(o) => o.union(people)?,
        });
    }
    Ok(out.expect("non-empty items"))
}

/// The columns of an item's events (`item_events`).
const ENTRY_DATE: &str = "__entry_date";
const VISIT: &str = "__visit_id";

/// A temporal group: group 0's events (all, or each participant's first or last) related in
/// time to group 1's events of the same participant.
async fn temporal_group(
    ctx: &SessionContext,
    g: &Value,
    path: &str,
    descendants: &HashMap<i64, Vec<i64>>,
) -> Result<DataFrame, CohortError> {
    use datafusion::common::JoinType;
    use datafusion::functions_window::expr_fn::row_number;
    use datafusion::logical_expr::ExprFunctionExt;
    let items = g.get("items").and_then(Value::as_array).ok_or_else(|| {
        CohortError::Invalid(format!("{path}.items: a non-empty array is needed"))
    })?;
    let mut sides: [Option<DataFrame>; 2] = [None, None];
    for (i, item) in items.iter().enumerate() {
        let ipath = format!("{path}.items[{i}]");
        let side = match item.get("temporalGroup").and_then(Value::as_i64) {
            Some(0) => 0,
            Some(1) => 1,
            _ => {
                return Err(CohortError::Invalid(format!(
                    "{ipath}.temporalGroup: 0 or 1 is needed in a temporal group"
                )));
            }
        };
        let events = item_events(ctx, item, &ipath, descendants).await?;
        sides[side] = Some(match sides[side].take() {
            None => events,
            Some(e) => e.union(events)?,
        });
    }
    let [Some(first), Some(second)] = sides else {
        return Err(CohortError::Invalid(format!(
            "{path}.items: a temporal group needs items in temporalGroup 0 and 1"
        )));
    };
    let mention = g
        .get("mention")
        .and_then(Value::as_str)
        .unwrap_or("ANY_MENTION");
    let first = match mention {
        "ANY_MENTION" => first,
        "FIRST_MENTION" | "LAST_MENTION" => first
            .window(vec![
                row_number()
                    .partition_by(vec![col("person_id")])
                    .order_by(vec![
                        col(ENTRY_DATE).sort(mention == "FIRST_MENTION", false),
                    ])
                    .build()?
                    .alias("__mention"),
            ])?
            .filter(col("__mention").eq(lit(1_u64)))?
            .select_columns(&["person_id", ENTRY_DATE, VISIT])?,
        other => {
            return Err(unsupported(
                &format!("{path}.mention"),
                &format!("mention {other}"),
            ));
        }
    };
    let time = g.get("time").and_then(Value::as_str).ok_or_else(|| {
        CohortError::Invalid(format!(
            "{path}.time: a temporal group needs a time relation"
        ))
    })?;
    let days = || -> Result<i32, CohortError> {
        g.get("timeValue")
            .and_then(|v| {
                v.as_i64()
                    .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
            })
            .map(|x| x as i32)
            .ok_or_else(|| {
                CohortError::Invalid(format!("{path}.timeValue: a number of days is needed"))
            })
    };
    let second = second.select(vec![
        col("person_id").alias("__other_person"),
        col(ENTRY_DATE).alias("__other_date"),
        col(VISIT).alias("__other_visit"),
    ])?;
    let shifted = |n: i32| {
        datafusion::logical_expr::cast(
            datafusion::logical_expr::cast(col("__other_date"), arrow::datatypes::DataType::Int32)
                + lit(n),
            arrow::datatypes::DataType::Date32,
        )
    };
    let related = match time {
        "DURING_SAME_ENCOUNTER_AS" => col(VISIT)
            .eq(col("__other_visit"))
            .and(col(ENTRY_DATE).eq(col("__other_date"))),
        "X_DAYS_BEFORE" => col(ENTRY_DATE).lt_eq(shifted(-days()?)),
        "X_DAYS_AFTER" => col(ENTRY_DATE).gt_eq(shifted(days()?)),
        "WITHIN_X_DAYS_OF" => {
            let x = days()?;
            col(ENTRY_DATE).between(shifted(-x), shifted(x))
        }
        other => {
            return Err(unsupported(
                &format!("{path}.time"),
                &format!("time {other}"),
            ));
        }
    };
    Ok(first
        .join_on(
            second,
            JoinType::LeftSemi,
            [col("person_id").eq(col("__other_person")), related],
        )?
        .select_columns(&["person_id"])?)
}

async fn item(
    ctx: &SessionContext,
    item: &Value,
    path: &str,
    descendants: &HashMap<i64, Vec<i64>>,
) -> Result<DataFrame, CohortError> {
    if item.get("type").and_then(Value::as_str) == Some("PERSON") {
        return item_events(ctx, item, path, descendants).await;
    }
    Ok(item_events(ctx, item, path, descendants)
        .await?
        .select_columns(&["person_id"])?)
}

/// A domain item's events after its modifiers: `person_id, __entry_date, __visit_id` (a PERSON
/// item: its participants, `person_id` only).
async fn item_events(
    ctx: &SessionContext,
    item: &Value,
    path: &str,
    descendants: &HashMap<i64, Vec<i64>>,
) -> Result<DataFrame, CohortError> {
    let kind = item
        .get("type")
        .and_then(Value::as_str)
        .ok_or_else(|| CohortError::Invalid(format!("{path}.type: a string is needed")))?;
    let modifiers: Vec<&Value> = item
        .get("modifiers")
        .and_then(Value::as_array)
        .map(|m| m.iter().collect())
        .unwrap_or_default();
    let params = item
        .get("searchParameters")
        .and_then(Value::as_array)
        .filter(|a| !a.is_empty())
        .ok_or_else(|| {
            CohortError::Invalid(format!(
                "{path}.searchParameters: a non-empty array is needed"
            ))
        })?;
    if kind == "PERSON" {
        if !modifiers.is_empty() {
            return Err(unsupported(
                &format!("{path}.modifiers"),
                "modifiers of person criteria",
            ));
        }
        return person_item(ctx, params, path).await;
    }
    if let Some(events) = program_item(ctx, kind, params, path).await? {
        if !modifiers.is_empty() {
            return Err(unsupported(
                &format!("{path}.modifiers"),
                &format!("modifiers of {kind} criteria"),
            ));
        }
        return Ok(events);
    }
    let Some((domain, standard)) = cohort_builder_domain(kind).and_then(|d| Some((d, d.concept?)))
    else {
        return Err(unsupported(
            &format!("{path}.type"),
            &format!("criteria kind {kind}"),
        ));
    };
    // The Cohort Builder searches visits by their standard concept only.
    let source = domain.source_concept.filter(|_| kind != "VISIT");
    let mut conditions = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let ppath = format!("{path}.searchParameters[{i}]");
        let id = p.get("conceptId").and_then(Value::as_i64).ok_or_else(|| {
            CohortError::Invalid(format!("{ppath}.conceptId: a number is needed"))
        })?;
        let column = if p.get("standard").and_then(Value::as_bool).unwrap_or(true) {
            standard
        } else {
            source.ok_or_else(|| {
                unsupported(&format!("{ppath}.standard"), "source concepts of visits")
            })?
        };
        let ids: Vec<Expr> = descendants
            .get(&id)
            .filter(|_| flag(p, "group") || flag(p, "ancestorData"))
            .map(|d| d.iter().map(|&x| lit(x)).collect())
            .unwrap_or_else(|| vec![lit(id)]);
        let mut cond =
            datafusion::logical_expr::cast(col(column), arrow::datatypes::DataType::Int64)
                .in_list(ids, false);
        for (k, a) in p
            .get("attributes")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .enumerate()
        {
            cond = cond.and(attribute(a, &format!("{ppath}.attributes[{k}]"))?);
        }
        conditions.push(cond);
    }
    let any = conditions
        .into_iter()
        .reduce(|a, b| a.or(b))
        .expect("non-empty parameters");
    let events = crate::cohort::table(ctx, domain.table).await?.filter(any)?;
    modified(
        ctx,
        events,
        domain,
        standard,
        &modifiers,
        &format!("{path}.modifiers"),
    )
    .await
}

/// Applies an item's modifiers to its events and returns the participants left: AGE_AT_EVENT,
/// EVENT_DATE and ENCOUNTERS filter events; NUM_OF_OCCURRENCES then counts the remaining events
/// per participant and per concept over distinct dates.
async fn modified(
    ctx: &SessionContext,
    events: DataFrame,
    domain: &EventDomain,
    concept: &str,
    modifiers: &[&Value],
    path: &str,
) -> Result<DataFrame, CohortError> {
    let mut events = events;
    let mut occurrences: Option<(String, Vec<f64>, String)> = None;
    for (i, m) in modifiers.iter().enumerate() {
        let m = Modifier::of(m, format!("{path}[{i}]"));
        match m.name {
            "EVENT_DATE" => events = events.filter(event_date(&m, domain.start)?)?,
            "ENCOUNTERS" => events = encounters(ctx, events, domain.table, &m).await?,
            "AGE_AT_EVENT" => {
                events = age_at_event(ctx, events, (domain.table, domain.start), &m).await?;
            }
            "NUM_OF_OCCURRENCES" => {
                occurrences = Some((m.operator.clone(), m.numbers()?, m.path.clone()));
            }
            other => {
                return Err(unsupported(
                    &format!("{}.name", m.path),
                    &format!("modifier {other}"),
                ));
            }
        }
    }
    let events = events.select(vec![
        cast(col("person_id"), DataType::Int64).alias("person_id"),
        cast(col(domain.start), DataType::Date32).alias(ENTRY_DATE),
        cast(col("visit_occurrence_id"), DataType::Int64).alias(VISIT),
        cast(col(concept), DataType::Int64).alias("__concept"),
    ])?;
    let events = match occurrences {
        Some((operator, bounds, mpath)) => occurring_often(events, &operator, &bounds, &mpath)?,
        None => events,
    };
    Ok(events.select_columns(&["person_id", ENTRY_DATE, VISIT])?)
}

/// One entry of an item's `modifiers`.
struct Modifier<'a> {
    value: &'a Value,
    name: &'a str,
    operator: String,
    path: String,
}

impl<'a> Modifier<'a> {
    fn of(value: &'a Value, path: String) -> Self {
        let text = |key: &str| value.get(key).and_then(Value::as_str).unwrap_or("");
        Modifier {
            value,
            name: text("name"),
            operator: text("operator").to_string(),
            path,
        }
    }

    fn numbers(&self) -> Result<Vec<f64>, CohortError> {
        numeric_operands(self.value, &self.path)
    }
}

/// EVENT_DATE: the event's start date against the operands (ISO dates).
fn event_date(m: &Modifier, date: &str) -> Result<Expr, CohortError> {
    let dates: Vec<Expr> = (m.value.get("operands").and_then(Value::as_array))
        .into_iter()
        .flatten()
        .map(|o| {
            o.as_str()
                .map(str::to_string)
                .unwrap_or_else(|| o.to_string())
        })
        .map(|o| cast(lit(o), DataType::Date32))
        .collect();
    let c = col(date);
    Ok(match (m.operator.as_str(), dates.as_slice()) {
        ("BETWEEN", [a, b]) => c.between(a.clone(), b.clone()),
        ("GREATER_THAN", [a]) => c.gt(a.clone()),
        ("GREATER_THAN_OR_EQUAL_TO", [a]) => c.gt_eq(a.clone()),
        ("LESS_THAN", [a]) => c.lt(a.clone()),
        ("LESS_THAN_OR_EQUAL_TO", [a]) => c.lt_eq(a.clone()),
        ("EQUAL", [a]) => c.eq(a.clone()),
        _ => {
            return Err(unsupported(
                &format!("{}.operator", m.path),
                &format!("{} with {} dates", m.operator, dates.len()),
            ));
        }
    })
}

/// ENCOUNTERS: the events during a visit of one of the operands' visit concepts.
async fn encounters(
    ctx: &SessionContext,
    events: DataFrame,
    table: &str,
    m: &Modifier<'_>,
) -> Result<DataFrame, CohortError> {
    let ids: Vec<Expr> = m.numbers()?.into_iter().map(|v| lit(v as i64)).collect();
    let of_kind = cast(col("visit_concept_id"), DataType::Int64).in_list(ids, false);
    if table == "visit_occurrence" {
        return Ok(events.filter(of_kind)?);
    }
    // The participant's own visit: a cohort row depends on no one else.
    let own_visit = [
        col("visit_occurrence_id").eq(col("__visit")),
        col("person_id").eq(col("__visit_person")),
    ];
    let visits = crate::cohort::table(ctx, "visit_occurrence")
        .await?
        .filter(of_kind)?;
    let keys = vec![
        col("visit_occurrence_id").alias("__visit"),
        col("person_id").alias("__visit_person"),
    ];
    let semi = datafusion::common::JoinType::LeftSemi;
    Ok(events.join_on(visits.select(keys)?, semi, own_visit)?)
}

/// AGE_AT_EVENT: the events at which the participant's age compares with the operands.
async fn age_at_event(
    ctx: &SessionContext,
    events: DataFrame,
    (table, date): (&str, &str),
    m: &Modifier<'_>,
) -> Result<DataFrame, CohortError> {
    let bounds = m.numbers()?;
    // Joined on the person key under its own name, so that disclosure control sees the join is
    // within one participant.
    let person = crate::cohort::table(ctx, "person").await?;
    let age = age_on(&person, col(format!("{table}.{date}")))?;
    let cond = compare(
        age,
        &m.operator,
        &bounds,
        &format!("{}.operator", m.path),
        true,
    )?;
    let mut columns = vec![col("person.person_id"), col("person.year_of_birth")];
    for c in ["month_of_birth", "day_of_birth"] {
        if person.schema().has_column_with_unqualified_name(c) {
            columns.push(col(format!("person.{c}")));
        }
    }
    let people = person.select(columns)?;
    Ok(events.join_on(
        people,
        datafusion::common::JoinType::LeftSemi,
        [
            col(format!("{table}.person_id")).eq(col("person.person_id")),
            cond,
        ],
    )?)
}

/// Whole years on `day` from the full birth date in `person` (a missing month or day counts as
/// 1). Registered views carry no month or day of birth: there the birth date is January 1st of
/// the year of birth.
fn age_on(person: &DataFrame, day: Expr) -> Result<Expr, CohortError> {
    let part = |name: &str, d: Expr| {
        cast(
            datafusion::functions::expr_fn::date_part(lit(name.to_string()), d),
            DataType::Int64,
        )
    };
    let birth_part = |c: &str| {
        if person.schema().has_column_with_unqualified_name(c) {
            datafusion::functions::expr_fn::coalesce(vec![
                cast(col(format!("person.{c}")), DataType::Int64),
                lit(1_i64),
            ])
        } else {
            lit(1_i64)
        }
    };
    let (birth_month, birth_day) = (birth_part("month_of_birth"), birth_part("day_of_birth"));
    let before_birthday =
        part("month", day.clone())
            .lt(birth_month.clone())
            .or(part("month", day.clone())
                .eq(birth_month)
                .and(part("day", day.clone()).lt(birth_day)));
    Ok(part("year", day)
        - cast(col("person.year_of_birth"), DataType::Int64)
        - datafusion::logical_expr::when(before_birthday, lit(1_i64)).otherwise(lit(0_i64))?)
}

/// NUM_OF_OCCURRENCES: the events of the participant's concepts that occur on enough distinct
/// dates.
fn occurring_often(
    events: DataFrame,
    operator: &str,
    bounds: &[f64],
    mpath: &str,
) -> Result<DataFrame, CohortError> {
    // Per participant and concept, over distinct dates: an intermediate that never leaves the
    // server, so counted with the planner's internal function.
    let dates =
        Expr::AggregateFunction(datafusion::logical_expr::expr::AggregateFunction::new_udf(
            crate::participants::internal_distinct_count(),
            vec![cast(col(ENTRY_DATE), DataType::Int64)],
            false,
            None,
            vec![],
            None,
        ));
    let counted = events.clone().aggregate(
        vec![col("person_id"), col("__concept")],
        vec![dates.alias("__n")],
    )?;
    let cond = compare(
        cast(col("__n"), DataType::Int64),
        operator,
        bounds,
        &format!("{mpath}.operator"),
        true,
    )?;
    let often = counted.filter(cond)?.select(vec![
        col("person_id").alias("__often_person"),
        col("__concept").alias("__often_concept"),
    ])?;
    Ok(events.join(
        often,
        datafusion::common::JoinType::LeftSemi,
        &["person_id", "__concept"],
        &["__often_person", "__often_concept"],
        None,
    )?)
}

/// The program's own data: survey answers, physical measurements, Fitbit and whole-genome
/// variants, as events `person_id, __entry_date, __visit_id` (`None`: not such a kind).
async fn program_item(
    ctx: &SessionContext,
    kind: &str,
    params: &[Value],
    path: &str,
) -> Result<Option<DataFrame>, CohortError> {
    let fitbit = |table: &'static str, date: &'static str| async move {
        events(crate::cohort::table(ctx, table).await?, col(date), false)
    };
    Ok(Some(match kind {
        "SURVEY" => survey_item(ctx, params, path).await?,
        "PHYSICAL_MEASUREMENT" => physical_measurement_item(ctx, params, path).await?,
        "FITBIT" | "FITBIT_ACTIVITY" => fitbit("activity_summary", "date").await?,
        "FITBIT_HEART_RATE_SUMMARY" => fitbit("heart_rate_summary", "date").await?,
        "FITBIT_HEART_RATE_LEVEL" => fitbit("heart_rate_minute_level", "datetime").await?,
        "FITBIT_INTRADAY_STEPS" => fitbit("steps_intraday", "datetime").await?,
        "FITBIT_SLEEP_DAILY_SUMMARY" => fitbit("sleep_daily_summary", "sleep_date").await?,
        "FITBIT_SLEEP_LEVEL" => fitbit("sleep_level", "sleep_date").await?,
        "SNP_INDEL_VARIANT" => variant_item(ctx, params, path).await?,
        _ => return Ok(None),
    }))
}

/// Rows as item events: `person_id`, `date` as `__entry_date`, and their visit if they have one.
fn events(df: DataFrame, date: Expr, visit: bool) -> Result<DataFrame, CohortError> {
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::cast;
    Ok(df.select(vec![
        cast(col("person_id"), DataType::Int64).alias("person_id"),
        cast(date, DataType::Date32).alias(ENTRY_DATE),
        if visit {
            cast(col("visit_occurrence_id"), DataType::Int64)
        } else {
            cast(lit(datafusion::common::ScalarValue::Null), DataType::Int64)
        }
        .alias(VISIT),
    ])?)
}

fn any_of(conds: Vec<Expr>) -> Expr {
    conds
        .into_iter()
        .reduce(|a, b| a.or(b))
        .unwrap_or(lit(true))
}

/// The `conceptId` of search parameter `i`.
fn concept_id(p: &Value, path: &str, i: usize) -> Result<i64, CohortError> {
    p.get("conceptId").and_then(Value::as_i64).ok_or_else(|| {
        CohortError::Invalid(format!(
            "{path}.searchParameters[{i}].conceptId: a number is needed"
        ))
    })
}

/// All attributes of search parameter `i`, each made a condition by `on`.
fn attributes(
    p: &Value,
    path: &str,
    i: usize,
    on: &dyn Fn(&Value, &str) -> Result<Expr, CohortError>,
) -> Result<Expr, CohortError> {
    let mut cond = lit(true);
    for (k, a) in p
        .get("attributes")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
    {
        cond = cond.and(on(
            a,
            &format!("{path}.searchParameters[{i}].attributes[{k}]"),
        )?);
    }
    Ok(cond)
}

/// A question (participants who answered it, CAT attributes picking answers), an answer, or a
/// whole survey by name (`subtype` SURVEY).
async fn survey_item(
    ctx: &SessionContext,
    params: &[Value],
    path: &str,
) -> Result<DataFrame, CohortError> {
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::cast;
    let mut conds = Vec::new();
    for (i, p) in params.iter().enumerate() {
        if p.get("subtype").and_then(Value::as_str) == Some("SURVEY") {
            let name = p.get("name").and_then(Value::as_str).ok_or_else(|| {
                CohortError::Invalid(format!(
                    "{path}.searchParameters[{i}].name: the survey's name is needed"
                ))
            })?;
            conds.push(col("survey").eq(lit(name.to_string())));
            continue;
        }
        let id = lit(concept_id(p, path, i)?);
        let int = |c: &str| cast(col(c), DataType::Int64);
        let answered = int("question_concept_id")
            .eq(id.clone())
            .or(int("answer_concept_id").eq(id));
        let answers = attributes(p, path, i, &|a, apath| {
            if a.get("name").and_then(Value::as_str) != Some("CAT") {
                return Err(unsupported(
                    &format!("{apath}.name"),
                    "survey attributes other than CAT",
                ));
            }
            let ids = a
                .get("operands")
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .map(|o| {
                    o.as_str()
                        .and_then(|s| s.parse::<i64>().ok())
                        .or_else(|| o.as_i64())
                        .map(lit)
                        .ok_or_else(|| {
                            CohortError::Invalid(format!(
                                "{apath}.operands: concept ids are needed"
                            ))
                        })
                })
                .collect::<Result<Vec<_>, _>>()?;
            Ok(int("answer_concept_id").in_list(ids, false))
        })?;
        conds.push(answered.and(answers));
    }
    let df = crate::cohort::table(ctx, "ds_survey")
        .await?
        .filter(any_of(conds))?;
    events(df, col("survey_datetime"), false)
}

/// Physical measurements: measurements recorded by physical examination.
async fn physical_measurement_item(
    ctx: &SessionContext,
    params: &[Value],
    path: &str,
) -> Result<DataFrame, CohortError> {
    use arrow::datatypes::DataType;
    use datafusion::logical_expr::cast;
    let mut conds = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let id = concept_id(p, path, i)?;
        conds.push(
            cast(col("measurement_concept_id"), DataType::Int64)
                .eq(lit(id))
                .and(attributes(p, path, i, &|a, apath| attribute(a, apath))?),
        );
    }
    let df = crate::cohort::table(ctx, "measurement").await?.filter(
        cast(col("measurement_type_concept_id"), DataType::Int64)
            .eq(lit(44_818_701_i64))
            .and(any_of(conds)),
    )?;
    events(df, col("measurement_date"), true)
}

/// Carriers of a variant, chosen by `variantId` (vid), or by `type` RSID / GENE / REGION with
/// the value in `name` (`rs123`, `BRCA1`, `chr13:32315000-32400000`).
async fn variant_item(
    ctx: &SessionContext,
    params: &[Value],
    path: &str,
) -> Result<DataFrame, CohortError> {
    let mut by_vid = Vec::new();
    let mut by_annotation = Vec::new();
    for (i, p) in params.iter().enumerate() {
        let ppath = format!("{path}.searchParameters[{i}]");
        match p.get("variantId").and_then(Value::as_str) {
            Some(vid) => by_vid.push(col("vid").eq(lit(vid.to_string()))),
            None => by_annotation.push(variant_annotation(p, &ppath)?),
        }
    }
    let mut calls: Option<DataFrame> = None;
    if !by_vid.is_empty() {
        calls = Some(
            crate::cohort::table(ctx, "genotype")
                .await?
                .filter(any_of(by_vid))?,
        );
    }
    if !by_annotation.is_empty() {
        let variants = crate::cohort::table(ctx, "variant")
            .await?
            .filter(any_of(by_annotation))?
            .select(vec![col("vid").alias("__vid")])?;
        let annotated = crate::cohort::table(ctx, "genotype").await?.join(
            variants,
            datafusion::common::JoinType::LeftSemi,
            &["vid"],
            &["__vid"],
            None,
        )?;
        calls = Some(match calls {
            None => annotated,
            Some(c) => c.union(annotated)?,
        });
    }
    let calls = calls.expect("non-empty search parameters");
    // Called genotypes with an alternate allele.
    let carriers = calls.filter(
        col("gt").in_list(
            ["0/0", "0|0", "./.", ".|.", "."]
                .into_iter()
                .map(|g| lit(g.to_string()))
                .collect(),
            true,
        ),
    )?;
    events(carriers, lit(datafusion::common::ScalarValue::Null), false)
}

/// The `variant` filter of a search by `type` RSID, GENE or REGION.
fn variant_annotation(p: &Value, ppath: &str) -> Result<Expr, CohortError> {
    let value = p.get("name").and_then(Value::as_str).ok_or_else(|| {
        CohortError::Invalid(format!(
            "{ppath}: variantId, or name with type RSID, GENE or REGION"
        ))
    })?;
    Ok(match p.get("type").and_then(Value::as_str) {
        Some("RSID") => col("dbsnp_rsid").eq(lit(value.to_string())),
        Some("GENE") => col("gene_symbol").eq(lit(value.to_string())),
        Some("REGION") => {
            let bad = || {
                CohortError::Invalid(format!("{ppath}.name: a region contig:start-end is needed"))
            };
            let (contig, range) = value.split_once(':').ok_or_else(bad)?;
            let (a, b) = range.split_once('-').ok_or_else(bad)?;
            let a: i64 = a.replace(',', "").parse().map_err(|_| bad())?;
            let b: i64 = b.replace(',', "").parse().map_err(|_| bad())?;
            col("contig")
                .eq(lit(contig.to_string()))
                .and(col("position").between(lit(a), lit(b)))
        }
        _ => {
            return Err(unsupported(
                &format!("{ppath}.type"),
                "variant searches other than variantId, RSID, GENE, REGION",
            ));
        }
    })
}

/// A value attribute of a measurement or observation parameter.
fn attribute(a: &Value, path: &str) -> Result<Expr, CohortError> {
    let name = a.get("name").and_then(Value::as_str).unwrap_or("");
    let column = match name {
        "NUM" => col("value_as_number"),
        "CAT" => datafusion::logical_expr::cast(
            col("value_as_concept_id"),
            arrow::datatypes::DataType::Int64,
        ),
        "ANY" => return Ok(lit(true)),
        other => {
            return Err(unsupported(
                &format!("{path}.name"),
                &format!("attribute {other}"),
            ));
        }
    };
    let operands = numeric_operands(a, path)?;
    let operator = a.get("operator").and_then(Value::as_str).unwrap_or("");
    compare(
        column,
        operator,
        &operands,
        &format!("{path}.operator"),
        name == "CAT",
    )
}

/// An attribute's or modifier's `operands` as numbers (JSON numbers or numeric strings).
fn numeric_operands(a: &Value, path: &str) -> Result<Vec<f64>, CohortError> {
    a.get("operands")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|o| {
            o.as_str()
                .and_then(|s| s.parse::<f64>().ok())
                .or_else(|| o.as_f64())
                .ok_or_else(|| CohortError::Invalid(format!("{path}.operands: numbers are needed")))
        })
        .collect()
}

fn compare(
    column: Expr,
    operator: &str,
    operands: &[f64],
    path: &str,
    integer: bool,
) -> Result<Expr, CohortError> {
    let value = |i: usize| -> Result<Expr, CohortError> {
        let v = *operands
            .get(i)
            .ok_or_else(|| CohortError::Invalid(format!("{path}: too few operands")))?;
        Ok(if integer { lit(v as i64) } else { lit(v) })
    };
    Ok(match operator {
        "EQUAL" => column.eq(value(0)?),
        "NOT_EQUAL" => column.not_eq(value(0)?),
        "LESS_THAN" => column.lt(value(0)?),
        "GREATER_THAN" => column.gt(value(0)?),
        "LESS_THAN_OR_EQUAL_TO" => column.lt_eq(value(0)?),
        "GREATER_THAN_OR_EQUAL_TO" => column.gt_eq(value(0)?),
        "BETWEEN" => column.between(value(0)?, value(1)?),
        "IN" => column.in_list(
            (0..operands.len()).map(value).collect::<Result<_, _>>()?,
            false,
        ),
        other => return Err(unsupported(path, &format!("operator {other}"))),
    })
}

/// Demographics: gender, sex, race, ethnicity (concept ids), age (attribute), deceased.
async fn person_item(
    ctx: &SessionContext,
    params: &[Value],
    path: &str,
) -> Result<DataFrame, CohortError> {
    let mut conditions = Vec::new();
    let mut deceased = false;
    for (i, p) in params.iter().enumerate() {
        let ppath = format!("{path}.searchParameters[{i}]");
        let kind = p.get("type").and_then(Value::as_str).unwrap_or("");
        let concept = |column: &str| -> Result<Expr, CohortError> {
            let id = p.get("conceptId").and_then(Value::as_i64).ok_or_else(|| {
                CohortError::Invalid(format!("{ppath}.conceptId: a number is needed"))
            })?;
            Ok(
                datafusion::logical_expr::cast(col(column), arrow::datatypes::DataType::Int64)
                    .eq(lit(id)),
            )
        };
        conditions.push(match kind {
            "GENDER" | "SEX" => concept("gender_concept_id")?,
            "RACE" => concept("race_concept_id")?,
            "ETHNICITY" => concept("ethnicity_concept_id")?,
            "AGE" => {
                let a = p
                    .get("attributes")
                    .and_then(Value::as_array)
                    .and_then(|a| a.first())
                    .ok_or_else(|| {
                        CohortError::Invalid(format!(
                            "{ppath}.attributes: an AGE attribute is needed"
                        ))
                    })?;
                let name = a.get("name").and_then(Value::as_str).unwrap_or("");
                if name != "AGE" {
                    return Err(unsupported(
                        &format!("{ppath}.attributes[0].name"),
                        &format!("age kind {name}"),
                    ));
                }
                let operands = numeric_operands(a, &format!("{ppath}.attributes[0]"))?;
                // Age in whole years today, from the year of birth.
                let year = chrono_year();
                let age = lit(year)
                    - datafusion::logical_expr::cast(
                        col("year_of_birth"),
                        arrow::datatypes::DataType::Int64,
                    );
                compare(
                    age,
                    a.get("operator").and_then(Value::as_str).unwrap_or(""),
                    &operands,
                    &format!("{ppath}.attributes[0].operator"),
                    true,
                )?
            }
            // Parameters of one item are alternatives: the deceased are added below.
            "DECEASED" => {
                deceased = true;
                lit(false)
            }
            other => {
                return Err(unsupported(
                    &format!("{ppath}.type"),
                    &format!("person criterion {other}"),
                ));
            }
        });
    }
    let any = conditions
        .into_iter()
        .reduce(|a, b| a.or(b))
        .expect("non-empty parameters");
    let people = crate::cohort::table(ctx, "person")
        .await?
        .filter(any)?
        .select_columns(&["person_id"])?;
    if deceased {
        let dead = crate::cohort::table(ctx, "death").await?.select(vec![
            datafusion::logical_expr::cast(col("person_id"), arrow::datatypes::DataType::Int64)
                .alias("person_id"),
        ])?;
        let people = people.select(vec![
            datafusion::logical_expr::cast(col("person_id"), arrow::datatypes::DataType::Int64)
                .alias("person_id"),
        ])?;
        return Ok(people.union(dead)?.distinct()?);
    }
    Ok(people)
}

fn chrono_year() -> i64 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() / 86_400)
        .unwrap_or(0) as i64;
    // Civil year of a day count (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    yoe + era * 400 + i64::from(m <= 2)
}
