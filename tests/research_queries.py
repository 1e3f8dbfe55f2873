"""Ordinary research SQL — per-participant intermediates, first events, windows per person, top-N
lists, scalar subqueries, Table 1 summaries — as researchers write it for notebooks and papers.
Each query runs unchanged through Strata and through DuckDB on the same Parquet files.

A query's `counts` are columns whose value is itself a participant count (a cell of 1..20 is
suppressed); `stats` are statistical columns whose participants `participants` computes per row
(same keys, column `p`); every other column must equal DuckDB's value exactly.
"""

from __future__ import annotations

from dataclasses import dataclass, field

T2D = 201826
HYPERTENSION = 320128
METFORMIN = 1503297
HBA1C = 3004410
LISINOPRIL_INGREDIENT = 1308216


@dataclass
class Query:
    name: str
    sql: str
    keys: list[str] = field(default_factory=list)
    counts: list[str] = field(default_factory=list)
    stats: list[str] = field(default_factory=list)
    participants: str | None = None


FIRST_T2D = f"""first_dx AS (
    SELECT co.person_id, MIN(co.condition_start_date) AS d
    FROM condition_occurrence co JOIN concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
    WHERE ca.ancestor_concept_id = {T2D} GROUP BY co.person_id)"""

GENERATED = [
    Query(
        "treated_within_30_days_of_first_diagnosis",
        f"""WITH {FIRST_T2D}
        SELECT COUNT(DISTINCT f.person_id) AS treated
        FROM first_dx f JOIN drug_exposure de ON de.person_id = f.person_id
        JOIN concept_ancestor ca ON ca.descendant_concept_id = de.drug_concept_id
        WHERE ca.ancestor_concept_id = {METFORMIN}
          AND de.drug_exposure_start_date BETWEEN f.d AND f.d + INTERVAL '30 days'""",
        counts=["treated"],
    ),
    Query(
        "mean_visits_per_person_by_birth_decade",
        """WITH v AS (SELECT person_id, COUNT(*) AS n FROM visit_occurrence GROUP BY person_id)
        SELECT CAST(FLOOR(p.year_of_birth / 10.0) * 10 AS INT) AS decade, AVG(v.n) AS mean_visits,
               COUNT(*) AS persons
        FROM v JOIN person p ON p.person_id = v.person_id GROUP BY 1""",
        keys=["decade"],
        counts=["persons"],
        stats=["mean_visits"],
        participants="""SELECT CAST(FLOOR(p.year_of_birth / 10.0) * 10 AS INT) AS decade, COUNT(DISTINCT v.person_id) AS p
        FROM visit_occurrence v JOIN person p ON p.person_id = v.person_id GROUP BY 1""",
    ),
    Query(
        "incidence_by_year_of_first_diagnosis",
        f"""WITH {FIRST_T2D}
        SELECT EXTRACT(YEAR FROM d) AS y, COUNT(*) AS incident FROM first_dx GROUP BY 1""",
        keys=["y"],
        counts=["incident"],
    ),
    Query(
        "persons_with_diagnoses_on_two_or_more_days",
        f"""SELECT COUNT(*) AS persons FROM (
            SELECT person_id FROM condition_occurrence WHERE condition_concept_id = {HYPERTENSION}
            GROUP BY person_id HAVING COUNT(DISTINCT condition_start_date) >= 2) t""",
        counts=["persons"],
    ),
    Query(
        "per_person_visit_summary",
        """SELECT person_id, COUNT(*) AS visits, MIN(visit_start_date) AS first_visit, MAX(visit_end_date) AS last_visit
        FROM visit_occurrence GROUP BY person_id ORDER BY person_id LIMIT 200""",
        keys=["person_id"],
    ),
    Query(
        "latest_hba1c_per_person_by_sex",
        f"""WITH ranked AS (
            SELECT person_id, value_as_number,
                   ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, measurement_id DESC) AS rn
            FROM measurement WHERE measurement_concept_id = {HBA1C} AND value_as_number IS NOT NULL)
        SELECT p.gender_concept_id AS sex, COUNT(*) AS persons, AVG(r.value_as_number) AS mean_latest
        FROM ranked r JOIN person p ON p.person_id = r.person_id WHERE r.rn = 1 GROUP BY 1""",
        keys=["sex"],
        counts=["persons"],
        stats=["mean_latest"],
        participants=f"""SELECT p.gender_concept_id AS sex, COUNT(DISTINCT m.person_id) AS p FROM measurement m
        JOIN person p ON p.person_id = m.person_id WHERE measurement_concept_id = {HBA1C} AND value_as_number IS NOT NULL GROUP BY 1""",
    ),
    Query(
        "latest_hba1c_per_person_rows",
        f"""SELECT person_id, measurement_date, value_as_number FROM (
            SELECT person_id, measurement_date, value_as_number,
                   ROW_NUMBER() OVER (PARTITION BY person_id ORDER BY measurement_date DESC, measurement_id DESC) AS rn
            FROM measurement WHERE measurement_concept_id = {HBA1C}) t WHERE rn = 1 ORDER BY person_id LIMIT 100""",
        keys=["person_id"],
    ),
    Query(
        "top_40_conditions",
        """SELECT condition_concept_id AS concept, COUNT(DISTINCT person_id) AS persons
        FROM condition_occurrence GROUP BY 1 ORDER BY persons DESC, concept LIMIT 40""",
        keys=["concept"],
        counts=["persons"],
    ),
    Query(
        "scalar_subqueries_in_select",
        f"""WITH {FIRST_T2D}
        SELECT (SELECT COUNT(*) FROM first_dx) AS n_dx, (SELECT COUNT(*) FROM person) AS n_persons,
               100.0 * (SELECT COUNT(*) FROM first_dx) / (SELECT COUNT(*) FROM person) AS pct""",
        counts=["n_dx", "n_persons"],
    ),
    Query(
        "table1_sex_with_percentages",
        """SELECT gender_concept_id AS sex, COUNT(*) AS n, 100.0 * COUNT(*) / SUM(COUNT(*)) OVER () AS pct
        FROM person GROUP BY 1""",
        keys=["sex"],
        counts=["n"],
    ),
    Query(
        "table1_age_mean_and_sd",
        """SELECT AVG(2023 - year_of_birth) AS mean_age, STDDEV(2023 - year_of_birth) AS sd_age,
                  MIN(year_of_birth) AS oldest, COUNT(*) AS n FROM person""",
        counts=["n"],
    ),
    Query(
        "table1_race",
        "SELECT race_concept_id AS race, COUNT(*) AS n FROM person GROUP BY 1",
        keys=["race"],
        counts=["n"],
    ),
    Query(
        "visits_per_year_and_type",
        """SELECT EXTRACT(YEAR FROM visit_start_date) AS y, visit_concept_id AS type,
                  COUNT(DISTINCT person_id) AS persons, COUNT(*) AS visits
        FROM visit_occurrence GROUP BY 1, 2""",
        keys=["y", "type"],
        counts=["persons"],
        stats=["visits"],
        participants="""SELECT EXTRACT(YEAR FROM visit_start_date) AS y, visit_concept_id AS type, COUNT(DISTINCT person_id) AS p
        FROM visit_occurrence GROUP BY 1, 2""",
    ),
    Query(
        "drug_after_diagnosis",
        f"""SELECT COUNT(DISTINCT c.person_id) AS persons
        FROM condition_occurrence c JOIN drug_exposure d ON d.person_id = c.person_id
        JOIN concept_ancestor ca ON ca.descendant_concept_id = d.drug_concept_id
        WHERE c.condition_concept_id = {HYPERTENSION} AND ca.ancestor_concept_id = {LISINOPRIL_INGREDIENT}
          AND d.drug_exposure_start_date >= c.condition_start_date""",
        counts=["persons"],
    ),
    Query(
        "hba1c_by_sex",
        f"""SELECT p.gender_concept_id AS sex, AVG(m.value_as_number) AS mean, MIN(m.value_as_number) AS lo,
                  MAX(m.value_as_number) AS hi, COUNT(DISTINCT m.person_id) AS persons
        FROM measurement m JOIN person p ON p.person_id = m.person_id
        WHERE m.measurement_concept_id = {HBA1C} GROUP BY 1""",
        keys=["sex"],
        counts=["persons"],
        stats=["mean", "lo", "hi"],
        participants=f"""SELECT p.gender_concept_id AS sex, COUNT(DISTINCT m.person_id) AS p FROM measurement m
        JOIN person p ON p.person_id = m.person_id WHERE m.measurement_concept_id = {HBA1C} AND m.value_as_number IS NOT NULL GROUP BY 1""",
    ),
    Query(
        "survey_answers",
        """SELECT question_concept_id AS q, answer_concept_id AS a, COUNT(DISTINCT person_id) AS persons
        FROM ds_survey GROUP BY 1, 2""",
        keys=["q", "a"],
        counts=["persons"],
    ),
    Query(
        "mean_daily_steps_by_sex",
        """WITH s AS (SELECT person_id, AVG(steps) AS daily FROM activity_summary GROUP BY person_id)
        SELECT p.gender_concept_id AS sex, AVG(s.daily) AS mean_daily_steps, COUNT(*) AS persons
        FROM s JOIN person p ON p.person_id = s.person_id GROUP BY 1""",
        keys=["sex"],
        counts=["persons"],
        stats=["mean_daily_steps"],
        participants="""SELECT p.gender_concept_id AS sex, COUNT(DISTINCT s.person_id) AS p FROM activity_summary s
        JOIN person p ON p.person_id = s.person_id GROUP BY 1""",
    ),
    Query(
        "daily_steps_with_and_without_diabetes",
        f"""WITH t2d AS (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_concept_id = {T2D})
        SELECT CASE WHEN t2d.person_id IS NULL THEN 'other' ELSE 'type 2 diabetes' END AS cohort,
            COUNT(DISTINCT a.person_id) AS persons, AVG(a.steps) AS mean_daily_steps
        FROM activity_summary a LEFT JOIN t2d ON t2d.person_id = a.person_id GROUP BY 1""",
        keys=["cohort"],
        counts=["persons"],
        stats=["mean_daily_steps"],
        participants=f"""SELECT CASE WHEN t.person_id IS NULL THEN 'other' ELSE 'type 2 diabetes' END AS cohort,
            COUNT(DISTINCT a.person_id) AS p FROM activity_summary a
        LEFT JOIN (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_concept_id = {T2D}) t
        ON t.person_id = a.person_id WHERE a.steps IS NOT NULL GROUP BY 1""",
    ),
    Query(
        "hypertension_among_diagnosed_right_join",
        f"""WITH {FIRST_T2D}, h AS (SELECT DISTINCT person_id FROM condition_occurrence WHERE condition_concept_id = {HYPERTENSION})
        SELECT COUNT(DISTINCT h.person_id) AS with_hypertension, COUNT(DISTINCT f.person_id) AS diagnosed
        FROM h RIGHT JOIN first_dx f ON h.person_id = f.person_id""",
        counts=["with_hypertension", "diagnosed"],
    ),
    Query(
        "diabetes_and_hypertension",
        f"""WITH {FIRST_T2D}
        SELECT COUNT(*) AS both_conditions FROM first_dx f
        WHERE EXISTS (SELECT 1 FROM condition_occurrence c WHERE c.person_id = f.person_id AND c.condition_concept_id = {HYPERTENSION})""",
        counts=["both_conditions"],
    ),
    Query(
        "persons_without_diabetes",
        f"""WITH {FIRST_T2D}
        SELECT COUNT(*) AS without_t2d FROM person p WHERE NOT EXISTS (SELECT 1 FROM first_dx f WHERE f.person_id = p.person_id)""",
        counts=["without_t2d"],
    ),
    Query(
        "comorbidity_histogram",
        """WITH k AS (SELECT person_id, COUNT(DISTINCT condition_concept_id) AS conditions FROM condition_occurrence GROUP BY person_id)
        SELECT conditions, COUNT(*) AS persons FROM k GROUP BY 1""",
        keys=["conditions"],
        counts=["persons"],
    ),
    Query(
        "observation_period_length_by_sex",
        """SELECT p.gender_concept_id AS sex,
                  AVG(EXTRACT(YEAR FROM o.observation_period_end_date) - EXTRACT(YEAR FROM o.observation_period_start_date)) AS years,
                  COUNT(*) AS persons
        FROM observation_period o JOIN person p ON p.person_id = o.person_id GROUP BY 1""",
        keys=["sex"],
        counts=["persons"],
        stats=["years"],
        participants="""SELECT p.gender_concept_id AS sex, COUNT(DISTINCT o.person_id) AS p FROM observation_period o
        JOIN person p ON p.person_id = o.person_id GROUP BY 1""",
    ),
    Query(
        "first_diagnosis_by_birth_decade",
        f"""WITH {FIRST_T2D}
        SELECT CAST(FLOOR(p.year_of_birth / 10.0) * 10 AS INT) AS decade, COUNT(*) AS persons,
               MIN(f.d) AS earliest
        FROM first_dx f JOIN person p ON p.person_id = f.person_id GROUP BY 1""",
        keys=["decade"],
        counts=["persons"],
        stats=["earliest"],
        participants=f"""WITH {FIRST_T2D} SELECT CAST(FLOOR(p.year_of_birth / 10.0) * 10 AS INT) AS decade, COUNT(*) AS p
        FROM first_dx f JOIN person p ON p.person_id = f.person_id GROUP BY 1""",
    ),
    Query(
        "high_hba1c_with_a_visit",
        f"""SELECT COUNT(DISTINCT m.person_id) AS persons FROM measurement m
        WHERE m.measurement_concept_id = {HBA1C} AND m.value_as_number > 7
          AND EXISTS (SELECT 1 FROM visit_occurrence v WHERE v.person_id = m.person_id)""",
        counts=["persons"],
    ),
    Query(
        "incidence_with_previous_year",
        f"""WITH {FIRST_T2D}, by_year AS (SELECT EXTRACT(YEAR FROM d) AS y, COUNT(*) AS n FROM first_dx GROUP BY 1)
        SELECT y, n, LAG(n) OVER (ORDER BY y) AS previous, SUM(n) OVER (ORDER BY y) AS cumulative
        FROM by_year WHERE y >= 2016""",
        keys=["y"],
        counts=["n", "previous", "cumulative"],
    ),
    Query(
        "median_visits_per_person_by_sex",
        """WITH v AS (SELECT person_id, COUNT(*) AS n FROM visit_occurrence GROUP BY person_id)
        SELECT p.gender_concept_id AS sex, MEDIAN(v.n) AS median_visits FROM v JOIN person p ON p.person_id = v.person_id GROUP BY 1""",
        keys=["sex"],
        stats=["median_visits"],
        participants="""SELECT p.gender_concept_id AS sex, COUNT(DISTINCT v.person_id) AS p FROM visit_occurrence v
        JOIN person p ON p.person_id = v.person_id GROUP BY 1""",
    ),
    Query(
        "share_of_diabetics_by_sex_with_subquery_denominator",
        f"""WITH {FIRST_T2D}
        SELECT p.gender_concept_id AS sex, COUNT(*) AS persons,
               100.0 * COUNT(*) / (SELECT COUNT(*) FROM first_dx) AS pct
        FROM first_dx f JOIN person p ON p.person_id = f.person_id GROUP BY 1""",
        keys=["sex"],
        counts=["persons"],
    ),
]

GI_BLEED = 192671
CELECOXIB = 1118084

GIBLEED = [
    Query(
        "gibleed_top_conditions",
        """SELECT condition_concept_id AS concept, COUNT(DISTINCT person_id) AS persons
        FROM condition_occurrence GROUP BY 1 ORDER BY persons DESC, concept LIMIT 25""",
        keys=["concept"],
        counts=["persons"],
    ),
    Query(
        "gibleed_all_persons",
        "SELECT COUNT(*) AS persons, COUNT(DISTINCT gender_concept_id) AS sexes FROM person",
        counts=["persons"],
    ),
    Query(
        "gibleed_bleeding_by_sex",
        f"""SELECT p.gender_concept_id AS sex, COUNT(DISTINCT c.person_id) AS persons
        FROM condition_occurrence c JOIN person p ON p.person_id = c.person_id
        WHERE c.condition_concept_id = {GI_BLEED} GROUP BY 1""",
        keys=["sex"],
        counts=["persons"],
    ),
    Query(
        "gibleed_first_celecoxib_by_year",
        f"""WITH first_use AS (SELECT person_id, MIN(drug_exposure_start_date) AS d FROM drug_exposure
            WHERE drug_concept_id = {CELECOXIB} GROUP BY person_id)
        SELECT EXTRACT(YEAR FROM d) AS y, COUNT(*) AS persons FROM first_use GROUP BY 1""",
        keys=["y"],
        counts=["persons"],
    ),
    Query(
        "gibleed_age_at_first_bleed",
        f"""WITH first_bleed AS (SELECT person_id, MIN(condition_start_date) AS d FROM condition_occurrence
            WHERE condition_concept_id = {GI_BLEED} GROUP BY person_id)
        SELECT AVG(EXTRACT(YEAR FROM f.d) - p.year_of_birth) AS mean_age, COUNT(*) AS persons
        FROM first_bleed f JOIN person p ON p.person_id = f.person_id""",
        counts=["persons"],
    ),
    Query(
        "gibleed_visits_per_person",
        """WITH v AS (SELECT person_id, COUNT(*) AS n FROM visit_occurrence GROUP BY person_id)
        SELECT AVG(n) AS mean_visits, MAX(n) AS most_visits, COUNT(*) AS persons FROM v""",
        counts=["persons"],
    ),
    Query(
        "gibleed_drugs_within_30_days_after_bleeding",
        f"""WITH first_bleed AS (SELECT person_id, MIN(condition_start_date) AS d FROM condition_occurrence
            WHERE condition_concept_id = {GI_BLEED} GROUP BY person_id)
        SELECT de.drug_concept_id AS drug, COUNT(DISTINCT de.person_id) AS persons
        FROM first_bleed f JOIN drug_exposure de ON de.person_id = f.person_id
        WHERE de.drug_exposure_start_date BETWEEN f.d AND f.d + INTERVAL '30 days'
        GROUP BY 1 ORDER BY persons DESC, drug LIMIT 15""",
        keys=["drug"],
        counts=["persons"],
    ),
]
