"""Research queries over the synthetic dataset (`strata generate`), each checked against DuckDB on
the same Parquet files: through the local server by test_queries.py and through an S3-compatible
store by test_s3.py."""

from __future__ import annotations

T2D = 201826
METFORMIN = 1503297
HBA1C = 3004410
BRCA1 = ("chr17", 43044295, 43125483)


def descendants(ancestor: int) -> str:
    return f"(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = {ancestor})"


GEN_QUERIES = {
    "t2d_prevalence_by_sex_age": f"""
        WITH t2d AS (
            SELECT DISTINCT co.person_id
            FROM condition_occurrence co
            JOIN concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
            WHERE ca.ancestor_concept_id = {T2D}
        )
        SELECT p.gender_concept_id AS sex,
               CASE WHEN 2024 - p.year_of_birth < 40 THEN 'under 40'
                    WHEN 2024 - p.year_of_birth < 65 THEN '40-64'
                    ELSE '65+' END AS age_group,
               COUNT(*) AS persons,
               COUNT(t2d.person_id) AS t2d_cases
        FROM person p
        LEFT JOIN t2d ON t2d.person_id = p.person_id
        GROUP BY 1, 2
        HAVING COUNT(*) > 20
    """,
    "metformin_within_365_days_of_t2d": f"""
        WITH dx AS (
            SELECT co.person_id, MIN(co.condition_start_date) AS first_dx
            FROM condition_occurrence co
            WHERE co.condition_concept_id IN {descendants(T2D)}
            GROUP BY co.person_id
        ), rx AS (
            SELECT de.person_id, de.drug_exposure_start_date AS start_date
            FROM drug_exposure de
            WHERE de.drug_concept_id IN {descendants(METFORMIN)}
        )
        SELECT DISTINCT dx.person_id
        FROM dx
        JOIN rx ON rx.person_id = dx.person_id
               AND rx.start_date >= dx.first_dx
               AND rx.start_date <= dx.first_dx + INTERVAL '365 days'
    """,
    "metformin_within_365_days_by_sex": f"""
        WITH dx AS (
            SELECT co.person_id, MIN(co.condition_start_date) AS first_dx
            FROM condition_occurrence co
            JOIN concept_ancestor ca ON ca.descendant_concept_id = co.condition_concept_id
            WHERE ca.ancestor_concept_id = {T2D}
            GROUP BY co.person_id
        )
        SELECT p.gender_concept_id AS sex, COUNT(DISTINCT dx.person_id) AS treated
        FROM dx
        JOIN drug_exposure de ON de.person_id = dx.person_id
        JOIN concept_ancestor ca ON ca.descendant_concept_id = de.drug_concept_id
        JOIN person p ON p.person_id = dx.person_id
        WHERE ca.ancestor_concept_id = {METFORMIN}
          AND de.drug_exposure_start_date BETWEEN dx.first_dx AND dx.first_dx + INTERVAL '365 days'
        GROUP BY p.gender_concept_id
        HAVING COUNT(DISTINCT dx.person_id) > 20
    """,
    "latest_hba1c_per_person": f"""
        WITH ranked AS (
            SELECT m.person_id, m.value_as_number, m.measurement_date,
                   ROW_NUMBER() OVER (PARTITION BY m.person_id
                                      ORDER BY m.measurement_date DESC, m.measurement_id DESC) AS rn
            FROM measurement m
            WHERE m.measurement_concept_id = {HBA1C} AND m.value_as_number IS NOT NULL
        )
        SELECT person_id, measurement_date, value_as_number FROM ranked WHERE rn = 1
    """,
    "latest_hba1c_by_sex": f"""
        WITH ranked AS (
            SELECT m.person_id, m.value_as_number,
                   ROW_NUMBER() OVER (PARTITION BY m.person_id
                                      ORDER BY m.measurement_date DESC, m.measurement_id DESC) AS rn
            FROM measurement m
            WHERE m.measurement_concept_id = {HBA1C} AND m.value_as_number IS NOT NULL
        )
        SELECT p.gender_concept_id AS sex, COUNT(*) AS persons, AVG(r.value_as_number) AS mean_latest_hba1c
        FROM ranked r JOIN person p ON p.person_id = r.person_id
        WHERE r.rn = 1
        GROUP BY p.gender_concept_id
        HAVING COUNT(*) > 20
    """,
    "fitbit_steps_by_cohort": f"""
        WITH t2d AS (
            SELECT DISTINCT person_id FROM condition_occurrence
            WHERE condition_concept_id IN {descendants(T2D)}
        )
        SELECT CASE WHEN t2d.person_id IS NULL THEN 'other' ELSE 't2d' END AS cohort,
               COUNT(DISTINCT a.person_id) AS persons,
               AVG(a.steps) AS mean_daily_steps
        FROM activity_summary a
        LEFT JOIN t2d ON t2d.person_id = a.person_id
        GROUP BY 1
        HAVING COUNT(DISTINCT a.person_id) > 20
    """,
    "brca1_carriers": f"""
        SELECT g.person_id, v.vid, v.gene_symbol, v.consequence, g.gt
        FROM genotype g
        JOIN variant v ON v.vid = g.vid
        WHERE v.contig = '{BRCA1[0]}' AND v.position BETWEEN {BRCA1[1]} AND {BRCA1[2]}
    """,
    "brca1_variants": f"""
        SELECT vid, position, ref_allele, alt_allele, gene_symbol, clinvar_classification, gvs_all_af
        FROM variant
        WHERE contig = '{BRCA1[0]}' AND position BETWEEN {BRCA1[1]} AND {BRCA1[2]}
    """,
    "conditions_with_names": """
        SELECT c.concept_name, co.condition_concept_id,
               COUNT(*) AS occurrences, COUNT(DISTINCT co.person_id) AS persons
        FROM condition_occurrence co
        JOIN concept c ON c.concept_id = co.condition_concept_id
        GROUP BY c.concept_name, co.condition_concept_id
        HAVING COUNT(DISTINCT co.person_id) > 20
    """,
    "hypertension_and_t2d_overlap": f"""
        SELECT COUNT(*) AS persons FROM person p
        WHERE EXISTS (SELECT 1 FROM condition_occurrence c
                      WHERE c.person_id = p.person_id AND c.condition_concept_id IN {descendants(320128)})
          AND EXISTS (SELECT 1 FROM condition_occurrence c
                      WHERE c.person_id = p.person_id AND c.condition_concept_id IN {descendants(T2D)})
    """,
    "survey_answers_by_question": """
        SELECT question_concept_id, answer_concept_id, COUNT(DISTINCT person_id) AS persons
        FROM ds_survey
        GROUP BY question_concept_id, answer_concept_id
        HAVING COUNT(DISTINCT person_id) > 20
    """,
}
