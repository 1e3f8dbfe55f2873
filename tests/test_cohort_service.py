"""CohortService over gRPC, found by a generic client through server reflection alone (Python
grpcio + grpcio-reflection; no generated stubs), with passports and disclosure control, checked
against DuckDB on the same files."""

from __future__ import annotations

import json

import grpc
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from circe_reference import CirceReference, load
from helpers import duck_query, run_sql, wait_for

T = 20
SERVICE = "strata.v1.CohortService"


class ReflectedClient:
    """Builds request/response classes from the server's own descriptors."""

    def __init__(self, target: str):
        self.channel = grpc.insecure_channel(target)
        stub = reflection_pb2_grpc.ServerReflectionStub(self.channel)

        def ask(**kw):
            return next(iter(stub.ServerReflectionInfo(iter([reflection_pb2.ServerReflectionRequest(**kw)]))))

        services = [s.name for s in ask(list_services="").list_services_response.service]
        self.services = services
        pool = descriptor_pool.DescriptorPool()
        for raw in ask(file_containing_symbol=SERVICE).file_descriptor_response.file_descriptor_proto:
            pool.Add(descriptor_pb2.FileDescriptorProto.FromString(raw))
        self.service = pool.FindServiceByName(SERVICE)

    def call(self, method: str, token: str | None, **fields):
        m = self.service.methods_by_name[method]
        request_cls = message_factory.GetMessageClass(m.input_type)
        response_cls = message_factory.GetMessageClass(m.output_type)
        rpc = self.channel.unary_unary(
            f"/{SERVICE}/{method}",
            request_serializer=lambda r: r.SerializeToString(),
            response_deserializer=response_cls.FromString,
        )
        metadata = [("authorization", f"Bearer {token}")] if token else []
        return rpc(request_cls(**fields), metadata=metadata, timeout=120)


@pytest.fixture(scope="module")
def client(gen_passport_server):
    c = ReflectedClient(f"{gen_passport_server.host}:{gen_passport_server.port}")
    yield c
    c.channel.close()


def condition(concept: int, descendants: bool = False) -> dict:
    return {
        "includes": [
            {
                "id": "g1",
                "temporal": False,
                "items": [
                    {
                        "id": "i1",
                        "type": "CONDITION",
                        "searchParameters": [
                            {"parameterId": "p1", "name": "x", "domain": "CONDITION", "type": "SNOMED",
                             "group": descendants, "ancestorData": False, "standard": True, "conceptId": concept}
                        ],
                        "modifiers": [],
                    }
                ],
            }
        ],
        "excludes": [],
        "dataFilters": [],
    }


def test_reflection_lists_the_services(client):
    assert SERVICE in client.services
    assert "grpc.health.v1.Health" in client.services
    assert set(client.service.methods_by_name) >= {"CountParticipants", "Breakdown"}


def test_count_participants_is_protected(client, mint_token, gen_duck):
    token = mint_token("controlled", "cs-count", "--ttl", "1d")
    for concept, persons in ((4310024, 40), (257628, 21), (441267, 5)):
        r = client.call("CountParticipants", token, definition_json=json.dumps(condition(concept)))
        assert r.threshold == T
        if persons <= T:
            assert r.suppressed and not r.HasField("count")
        else:
            assert not r.suppressed and r.count == persons


def test_descendants_includes_and_excludes_match_duckdb(client, mint_token, gen_duck):
    token = mint_token("controlled", "cs-sets", "--ttl", "1d")
    d = condition(201826, descendants=True)
    d["excludes"] = [condition(320128)["includes"][0]]
    d["includes"].append(
        {"id": "g2", "temporal": False, "items": [{"id": "i2", "type": "PERSON", "searchParameters": [
            {"parameterId": "p2", "name": "female", "domain": "PERSON", "type": "GENDER", "group": False,
             "ancestorData": False, "standard": True, "conceptId": 8532}], "modifiers": []}]}
    )
    want = duck_query(
        gen_duck,
        "SELECT COUNT(DISTINCT c.person_id) AS n FROM condition_occurrence c "
        "JOIN concept_ancestor a ON a.descendant_concept_id = c.condition_concept_id AND a.ancestor_concept_id = 201826 "
        "JOIN person p ON p.person_id = c.person_id AND p.gender_concept_id = 8532 "
        "WHERE c.person_id NOT IN (SELECT person_id FROM condition_occurrence WHERE condition_concept_id = 320128)",
    ).to_pylist()[0]["n"]
    assert want > T
    r = client.call("CountParticipants", token, definition_json=json.dumps(d))
    assert r.count == want


def test_breakdown_by_sex_is_protected(client, mint_token, gen_duck):
    token = mint_token("controlled", "cs-breakdown", "--ttl", "1d")
    r = client.call("Breakdown", token, definition_json=json.dumps(condition(4310024)), attribute="race")
    truth = {
        str(x["r"]): x["n"]
        for x in duck_query(
            gen_duck,
            "SELECT p.race_concept_id AS r, COUNT(DISTINCT p.person_id) AS n FROM person p JOIN condition_occurrence c "
            "ON c.person_id = p.person_id WHERE c.condition_concept_id = 4310024 GROUP BY 1",
        ).to_pylist()
    }
    got = {row.value: (row.count if row.HasField("count") else None) for row in r.rows}
    assert set(got) == set(truth)
    for k, n in truth.items():
        if n <= T:
            assert got[k] is None
        elif got[k] is not None:
            assert got[k] == n
    assert r.suppressed_cells == sum(1 for v in got.values() if v is None)


def test_aggregates_only_counts_are_rounded(client, mint_token):
    token = mint_token("controlled", "cs-dash", "--egress", "aggregates", "--ttl", "1d")
    r = client.call("CountParticipants", token, definition_json=json.dumps(condition(257628)))
    assert r.count == 40 and r.rounding == 20


def test_errors_and_tiers(client, mint_token):
    token = mint_token("registered", "cs-errors", "--ttl", "1d")
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", None, definition_json=json.dumps(condition(201826)))
    assert e.value.code() == grpc.StatusCode.UNAUTHENTICATED
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", token, definition_json="{not json")
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    d = condition(201826)
    d["includes"][0]["items"][0]["modifiers"] = [{"name": "FREQUENCY", "operator": "GREATER_THAN", "operands": ["40"]}]
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", token, definition_json=json.dumps(d))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert "$.includes[0].items[0].modifiers[0].name" in e.value.details()
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", token, definition_json=json.dumps({"PrimaryCriteria": {}}))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "$.PrimaryCriteria" in e.value.details()
    d = condition(201826)
    d["includes"][0]["items"][0]["type"] = "SNP_INDEL_VARIANTS"
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", token, definition_json=json.dumps(d))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED and "SNP_INDEL_VARIANT" in e.value.details()


def test_named_cohorts_in_sql(client, gen_passport_server, mint_token, gen_duck):
    token = mint_token("controlled", "cs-named", "--ttl", "1d")
    made = client.call("CreateCohort", token, name="cancer40", definition_json=json.dumps(condition(4310024)))
    assert made.table == "cohort_cancer40" and made.count == 40
    listed = client.call("ListCohorts", token)
    assert [c.name for c in listed.cohorts] == ["cancer40"]
    assert client.call("GetCohort", token, name="cancer40").count == 40
    # Usable as a table in SQL by its owner, with disclosure control on counts.
    conn = gen_passport_server.connect(token=token)
    cur = conn.cursor()
    cur.execute("SELECT COUNT(*) AS n FROM cohort_cancer40")
    assert cur.fetch_arrow_table().to_pylist() == [{"n": 40}]
    cur.execute(
        "SELECT p.gender_concept_id AS g, COUNT(*) AS n FROM cohort_cancer40 c JOIN person p USING (person_id) GROUP BY 1"
    )
    rows = cur.fetch_arrow_table().to_pylist()
    assert all(r["n"] is None or r["n"] > T for r in rows)
    cur.close()
    # Another principal does not see it.
    other = mint_token("controlled", "cs-other", "--ttl", "1d")
    assert list(client.call("ListCohorts", other).cohorts) == []
    with pytest.raises(grpc.RpcError) as e:
        client.call("GetCohort", other, name="cancer40")
    assert e.value.code() == grpc.StatusCode.NOT_FOUND
    with pytest.raises(grpc.RpcError) as e:
        client.call("CreateCohort", token, name="Bad Name!", definition_json=json.dumps(condition(1)))
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT


T2D = "(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 201826)"


@pytest.mark.parametrize(
    "modifier,where,having",
    [
        ({"name": "NUM_OF_OCCURRENCES", "operator": "GREATER_THAN_OR_EQUAL_TO", "operands": ["2"]}, "", "COUNT(DISTINCT c.condition_start_date) >= 2"),
        ({"name": "EVENT_DATE", "operator": "BETWEEN", "operands": ["2018-01-01", "2020-12-31"]}, "AND c.condition_start_date BETWEEN DATE '2018-01-01' AND DATE '2020-12-31'", ""),
        ({"name": "AGE_AT_EVENT", "operator": "GREATER_THAN", "operands": ["60"]}, "AND EXTRACT(YEAR FROM c.condition_start_date) - p.year_of_birth - CASE WHEN month(c.condition_start_date) < COALESCE(p.month_of_birth, 1) OR (month(c.condition_start_date) = COALESCE(p.month_of_birth, 1) AND day(c.condition_start_date) < COALESCE(p.day_of_birth, 1)) THEN 1 ELSE 0 END > 60", ""),
        ({"name": "ENCOUNTERS", "operator": "IN", "operands": ["9202"]}, "AND c.visit_occurrence_id IN (SELECT visit_occurrence_id FROM visit_occurrence WHERE visit_concept_id = 9202)", ""),
    ],
    ids=["occurrences", "event-date", "age-at-event", "encounters"],
)
def test_modifiers_match_duckdb(client, mint_token, gen_duck, modifier, where, having):
    token = mint_token("controlled", f"cs-mod-{modifier['name']}", "--ttl", "1d")
    d = condition(201826, descendants=True)
    d["includes"][0]["items"][0]["modifiers"] = [modifier]
    group = f"GROUP BY c.person_id, c.condition_concept_id HAVING {having}" if having else ""
    want = duck_query(
        gen_duck,
        "SELECT COUNT(DISTINCT person_id) AS n FROM (SELECT c.person_id FROM condition_occurrence c "
        f"JOIN person p ON p.person_id = c.person_id WHERE c.condition_concept_id IN {T2D} {where} {group}) t",
    ).to_pylist()[0]["n"]
    r = client.call("CountParticipants", token, definition_json=json.dumps(d))
    if want <= T:
        assert r.suppressed
    else:
        assert r.count == want


def test_data_filters_match_duckdb(client, mint_token, gen_duck):
    token = mint_token("controlled", "cs-filters", "--ttl", "1d")
    d = condition(201826, descendants=True)
    d["dataFilters"] = ["HAS_FITBIT_DATA", "HAS_PPI_SURVEY_DATA"]
    want = duck_query(
        gen_duck,
        f"SELECT COUNT(DISTINCT c.person_id) AS n FROM condition_occurrence c WHERE c.condition_concept_id IN {T2D} "
        "AND c.person_id IN (SELECT person_id FROM activity_summary) AND c.person_id IN (SELECT person_id FROM ds_survey)",
    ).to_pylist()[0]["n"]
    r = client.call("CountParticipants", token, definition_json=json.dumps(d))
    assert (r.suppressed if want <= T else r.count == want)
    d["dataFilters"] = ["HAS_TELEPATHY"]
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", token, definition_json=json.dumps(d))
    assert e.value.code() == grpc.StatusCode.UNIMPLEMENTED and "$.dataFilters[0]" in e.value.details()
    # Whole-genome data is controlled: a registered caller is refused.
    d["dataFilters"] = ["HAS_WHOLE_GENOME_VARIANT"]
    registered = mint_token("registered", "cs-filters-r", "--ttl", "1d")
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", registered, definition_json=json.dumps(d))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED


def test_circe_definitions_count_through_grpc(client, mint_token, gen_dataset):
    token = mint_token("controlled", "cs-circe", "--ttl", "1d")
    d = load("gen_t2d_confirmed")
    want = len({p for p, _, _ in CirceReference(gen_dataset).rows(d)})
    assert want > T
    r = client.call("CountParticipants", token, definition_json=json.dumps(d))
    assert r.count == want and not r.suppressed
    b = client.call("Breakdown", token, definition_json=json.dumps(d), attribute="sex")
    got = {row.value: (row.count if row.HasField("count") else None) for row in b.rows}
    assert got and all(v is None or v > T for v in got.values())
    assert sum(v for v in got.values() if v) <= want
    # A named Circe cohort keeps its dates.
    made = client.call("CreateCohort", token, name="t2d", definition_json=json.dumps(d))
    assert made.count == want


def _param(concept: int, domain: str, descendants: bool = False) -> dict:
    return {"parameterId": f"p{concept}", "name": str(concept), "domain": domain, "type": "SNOMED",
            "group": descendants, "ancestorData": False, "standard": True, "conceptId": concept, "attributes": []}


def _temporal(mention: str, time: str, days: int | None) -> dict:
    group = {"id": "t", "temporal": True, "mention": mention, "time": time, "items": [
        {"id": "a", "type": "CONDITION", "temporalGroup": 0, "searchParameters": [_param(201826, "CONDITION", True)],
         "modifiers": []},
        {"id": "b", "type": "MEASUREMENT", "temporalGroup": 1, "searchParameters": [_param(3004410, "MEASUREMENT")],
         "modifiers": []},
    ]}
    if days is not None:
        group["timeValue"] = days
    return {"includes": [group], "excludes": [], "dataFilters": []}


TEMPORAL_G0 = (
    "SELECT person_id, condition_start_date AS d, visit_occurrence_id AS v, condition_occurrence_id AS id "
    "FROM condition_occurrence WHERE condition_concept_id IN "
    "(SELECT descendant_concept_id FROM concept_ancestor WHERE ancestor_concept_id = 201826)"
)


@pytest.mark.parametrize(
    "mention,time,days,pick,relation",
    [
        ("FIRST_MENTION", "WITHIN_X_DAYS_OF", 30, "ORDER BY d", "g1.d BETWEEN m.d - 30 AND m.d + 30"),
        ("ANY_MENTION", "X_DAYS_AFTER", 90, None, "m.d >= g1.d + 90"),
        ("LAST_MENTION", "X_DAYS_BEFORE", 10, "ORDER BY d DESC", "m.d <= g1.d - 10"),
        ("ANY_MENTION", "DURING_SAME_ENCOUNTER_AS", None, None, "m.v = g1.v AND m.d = g1.d"),
    ],
    ids=["first-within", "any-after", "last-before", "same-encounter"],
)
def test_temporal_groups_match_duckdb(gen_server, gen_duck, mention, time, days, pick, relation):
    mentioned = (
        f"SELECT * FROM ({TEMPORAL_G0}) QUALIFY ROW_NUMBER() OVER (PARTITION BY person_id {pick}) = 1"
        if pick else TEMPORAL_G0
    )
    want = {
        r["person_id"]
        for r in duck_query(
            gen_duck,
            f"WITH m AS ({mentioned}), g1 AS (SELECT person_id, measurement_date AS d, visit_occurrence_id AS v "
            f"FROM measurement WHERE measurement_concept_id = 3004410) "
            f"SELECT DISTINCT m.person_id FROM m JOIN g1 ON g1.person_id = m.person_id AND {relation}",
        ).to_pylist()
    }
    assert len(want) > T
    literal = json.dumps(_temporal(mention, time, days)).replace("'", "''")
    got = {r["person_id"] for r in gen_server.query(f"SELECT person_id FROM cohort('{literal}')").to_pylist()}
    assert got == want


def test_temporal_group_errors_name_the_path(gen_server):
    d = _temporal("FIRST_MENTION", "X_DAYS_AFTER", None)
    with pytest.raises(Exception) as err:
        gen_server.query(f"SELECT * FROM cohort('{json.dumps(d)}')")
    assert "$.includes[0].timeValue" in str(err.value)
    d = _temporal("SECOND_MENTION", "X_DAYS_AFTER", 3)
    with pytest.raises(Exception) as err:
        gen_server.query(f"SELECT * FROM cohort('{json.dumps(d)}')")
    assert "$.includes[0].mention" in str(err.value)


def _program_item(kind: str, params: list[dict]) -> dict:
    return {"includes": [{"id": "g", "temporal": False, "items": [
        {"id": "i", "type": kind, "searchParameters": params, "modifiers": []}]}], "excludes": [], "dataFilters": []}


PROGRAM_ITEMS = {
    "survey-answer": (
        _program_item("SURVEY", [{"parameterId": "q", "name": "q", "domain": "SURVEY", "type": "PPI", "group": False,
                                  "ancestorData": False, "standard": False, "conceptId": 1586140,
                                  "attributes": [{"name": "CAT", "operator": "IN", "operands": ["1586146"]}]}]),
        "SELECT DISTINCT person_id FROM ds_survey WHERE question_concept_id = 1586140 AND answer_concept_id = 1586146",
    ),
    "survey-by-name": (
        _program_item("SURVEY", [{"parameterId": "s", "name": "Lifestyle", "domain": "SURVEY", "type": "PPI",
                                  "subtype": "SURVEY", "group": False, "ancestorData": False, "standard": False}]),
        "SELECT DISTINCT person_id FROM ds_survey WHERE survey = 'Lifestyle'",
    ),
    "physical-measurement": (
        _program_item("PHYSICAL_MEASUREMENT", [{"parameterId": "b", "name": "bmi", "domain": "MEASUREMENT", "type": "PPI",
                                                "group": False, "ancestorData": False, "standard": True, "conceptId": 3038553,
                                                "attributes": [{"name": "NUM", "operator": "GREATER_THAN_OR_EQUAL_TO",
                                                                "operands": ["30"]}]}]),
        "SELECT DISTINCT person_id FROM measurement WHERE measurement_type_concept_id = 44818701 "
        "AND measurement_concept_id = 3038553 AND value_as_number >= 30",
    ),
    "fitbit": (
        _program_item("FITBIT", [{"parameterId": "f", "name": "fitbit", "domain": "FITBIT", "type": "FITBIT",
                                  "group": False, "ancestorData": False, "standard": False}]),
        "SELECT DISTINCT person_id FROM activity_summary",
    ),
    "variant-by-gene-or-rsid": (
        _program_item("SNP_INDEL_VARIANT", [
            {"parameterId": "v1", "name": "CFTR", "domain": "SNP_INDEL_VARIANT", "type": "GENE", "group": False,
             "ancestorData": False, "standard": False},
            {"parameterId": "v2", "name": "rs251299534", "domain": "SNP_INDEL_VARIANT", "type": "RSID", "group": False,
             "ancestorData": False, "standard": False}]),
        "SELECT DISTINCT g.person_id FROM genotype g JOIN variant v USING (vid) "
        "WHERE (v.gene_symbol = 'CFTR' OR v.dbsnp_rsid = 'rs251299534') AND g.gt NOT IN ('0/0', '0|0', './.', '.|.', '.')",
    ),
}


@pytest.mark.parametrize("name", sorted(PROGRAM_ITEMS))
def test_program_items_match_duckdb(gen_server, gen_duck, name):
    definition, sql = PROGRAM_ITEMS[name]
    want = {r["person_id"] for r in duck_query(gen_duck, sql).to_pylist()}
    assert len(want) > T
    literal = json.dumps(definition).replace("'", "''")
    got = {r["person_id"] for r in gen_server.query(f"SELECT person_id FROM cohort('{literal}')").to_pylist()}
    assert got == want


def test_variant_items_need_the_controlled_tier(client, mint_token, gen_passport_server):
    definition, _ = PROGRAM_ITEMS["variant-by-gene-or-rsid"]
    token = mint_token("registered", "cs-variants", "--ttl", "1d")
    with pytest.raises(grpc.RpcError) as e:
        client.call("CountParticipants", token, definition_json=json.dumps(definition))
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED and "controlled" in e.value.details()
    conn = gen_passport_server.connect(token=token)
    try:
        cur = conn.cursor()
        with pytest.raises(Exception) as err:
            cur.execute(f"SELECT COUNT(*) FROM cohort('{json.dumps(definition)}')")
        assert "controlled" in str(err.value)
    finally:
        conn.close()


def test_person_item_parameters_are_alternatives(gen_server, gen_duck):
    def person(kind, concept=None):
        p = {"parameterId": kind, "name": kind, "domain": "PERSON", "type": kind, "group": False,
             "ancestorData": False, "standard": True, "attributes": []}
        if concept is not None:
            p["conceptId"] = concept
        return p

    d = {"includes": [{"id": "g", "temporal": False, "items": [{"id": "i", "type": "PERSON", "searchParameters": [
        person("RACE", 8515), person("DECEASED")], "modifiers": []}]}], "excludes": [], "dataFilters": []}
    want = {r["person_id"] for r in duck_query(
        gen_duck,
        "SELECT person_id FROM person WHERE race_concept_id = 8515 UNION SELECT person_id FROM death",
    ).to_pylist()}
    dead = {r["person_id"] for r in duck_query(gen_duck, "SELECT person_id FROM death").to_pylist()}
    assert len(want) > len(dead) > T
    literal = json.dumps(d).replace("'", "''")
    got = {r["person_id"] for r in gen_server.query(f"SELECT person_id FROM cohort('{literal}')").to_pylist()}
    assert got == want


def test_audit_records_name_the_door_a_request_came_through(client, mint_token, gen_passport_server):
    """Every door calls the same query service; its records say which door (DESIGN.md, Audit)."""
    token = mint_token("controlled", "cs-doors", "--ttl", "1d")
    definition, _ = PROGRAM_ITEMS["variant-by-gene-or-rsid"]
    client.call("CountParticipants", token, definition_json=json.dumps(definition))
    run_sql(gen_passport_server, token, "SELECT COUNT(*) AS n FROM person")
    with pytest.raises(grpc.RpcError):
        client.call("CountParticipants", mint_token("controlled", "cs-doors", "--forge"),
                    definition_json=json.dumps(definition))

    def mine():
        lines = gen_passport_server.audit_path.read_text().splitlines()
        return [r for r in map(json.loads, lines) if r["sub"] == "cs-doors" or r["action"] == "authenticate"]

    def ends_of_both_doors():
        doors = {(r["door"], r["action"]) for r in mine() if r["phase"] == "end"}
        return ("cohort", "cohort_count") in doors and any(d == "flight" for d, _ in doors)

    wait_for(ends_of_both_doors, timeout=10, what="end records of both doors")
    records = mine()
    assert {r["door"] for r in records if r["action"].startswith("cohort_")} == {"cohort"}
    assert {r["door"] for r in records if r["action"].startswith(("execute_", "plan_", "prepare"))} == {"flight"}
    # A refused passport is recorded at the door it knocked on, without its claims.
    refused = [r for r in records if r["action"] == "authenticate" and r["door"] == "cohort"]
    assert refused and all(r["sub"] == "" and r["outcome"] == "unauthenticated" for r in refused)


@pytest.mark.parametrize("attribute", ["person_id", "person_source_value"])
def test_aggregates_only_breakdown_by_an_identifier_is_refused(client, mint_token, attribute):
    """A breakdown by the person key (cast to text by the service) or the source identifier
    would list the cohort's members: found by lineage, not by the column's name."""
    token = mint_token("controlled", "cs-dash-key", "--egress", "aggregates", "--ttl", "1d")
    with pytest.raises(grpc.RpcError) as e:
        client.call("Breakdown", token, definition_json=json.dumps(condition(4310024)), attribute=attribute)
    assert e.value.code() == grpc.StatusCode.PERMISSION_DENIED, e.value.details()
    # The same breakdown by sex is answered.
    r = client.call("Breakdown", token, definition_json=json.dumps(condition(4310024)), attribute="sex")
    assert r is not None
