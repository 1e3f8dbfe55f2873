//! Domain criteria (`{"ConditionOccurrence": {...}}` …) → the plan of their events, with
//! Circe's columns: `person_id, event_id, start_date, end_date, visit_occurrence_id,
//! sort_date, domain_concept_id`. `First` ranks the events of the concept set before any other
//! attribute filters them, as Circe does; every attribute this compiler does not evaluate is
//! refused with its JSON path.
use arrow::datatypes::DataType;
use datafusion::common::{Column, JoinType};
use datafusion::dataframe::DataFrame;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{Expr, ExprFunctionExt, cast, lit};

use strata_engine::tables::events::{EventDomain as Domain, EventEnd as End, circe_domain};

use super::Compiler;
use super::exprs::{
    Precision, add_days, concept_list, date, date_literal, date_range, days, days_between, in_ids,
    int64, numeric_range, qc, text_filter, year,
};
use super::json::{Node, is_empty_group};
use crate::cohort::CohortError;

impl Compiler<'_> {
    /// The events of one criteria object (`{"<Domain>": {...}}`), correlated criteria applied.
    pub(super) async fn criteria(&self, node: &Node<'_>) -> Result<DataFrame, CohortError> {
        let entries = node.entries()?;
        let [(kind, body)] = entries.as_slice() else {
            return Err(node.invalid("a criteria object has exactly one domain key"));
        };
        let Some(domain) = circe_domain(kind) else {
            return Err(node.unsupported(&format!("criteria of kind {kind}")));
        };
        let events = Box::pin(self.domain_events(domain, body)).await?;
        match body.get("CorrelatedCriteria") {
            Some(group) if !is_empty_group(&group)? => {
                Box::pin(self.correlated_to_own_events(events, &group)).await
            }
            _ => Ok(events),
        }
    }

    async fn domain_events(&self, d: &Domain, body: &Node<'_>) -> Result<DataFrame, CohortError> {
        let table = crate::cohort::table(self.ctx, d.table).await?;
        let filters = self.attribute_filters(d, body)?;
        let columns = event_columns(&table, d, &filters);
        let rows = self.ranked(d, body, table.select(columns)?)?;
        let mut rows = self.joined(rows.alias("c")?, &filters).await?;
        for f in filters.predicates {
            rows = rows.filter(f)?;
        }
        circe_columns(d, body, rows)
    }

    /// The concept sets select the rows `First` ranks (Circe joins them inside the ranked
    /// subquery); every other attribute filters after it. The date adjustment follows ranking.
    fn ranked(
        &self,
        d: &Domain,
        body: &Node<'_>,
        mut rows: DataFrame,
    ) -> Result<DataFrame, CohortError> {
        if let Some(codeset) = body.get("CodesetId") {
            if d.concept.is_none() {
                return Err(codeset.unsupported(&format!("{} has no concept", d.circe)));
            }
            rows = rows.filter(self.in_codeset(qc_plain("c_concept"), &codeset)?)?;
        }
        if let Some(source) = d.source_concept
            && let Some(codeset) = body.get(&format!("{}SourceConcept", prefix(d)))
        {
            rows = rows.filter(self.in_codeset(int64(qc_plain(source)), &codeset)?)?;
        }
        // Death has no `First` in Circe (the key is ignored there too).
        if d.circe != "Death" && body.flag("First")? {
            rows = rows
                .window(vec![
                    row_number()
                        .partition_by(vec![qc_plain("person_id")])
                        .order_by(vec![
                            qc_plain("c_start").sort(true, false),
                            qc_plain("c_event").sort(true, false),
                        ])
                        .build()?
                        .alias("c_ordinal"),
                ])?
                .filter(qc_plain("c_ordinal").eq(lit(1_u64)))?;
        }
        if let Some(adjustment) = body.get("DateAdjustment") {
            rows = adjust_dates(rows, d, &adjustment)?;
        }
        Ok(rows)
    }

    /// The tables the attribute filters read, each joined on the row's own participant or its
    /// own visit, provider or care site.
    async fn joined(
        &self,
        mut rows: DataFrame,
        filters: &Filters,
    ) -> Result<DataFrame, CohortError> {
        let c_p = || int64(qc("c", "person_id"));
        for (wanted, table, alias, on) in [
            (
                filters.person,
                "person",
                "p",
                vec![c_p().eq(int64(qc("p", "person_id")))],
            ),
            (
                filters.visit,
                "visit_occurrence",
                "v",
                vec![
                    qc("c", "c_visit").eq(int64(qc("v", "visit_occurrence_id"))),
                    c_p().eq(int64(qc("v", "person_id"))),
                ],
            ),
            (
                filters.provider,
                "provider",
                "pr",
                vec![int64(qc("c", "provider_id")).eq(int64(qc("pr", "provider_id")))],
            ),
            (
                filters.care_site,
                "care_site",
                "cs",
                vec![int64(qc("c", "care_site_id")).eq(int64(qc("cs", "care_site_id")))],
            ),
        ] {
            if wanted {
                let joined = crate::cohort::table(self.ctx, table).await?.alias(alias)?;
                rows = rows.join_on(joined, JoinType::Inner, on)?;
            }
        }
        Ok(rows)
    }

    /// `e IN (concept set)`.
    pub(super) fn in_codeset(&self, e: Expr, codeset: &Node<'_>) -> Result<Expr, CohortError> {
        let id = codeset.i64()?;
        let ids = self
            .codesets
            .get(&id)
            .ok_or_else(|| codeset.invalid(&format!("no concept set with id {id}")))?;
        Ok(in_ids(e, ids))
    }

    fn attribute_filters(&self, d: &Domain, body: &Node<'_>) -> Result<Filters, CohortError> {
        let mut f = Filters::default();
        let c = |name: &str| qc("c", name);
        for (key, value) in body.entries()? {
            let k = key.to_ascii_lowercase();
            let prefix = prefix(d);
            let typed = |suffix: &str| k == format!("{prefix}{suffix}").to_ascii_lowercase();
            match k.as_str() {
                "occurrenceenddate" if d.circe == "DrugExposure" => {
                    // Circe's SQL compares a drug exposure's OccurrenceEndDate with its start
                    // date; evaluated the same way so cohorts agree with ATLAS.
                    f.predicates.push(date_range(c("c_start"), &value)?)
                }
                "codesetid" | "first" | "correlatedcriteria" => {}
                "occurrencestartdate" | "erastartdate" | "periodstartdate" => {
                    f.predicates.push(date_range(c("c_start"), &value)?)
                }
                "occurrenceenddate" | "eraenddate" | "periodenddate" => {
                    f.predicates.push(date_range(c("c_end"), &value)?)
                }
                "age" if d.circe == "VisitDetail" => {
                    // Circe ages a visit detail at its end date.
                    f.person = true;
                    f.predicates.push(numeric_range(
                        year(c("c_end")) - int64(qc("p", "year_of_birth")),
                        &value,
                        Precision::Whole,
                    )?);
                }
                "visitdetailstartdate" if d.circe == "VisitDetail" => {
                    f.predicates.push(date_range(c("c_start"), &value)?)
                }
                "visitdetailenddate" if d.circe == "VisitDetail" => {
                    f.predicates.push(date_range(c("c_end"), &value)?)
                }
                "visitdetaillength" if d.circe == "VisitDetail" => {
                    f.predicates.push(numeric_range(
                        days_between(c("c_start"), c("c_end")),
                        &value,
                        Precision::Whole,
                    )?)
                }
                "providerspecialty" => {
                    f.provider = true;
                    f.predicates.push(concept_list(
                        int64(qc("pr", "specialty_concept_id")),
                        &value,
                    )?);
                }
                "providerspecialtycs" => {
                    f.provider = true;
                    f.predicates.push(
                        self.concept_selection(int64(qc("pr", "specialty_concept_id")), &value)?,
                    );
                }
                "placeofservice" if matches!(d.circe, "VisitOccurrence" | "VisitDetail") => {
                    f.care_site = true;
                    f.predicates.push(concept_list(
                        int64(qc("cs", "place_of_service_concept_id")),
                        &value,
                    )?);
                }
                "placeofservicecs" if matches!(d.circe, "VisitOccurrence" | "VisitDetail") => {
                    f.care_site = true;
                    f.predicates.push(self.concept_selection(
                        int64(qc("cs", "place_of_service_concept_id")),
                        &value,
                    )?);
                }
                "age" | "ageatstart" => {
                    f.person = true;
                    f.predicates.push(numeric_range(
                        year(c("c_start")) - int64(qc("p", "year_of_birth")),
                        &value,
                        Precision::Whole,
                    )?);
                }
                "ageatend" => {
                    f.person = true;
                    f.predicates.push(numeric_range(
                        year(c("c_end")) - int64(qc("p", "year_of_birth")),
                        &value,
                        Precision::Whole,
                    )?);
                }
                "gender" => {
                    f.person = true;
                    f.predicates
                        .push(concept_list(int64(qc("p", "gender_concept_id")), &value)?);
                }
                "gendercs" => {
                    f.person = true;
                    f.predicates
                        .push(self.concept_selection(int64(qc("p", "gender_concept_id")), &value)?);
                }
                "visittype" if d.circe != "VisitOccurrence" => {
                    f.visit = true;
                    f.predicates
                        .push(concept_list(int64(qc("v", "visit_concept_id")), &value)?);
                }
                "visittypecs" if d.circe != "VisitOccurrence" => {
                    f.visit = true;
                    f.predicates
                        .push(self.concept_selection(int64(qc("v", "visit_concept_id")), &value)?);
                }
                _ if d.source_concept.is_some() && typed("SourceConcept") => {}
                "dateadjustment" => {}
                "userdefinedperiod" if d.circe == "ObservationPeriod" => {
                    for key in ["StartDate", "EndDate"] {
                        if let Some(day) = value.get(key) {
                            let day = date_literal(&day)?;
                            f.predicates
                                .push(c("c_start").lt_eq(day.clone()).and(c("c_end").gt_eq(day)));
                        }
                    }
                }
                _ if d.type_concept.is_some() && (typed("Type") || k == "periodtype") => {
                    let col = int64(c(d.type_concept.expect("checked")));
                    let exclude = body
                        .get(&format!("{key}Exclude"))
                        .map(|n| n.bool())
                        .transpose()?
                        .unwrap_or(false);
                    let p = concept_list(col, &value)?;
                    f.predicates.push(if exclude { !p } else { p });
                }
                _ if d.type_concept.is_some() && typed("TypeCS") => {
                    let col = int64(c(d.type_concept.expect("checked")));
                    f.predicates.push(self.concept_selection(col, &value)?);
                }
                _ if typed("TypeExclude") || k == "periodtypeexclude" => {}
                _ => {
                    let p = self.domain_attribute(d, &k, &value)?;
                    f.predicates.push(p);
                }
            }
        }
        Ok(f)
    }

    /// Attributes of one domain only.
    fn domain_attribute(&self, d: &Domain, key: &str, v: &Node<'_>) -> Result<Expr, CohortError> {
        let c = |name: &str| qc("c", name);
        let num = |name: &str| cast(c(name), DataType::Float64);
        // Circe compares counts and lengths with the whole part of the bound, measured values
        // with the bound rounded to 4 decimals.
        let numeric_range = |e: Expr, v: &Node<'_>| numeric_range(e, v, Precision::Decimal);
        let whole_range =
            |e: Expr, v: &Node<'_>| super::exprs::numeric_range(e, v, Precision::Whole);
        Ok(match (d.circe, key) {
            ("ConditionOccurrence", "conditionstatus") => {
                concept_list(int64(c("condition_status_concept_id")), v)?
            }
            ("ConditionOccurrence", "conditionstatuscs") => {
                self.concept_selection(int64(c("condition_status_concept_id")), v)?
            }
            ("ConditionOccurrence" | "DrugExposure", "stopreason") => {
                text_filter(c("stop_reason"), v)?
            }
            ("DrugExposure", "refills") => whole_range(num("refills"), v)?,
            ("DrugExposure", "quantity") => numeric_range(num("quantity"), v)?,
            ("ProcedureOccurrence" | "DeviceExposure", "quantity") => {
                whole_range(num("quantity"), v)?
            }
            ("DrugExposure", "dayssupply") => whole_range(num("days_supply"), v)?,
            ("DrugExposure", "routeconcept") => concept_list(int64(c("route_concept_id")), v)?,
            ("DrugExposure", "routeconceptcs") => {
                self.concept_selection(int64(c("route_concept_id")), v)?
            }
            ("DrugExposure", "lotnumber") => text_filter(c("lot_number"), v)?,
            ("ProcedureOccurrence", "modifier") => {
                concept_list(int64(c("modifier_concept_id")), v)?
            }
            ("ProcedureOccurrence", "modifiercs") => {
                self.concept_selection(int64(c("modifier_concept_id")), v)?
            }
            ("DeviceExposure", "uniquedeviceid") => text_filter(c("unique_device_id"), v)?,
            ("Specimen", "quantity") => numeric_range(num("quantity"), v)?,
            ("Specimen", "unit") => concept_list(int64(c("unit_concept_id")), v)?,
            ("Specimen", "unitcs") => self.concept_selection(int64(c("unit_concept_id")), v)?,
            ("Specimen", "anatomicsite") => concept_list(int64(c("anatomic_site_concept_id")), v)?,
            ("Specimen", "anatomicsitecs") => {
                self.concept_selection(int64(c("anatomic_site_concept_id")), v)?
            }
            ("Specimen", "diseasestatus") => {
                concept_list(int64(c("disease_status_concept_id")), v)?
            }
            ("Specimen", "diseasestatuscs") => {
                self.concept_selection(int64(c("disease_status_concept_id")), v)?
            }
            ("Specimen", "sourceid") => text_filter(c("specimen_source_id"), v)?,
            ("Measurement", "operator") => concept_list(int64(c("operator_concept_id")), v)?,
            ("Measurement", "operatorcs") => {
                self.concept_selection(int64(c("operator_concept_id")), v)?
            }
            ("Measurement" | "Observation", "valueasnumber") => {
                numeric_range(num("value_as_number"), v)?
            }
            ("Measurement" | "Observation", "valueasconcept") => {
                concept_list(int64(c("value_as_concept_id")), v)?
            }
            ("Measurement" | "Observation", "valueasconceptcs") => {
                self.concept_selection(int64(c("value_as_concept_id")), v)?
            }
            ("Measurement" | "Observation", "unit") => {
                concept_list(int64(c("unit_concept_id")), v)?
            }
            ("Measurement" | "Observation", "unitcs") => {
                self.concept_selection(int64(c("unit_concept_id")), v)?
            }
            ("Measurement", "rangelow") => numeric_range(num("range_low"), v)?,
            ("Measurement", "rangehigh") => numeric_range(num("range_high"), v)?,
            ("Measurement", "rangelowratio") => numeric_range(
                num("value_as_number")
                    / datafusion::functions::expr_fn::nullif(num("range_low"), lit(0.0)),
                v,
            )?,
            ("Measurement", "rangehighratio") => numeric_range(
                num("value_as_number")
                    / datafusion::functions::expr_fn::nullif(num("range_high"), lit(0.0)),
                v,
            )?,
            ("Measurement", "abnormal") => {
                if !v.bool()? {
                    lit(true)
                } else {
                    num("value_as_number")
                        .lt(num("range_low"))
                        .or(num("value_as_number").gt(num("range_high")))
                        .or(int64(c("value_as_concept_id"))
                            .in_list(vec![lit(4_155_142_i64), lit(4_155_143_i64)], false))
                }
            }
            ("Observation", "valueasstring") => text_filter(c("value_as_string"), v)?,
            ("Observation", "qualifier") => concept_list(int64(c("qualifier_concept_id")), v)?,
            ("Observation", "qualifiercs") => {
                self.concept_selection(int64(c("qualifier_concept_id")), v)?
            }
            ("VisitOccurrence", "visitlength") => {
                whole_range(days_between(c("c_start"), c("c_end")), v)?
            }
            ("ObservationPeriod", "periodlength") | ("ConditionEra" | "DrugEra", "eralength") => {
                whole_range(days_between(c("c_start"), c("c_end")), v)?
            }
            ("ConditionEra", "occurrencecount") => {
                whole_range(num("condition_occurrence_count"), v)?
            }
            ("DrugEra", "occurrencecount") => whole_range(num("drug_exposure_count"), v)?,
            ("DrugEra", "gapdays") => whole_range(num("gap_days"), v)?,
            _ => {
                return Err(v.unsupported(&format!(
                    "the {} attribute is not evaluated by this version",
                    v.path.rsplit('.').next().unwrap_or(key)
                )));
            }
        })
    }

    /// A `ConceptSetSelection` (`{CodesetId, IsExclusion}`).
    pub(super) fn concept_selection(&self, e: Expr, v: &Node<'_>) -> Result<Expr, CohortError> {
        // ATLAS writes `{"CodesetId": null}` for an unset selection: no filter.
        let Some(codeset) = v.get("CodesetId") else {
            return Ok(lit(true));
        };
        let p = self.in_codeset(e, &codeset)?;
        Ok(if v.flag("IsExclusion")? { !p } else { p })
    }
}

/// The domain table's rows as the criterion's own columns (`c_event`, `c_start`, `c_end`,
/// `c_visit`, `c_concept`) and the raw columns its filters read. Only those: narrow relations keep
/// the (often repeated) cohort plan small for the optimizer.
fn event_columns(table: &DataFrame, d: &Domain, filters: &Filters) -> Vec<Expr> {
    let mut needed: std::collections::BTreeSet<String> = filters
        .predicates
        .iter()
        .flat_map(|p| p.column_refs())
        .filter(|c| c.relation.as_ref().is_some_and(|r| r.table() == "c"))
        .map(|c| c.name.clone())
        .collect();
    needed.insert("person_id".into());
    if filters.provider {
        needed.insert("provider_id".into());
    }
    if filters.care_site {
        needed.insert("care_site_id".into());
    }
    if let Some(source) = d.source_concept {
        needed.insert(source.into());
    }
    if let Some(kind) = d.type_concept {
        needed.insert(kind.into());
    }
    let null = || cast(lit(datafusion::common::ScalarValue::Null), DataType::Int64);
    let start = date(qc_plain(d.start));
    let mut exprs: Vec<Expr> = table
        .schema()
        .fields()
        .iter()
        .filter(|f| needed.contains(f.name()))
        .map(|f| qc_plain(f.name()))
        .collect();
    exprs.push(int64(qc_plain(d.id.unwrap_or("person_id"))).alias("c_event"));
    exprs.push(start.clone().alias("c_start"));
    exprs.push(event_end(d, start).alias("c_end"));
    exprs.push(
        if d.visit {
            int64(qc_plain("visit_occurrence_id"))
        } else {
            null()
        }
        .alias("c_visit"),
    );
    exprs.push(
        d.concept
            .map_or_else(null, |c| int64(qc_plain(c)))
            .alias("c_concept"),
    );
    exprs
}

/// The event's end date, from the start date where the domain has no end or it is missing.
fn event_end(d: &Domain, start: Expr) -> Expr {
    match d.end {
        End::Column(c) => date(qc_plain(c)),
        End::OrNextDay(c) => datafusion::functions::expr_fn::coalesce(vec![
            date(qc_plain(c)),
            add_days(start, days(1)),
        ]),
        End::NextDay => add_days(start, days(1)),
        End::Drug => datafusion::functions::expr_fn::coalesce(vec![
            date(qc_plain("drug_exposure_end_date")),
            add_days(start.clone(), qc_plain("days_supply")),
            add_days(start, days(1)),
        ]),
    }
}

/// Circe's output columns. A user-defined period replaces the period's dates (its filters and
/// sort use the real ones); DOMAIN_CONCEPT counts are of the cause of death (0 when unknown) and
/// of an observation period's type, as in Circe.
fn circe_columns(d: &Domain, body: &Node<'_>, rows: DataFrame) -> Result<DataFrame, CohortError> {
    let user_date = |key: &str, real: &str| -> Result<Expr, CohortError> {
        match body.get("UserDefinedPeriod").and_then(|u| u.get(key)) {
            Some(day) if d.circe == "ObservationPeriod" => date_literal(&day),
            _ => Ok(qc("c", real)),
        }
    };
    let counted_concept = match d.circe {
        "Death" => datafusion::functions::expr_fn::coalesce(vec![qc("c", "c_concept"), lit(0_i64)]),
        "ObservationPeriod" => int64(qc("c", "period_type_concept_id")),
        _ => qc("c", "c_concept"),
    };
    Ok(rows.select(vec![
        int64(qc("c", "person_id")).alias("person_id"),
        qc("c", "c_event").alias("event_id"),
        user_date("StartDate", "c_start")?.alias("start_date"),
        user_date("EndDate", "c_end")?.alias("end_date"),
        qc("c", "c_visit").alias("visit_occurrence_id"),
        qc("c", "c_start").alias("sort_date"),
        counted_concept.alias("domain_concept_id"),
    ])?)
}

#[derive(Default)]
struct Filters {
    person: bool,
    visit: bool,
    provider: bool,
    care_site: bool,
    predicates: Vec<Expr>,
}

fn qc_plain(name: &str) -> Expr {
    Expr::Column(Column::from_name(name))
}

/// The JSON key prefix of a domain's own attributes (`Condition`, `Drug`, `Visit`…).
fn prefix(d: &Domain) -> &'static str {
    d.circe
        .trim_end_matches("Occurrence")
        .trim_end_matches("Exposure")
}

/// `DateAdjustment {StartWith, StartOffset, EndWith, EndOffset}`: the criterion's dates moved,
/// rows whose adjusted end precedes their start dropped.
fn adjust_dates(rows: DataFrame, d: &Domain, a: &Node<'_>) -> Result<DataFrame, CohortError> {
    let pick = |key: &str, default: &str| -> Result<Expr, CohortError> {
        let which = a.opt_str(key)?.unwrap_or(default);
        Ok(match which {
            // Death's dates are fixed whatever the adjustment says.
            _ if d.circe == "Death" && key == "StartWith" => qc_plain("c_start"),
            _ if d.circe == "Death" => qc_plain("c_end"),
            "START_DATE" => qc_plain("c_start"),
            "END_DATE" => qc_plain("c_end"),
            other => {
                return Err(a.invalid(&format!("{key} {other:?} is not START_DATE or END_DATE")));
            }
        })
    };
    let start = add_days(
        pick("StartWith", "START_DATE")?,
        lit(a.opt_i64("StartOffset")?.unwrap_or(0) as i32),
    );
    let end = add_days(
        pick("EndWith", "END_DATE")?,
        lit(a.opt_i64("EndOffset")?.unwrap_or(0) as i32),
    );
    Ok(rows
        .with_column("c_adjusted_start", start)?
        .with_column("c_end", end)?
        .with_column("c_start", qc_plain("c_adjusted_start"))?
        .filter(qc_plain("c_end").gt_eq(qc_plain("c_start")))?)
}
