"""OHDSI's Python port of Circe (`ohdsi-circepy`, PyPI) as an independent reference: it compiles
a cohort definition its own way (Ibis) and runs it in DuckDB over the same Parquet files Strata
serves."""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from helpers import dataset_table_dirs

DEFINITIONS = Path(__file__).parent / "cohorts" / "circe"


def load(name: str) -> dict:
    """The Circe definition `tests/cohorts/circe/NAME.json`."""
    return json.loads((DEFINITIONS / f"{name}.json").read_text())


class _ArrowCompat:
    """DuckDB 2 renamed `fetch_arrow_table`/`arrow` to `to_arrow_table`; Ibis 12 still calls the
    old names. Forwards everything else to the wrapped connection or result."""

    _WRAP = {"execute", "sql", "query", "cursor", "table", "view", "read_parquet", "from_arrow"}

    def __init__(self, inner):
        self._inner = inner

    def fetch_arrow_table(self, *a, **k):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DuckDB 2 warns about an extra copy
            return self._inner.to_arrow_table(*a, **k)

    def arrow(self, *a, **k):
        return self.fetch_arrow_table(*a, **k)

    def fetch_record_batch(self, *a, **k):
        return self._inner.to_arrow_reader(*a, **k)

    def __getattr__(self, name):
        value = getattr(self._inner, name)
        if name in self._WRAP and callable(value):

            def wrapped(*a, **k):
                out = value(*a, **k)
                return _ArrowCompat(out) if out is not None else out

            return wrapped
        return value


class CirceReference:
    def __init__(self, dataset_dir: Path):
        import ibis

        self.con = ibis.duckdb.connect()
        self.con.con = _ArrowCompat(self.con.con)
        self.con.raw_sql("SET threads TO 2")
        self.con.raw_sql("CREATE SCHEMA cdm")
        for name, path in dataset_table_dirs(dataset_dir).items():
            glob = str(path / "**" / "*.parquet").replace("'", "''")
            self.con.raw_sql(
                f'CREATE VIEW cdm."{name}" AS SELECT * FROM '
                f"read_parquet('{glob}', hive_partitioning=false, union_by_name=true)"
            )
        for name in ("condition_era", "drug_era", "device_exposure", "death"):
            if name not in dataset_table_dirs(dataset_dir):
                self._empty(name)

    def _empty(self, name: str) -> None:
        columns = {
            "condition_era": "condition_era_id BIGINT, person_id BIGINT, condition_concept_id INT, "
            "condition_era_start_date DATE, condition_era_end_date DATE, condition_occurrence_count INT",
            "drug_era": "drug_era_id BIGINT, person_id BIGINT, drug_concept_id INT, drug_era_start_date DATE, "
            "drug_era_end_date DATE, drug_exposure_count INT, gap_days INT",
            "device_exposure": "device_exposure_id BIGINT, person_id BIGINT, device_concept_id INT, "
            "device_exposure_start_date DATE, device_exposure_end_date DATE, device_type_concept_id INT, "
            "unique_device_id VARCHAR, quantity INT, visit_occurrence_id BIGINT, device_source_concept_id INT, "
            "provider_id BIGINT",
            "death": "person_id BIGINT, death_date DATE, death_type_concept_id INT, cause_concept_id INT, "
            "cause_source_concept_id INT",
        }[name]
        self.con.raw_sql(f"CREATE TABLE cdm.{name} ({columns})")

    def rows(self, definition: dict) -> set[tuple]:
        from circe.api import build_cohort, cohort_expression_from_json

        expression = cohort_expression_from_json(json.dumps(definition))
        relation = build_cohort(expression, backend=self.con, cdm_schema="cdm")
        t = relation.to_pyarrow()
        names = t.column_names
        pick = lambda *options: t.column(next(n for n in options if n in names)).to_pylist()  # noqa: E731
        return set(
            zip(
                pick("subject_id", "person_id"),
                pick("cohort_start_date", "start_date"),
                pick("cohort_end_date", "end_date"),
            )
        )
