"""Data passports (DESIGN.md, "Passports"): `strata keys`, `strata token`, and passport auth of
`strata serve --jwks`.

Part 1 runs `strata keys` / `strata token` and decodes the printed JWTs here (base64url + JSON, no JWT
library), checking header, claims, visas and signatures for every flag, broken variants included.

Part 2 ("server") uses the suite's passport server of the synthetic dataset (`--jwks DIR/jwks.json`,
conftest.py `gen_passport_server`) and checks, with the ADBC driver, that no token and every broken token get UNAUTHENTICATED, that passports lacking a visa get
a lower tier (PERMISSION_DENIED on registered data), and that valid passports work.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import stat
import time
from pathlib import Path

import pytest

from helpers import (
    assert_permission_denied,
    assert_unauthenticated,
    make_keys,
    mint,
    one_line_error,
    run_sql,
    run_strata,
)

ISSUER = "https://dev.strata.local/issuer"
PASSPORT_TYP = "vnd.ga4gh.passport+jwt"
VISA_TYP = "vnd.ga4gh.visa+jwt"

RESEARCHER = ("ResearcherStatus", "urn:strata:researcher:verified")
DUCC = ("AcceptedTermsAndPolicies", "urn:strata:terms:ducc")
RCR = ("AcceptedTermsAndPolicies", "urn:strata:terms:rcr-training")
CONTROLLED = ("ControlledAccessGrants", "urn:strata:tier:controlled")
TIER_VISAS = {
    "public": set(),
    "registered": {RESEARCHER, DUCC, RCR},
    "controlled": {RESEARCHER, DUCC, RCR, CONTROLLED},
}
MISSING_FLAG = {"researcher": RESEARCHER, "ducc": DUCC, "rcr-training": RCR, "controlled": CONTROLLED}


# --------------------------------------------------------------------------------------------------
# JWT decoding (no JWT library on purpose)
# --------------------------------------------------------------------------------------------------


def b64url_decode(part: str) -> bytes:
    assert "=" not in part, f"JWT parts must be unpadded base64url: {part[:40]!r}"
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class Jwt:
    def __init__(self, token: str):
        parts = token.split(".")
        assert len(parts) == 3, f"not a compact JWS (3 parts): {token[:60]!r}…"
        self.token = token
        self.header = json.loads(b64url_decode(parts[0]))
        self.claims = json.loads(b64url_decode(parts[1]))
        self.signature = b64url_decode(parts[2]) if parts[2] else b""
        self.signing_input = f"{parts[0]}.{parts[1]}".encode()

    def visas(self) -> list["Jwt"]:
        return [Jwt(v) for v in self.claims["ga4gh_passport_v1"]]

    def visa_set(self) -> set[tuple[str, str]]:
        return {(v.claims["ga4gh_visa_v1"]["type"], v.claims["ga4gh_visa_v1"]["value"]) for v in self.visas()}


def es256_valid(jwk: dict, jwt: Jwt) -> bool | None:
    """Whether `jwt`'s ES256 signature verifies under the P-256 `jwk` (None: no crypto library)."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives import hashes
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
    except ImportError:  # pragma: no cover - cryptography comes with moto in requirements.txt
        return None
    if len(jwt.signature) != 64:
        return False
    x = int.from_bytes(b64url_decode(jwk["x"]), "big")
    y = int.from_bytes(b64url_decode(jwk["y"]), "big")
    key = ec.EllipticCurvePublicNumbers(x, y, ec.SECP256R1()).public_key()
    r = int.from_bytes(jwt.signature[:32], "big")
    s = int.from_bytes(jwt.signature[32:], "big")
    try:
        key.verify(encode_dss_signature(r, s), jwt.signing_input, ec.ECDSA(hashes.SHA256()))
        return True
    except InvalidSignature:
        return False


def public_key_pem(jwk: dict) -> bytes:
    """SPKI PEM of a P-256 JWK (what `--alg hs256` uses as the HMAC secret)."""
    prefix = bytes.fromhex("3059301306072a8648ce3d020106082a8648ce3d030107034200")
    der = prefix + b"\x04" + b64url_decode(jwk["x"]) + b64url_decode(jwk["y"])
    body = base64.b64encode(der).decode()
    lines = [body[i : i + 64] for i in range(0, len(body), 64)]
    return ("-----BEGIN PUBLIC KEY-----\n" + "\n".join(lines) + "\n-----END PUBLIC KEY-----\n").encode()


# --------------------------------------------------------------------------------------------------
# Fixtures and helpers
# --------------------------------------------------------------------------------------------------


def jwk_of(keys: Path) -> dict:
    jwks = json.loads((keys / "jwks.json").read_text())
    assert len(jwks["keys"]) == 1
    return jwks["keys"][0]


@pytest.fixture(scope="module")
def jwk(passport_keys) -> dict:
    return jwk_of(passport_keys)


# --------------------------------------------------------------------------------------------------
# Part 1: `strata keys`
# --------------------------------------------------------------------------------------------------


def test_keys_writes_private_key_jwks_and_issuer(passport_keys, jwk):
    pem = passport_keys / "issuer.pem"
    assert pem.is_file()
    assert stat.S_IMODE(pem.stat().st_mode) == 0o600, oct(pem.stat().st_mode)
    text = pem.read_text()
    assert text.startswith("-----BEGIN PRIVATE KEY-----"), text[:40]
    assert "PRIVATE KEY" not in (passport_keys / "jwks.json").read_text()

    assert jwk["kty"] == "EC" and jwk["crv"] == "P-256"
    assert jwk["alg"] == "ES256" and jwk["use"] == "sig"
    assert jwk["iss"] == ISSUER
    assert jwk["kid"]
    assert "d" not in jwk, "the JWKS must not hold the private key"
    assert len(b64url_decode(jwk["x"])) == 32 and len(b64url_decode(jwk["y"])) == 32

    meta = json.loads((passport_keys / "issuer.json").read_text())
    assert meta["issuer"] == ISSUER
    assert meta["kid"] == jwk["kid"]
    assert not [p.name for p in passport_keys.iterdir() if ".tmp" in p.name]


def test_keys_kid_is_the_rfc7638_thumbprint(jwk):
    canonical = json.dumps({"crv": "P-256", "kty": "EC", "x": jwk["x"], "y": jwk["y"]}, separators=(",", ":"))
    assert jwk["kid"] == b64url_encode(hashlib.sha256(canonical.encode()).digest())


def test_keys_refuses_to_overwrite_without_force(tmp_work):
    out = make_keys(tmp_work / "k")
    before = (out / "issuer.pem").read_bytes()
    proc = run_strata("keys", "--out", out, check=False, timeout=120)
    one_line_error(proc, "--force")
    assert (out / "issuer.pem").read_bytes() == before
    run_strata("keys", "--out", out, "--force", timeout=120)
    assert (out / "issuer.pem").read_bytes() != before
    assert json.loads((out / "issuer.json").read_text())["kid"] == jwk_of(out)["kid"]


def test_keys_custom_issuer(tmp_work):
    out = make_keys(tmp_work / "k", "--issuer", "https://idp.example.org/")
    assert jwk_of(out)["iss"] == "https://idp.example.org/"
    t = Jwt(mint(out, "registered"))
    assert t.claims["iss"] == "https://idp.example.org/"
    assert all(v.claims["iss"] == "https://idp.example.org/" for v in t.visas())


def test_keys_default_folder(tmp_work):
    """`--keys` defaults to ./.strata/keys."""
    run_strata("keys", "--out", ".strata/keys", cwd=tmp_work, timeout=120)
    assert (tmp_work / ".strata" / "keys" / "jwks.json").is_file()
    proc = run_strata("token", "--tier", "public", "--sub", "x", cwd=tmp_work, timeout=120)
    assert Jwt(proc.stdout.strip()).header["kid"] == jwk_of(tmp_work / ".strata" / "keys")["kid"]


# --------------------------------------------------------------------------------------------------
# Part 1: `strata token`
# --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("tier", ["public", "registered", "controlled"])
def test_token_structure_per_tier(passport_keys, jwk, tier):
    t = Jwt(mint(passport_keys, tier, "alice"))
    assert t.header == {"typ": PASSPORT_TYP, "alg": "ES256", "kid": jwk["kid"]}
    assert t.claims["iss"] == ISSUER
    assert t.claims["sub"] == "alice"
    now = time.time()
    assert abs(t.claims["iat"] - now) < 300
    assert t.claims["exp"] - t.claims["iat"] == 3600, "default --ttl is 1h"
    assert t.claims["jti"]
    assert "strata_egress" not in t.claims
    assert es256_valid(jwk, t) in (True, None)
    assert t.visa_set() == TIER_VISAS[tier]
    assert len(t.visas()) == len(TIER_VISAS[tier])
    for v in t.visas():
        assert v.header == {"typ": VISA_TYP, "alg": "ES256", "kid": jwk["kid"]}
        assert v.claims["iss"] == ISSUER and v.claims["sub"] == "alice"
        assert v.claims["exp"] == t.claims["exp"]
        assert v.claims["jti"]
        body = v.claims["ga4gh_visa_v1"]
        assert set(body) >= {"type", "asserted", "value", "source", "by"}
        assert "conditions" not in body
        assert body["asserted"] <= now + 60
        assert es256_valid(jwk, v) in (True, None)


def test_token_ids_are_unique(passport_keys):
    a, b = Jwt(mint(passport_keys, "controlled")), Jwt(mint(passport_keys, "controlled"))
    assert a.claims["jti"] != b.claims["jti"]
    ids = [v.claims["jti"] for v in a.visas() + b.visas()]
    assert len(set(ids)) == len(ids)


@pytest.mark.parametrize("egress", ["rows", "aggregates"])
def test_token_egress(passport_keys, egress):
    t = Jwt(mint(passport_keys, "controlled", "svc", "--egress", egress))
    assert t.claims["strata_egress"] == egress


@pytest.mark.parametrize("ttl,secs", [("90s", 90), ("30m", 1800), ("2h", 7200), ("1d", 86400)])
def test_token_ttl(passport_keys, ttl, secs):
    t = Jwt(mint(passport_keys, "registered", "alice", "--ttl", ttl))
    assert t.claims["exp"] - t.claims["iat"] == secs
    assert all(v.claims["exp"] == t.claims["exp"] for v in t.visas())


def test_token_expired(passport_keys, jwk):
    t = Jwt(mint(passport_keys, "controlled", "alice", "--expired"))
    now = time.time()
    assert t.claims["exp"] < now - 60, "--expired passport must have exp in the past"
    assert t.claims["iat"] < t.claims["exp"]
    assert t.visa_set() == TIER_VISAS["controlled"]
    assert all(v.claims["exp"] < now - 60 for v in t.visas())
    assert es256_valid(jwk, t) in (True, None), "an expired token is still properly signed"


@pytest.mark.parametrize("missing", sorted(MISSING_FLAG))
def test_token_missing_visa(passport_keys, jwk, missing):
    t = Jwt(mint(passport_keys, "controlled", "alice", "--missing-visa", missing))
    assert t.visa_set() == TIER_VISAS["controlled"] - {MISSING_FLAG[missing]}
    assert es256_valid(jwk, t) in (True, None)


def test_token_missing_visa_repeatable(passport_keys):
    t = Jwt(mint(passport_keys, "controlled", "alice", "--missing-visa", "ducc", "--missing-visa", "rcr-training"))
    assert t.visa_set() == {RESEARCHER, CONTROLLED}


def test_token_alg_none(passport_keys, jwk):
    token = mint(passport_keys, "controlled", "alice", "--alg", "none")
    assert token.endswith("."), "alg none carries an empty signature"
    t = Jwt(token)
    assert t.header["alg"] == "none"
    assert t.header["typ"] == PASSPORT_TYP
    assert t.signature == b""
    assert t.visa_set() == TIER_VISAS["controlled"]


def test_token_alg_hs256_uses_public_key_as_secret(passport_keys, jwk):
    t = Jwt(mint(passport_keys, "controlled", "alice", "--alg", "hs256"))
    assert t.header["alg"] == "HS256"
    assert t.header["kid"] == jwk["kid"]
    expected = hmac.new(public_key_pem(jwk), t.signing_input, hashlib.sha256).digest()
    assert t.signature == expected, "HS256 signature should use the issuer's public key PEM as secret"
    assert t.visa_set() == TIER_VISAS["controlled"]


def test_token_visa_sub(passport_keys, jwk):
    t = Jwt(mint(passport_keys, "controlled", "alice", "--visa-sub", "mallory"))
    assert t.claims["sub"] == "alice"
    assert t.visa_set() == TIER_VISAS["controlled"]
    assert all(v.claims["sub"] == "mallory" for v in t.visas())
    assert all(es256_valid(jwk, v) in (True, None) for v in t.visas())


def test_token_visa_issuer(passport_keys, jwk):
    t = Jwt(mint(passport_keys, "controlled", "alice", "--visa-issuer", "https://evil.example/"))
    assert t.claims["iss"] == ISSUER
    assert es256_valid(jwk, t) in (True, None)
    visas = t.visas()
    assert len(visas) == 4
    for v in visas:
        assert v.claims["iss"] == "https://evil.example/"
        assert v.claims["sub"] == "alice"
        assert v.header["kid"] != jwk["kid"], "visas must be signed by a key nobody trusts"
        assert es256_valid(jwk, v) in (False, None)


def test_token_forge(passport_keys, jwk):
    t = Jwt(mint(passport_keys, "controlled", "alice", "--forge"))
    assert t.header["alg"] == "ES256"
    assert len(t.signature) == 64
    assert es256_valid(jwk, t) in (False, None), "--forge must break the signature"
    assert all(es256_valid(jwk, v) in (True, None) for v in t.visas())


def test_token_without_keys_is_one_line_error(tmp_work):
    proc = run_strata("token", "--tier", "registered", "--sub", "a", "--keys", tmp_work / "none",
                      check=False, timeout=120)
    one_line_error(proc, "strata keys")
    assert proc.stdout == ""


def test_token_empty_sub_is_one_line_error(passport_keys):
    proc = run_strata("token", "--tier", "registered", "--sub", "", "--keys", passport_keys, check=False, timeout=120)
    one_line_error(proc, "sub")
    assert proc.stdout == ""


@pytest.mark.parametrize(
    "args",
    [
        ["--tier", "admin", "--sub", "a"],
        ["--tier", "registered", "--sub", "a", "--ttl", "soon"],
        ["--tier", "registered", "--sub", "a", "--missing-visa", "DUCC"],
        ["--tier", "registered", "--sub", "a", "--alg", "rs512"],
        ["--sub", "a"],
    ],
    ids=["tier", "ttl", "visa-case", "alg", "no-tier"],
)
def test_token_bad_flags(passport_keys, args):
    proc = run_strata("token", *args, "--keys", passport_keys, check=False, timeout=120)
    assert proc.returncode != 0
    assert "panicked" not in proc.stderr
    assert proc.stdout == ""
    assert proc.stderr.lower().startswith("error:"), proc.stderr


# --------------------------------------------------------------------------------------------------
# Part 2: server. `strata serve --jwks DIR/jwks.json` authenticates every call with the passport.
# --------------------------------------------------------------------------------------------------


def test_server_no_token_is_unauthenticated(gen_passport_server):
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, "", "SELECT 1")
    assert_unauthenticated(err.value)


@pytest.mark.parametrize(
    "flags",
    [["--expired"], ["--alg", "none"], ["--alg", "hs256"], ["--forge"]],
    ids=["expired", "alg-none", "hs256-public-key", "forged"],
)
def test_server_broken_token_is_unauthenticated(gen_passport_server, passport_keys, flags):
    token = mint(passport_keys, "controlled", "mallory", *flags)
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, token, "SELECT 1")
    assert_unauthenticated(err.value, token)


def test_server_untrusted_issuer_key_is_unauthenticated(gen_passport_server, tmp_work):
    """A passport for the same issuer URL signed by a key the server does not trust."""
    rogue = make_keys(tmp_work / "rogue")
    token = mint(rogue, "controlled", "mallory")
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, token, "SELECT 1")
    assert_unauthenticated(err.value, token)


@pytest.mark.parametrize(
    "token",
    ["not-a-jwt", "a.b.c", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJ4In0."],
    ids=["garbage", "three-parts", "unsigned-json"],
)
def test_server_malformed_token_is_unauthenticated(gen_passport_server, token):
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, token, "SELECT 1")
    assert_unauthenticated(err.value)


@pytest.mark.parametrize("tier", ["registered", "controlled"])
def test_server_valid_token_works(gen_passport_server, passport_keys, tier):
    token = mint(passport_keys, tier, "alice")
    t = run_sql(gen_passport_server, token, "SELECT 1 AS one")
    assert t.num_rows == 1 and t.column(0).to_pylist() == [1]


def test_server_controlled_token_reads_participant_data(gen_passport_server, passport_keys):
    token = mint(passport_keys, "controlled", "alice")
    t = run_sql(gen_passport_server, token, "SELECT person_id FROM person LIMIT 5")
    assert t.num_rows == 5


def test_server_registered_token_reads_vocabulary(gen_passport_server, passport_keys):
    token = mint(passport_keys, "registered", "alice")
    t = run_sql(gen_passport_server, token, "SELECT concept_id FROM concept LIMIT 5")
    assert t.num_rows == 5


def test_server_registered_token_reads_participant_data_through_views(gen_passport_server, passport_keys):
    """Registered callers read participant tables (as registered views, see test_tiers.py)."""
    token = mint(passport_keys, "registered", "alice")
    t = run_sql(gen_passport_server, token, "SELECT person_id, year_of_birth FROM person LIMIT 5")
    assert t.num_rows == 5


@pytest.mark.parametrize(
    "sql",
    [
        "SELECT COUNT(*) FROM genotype",
        "SELECT COUNT(*) FROM concept WHERE EXISTS (SELECT 1 FROM genotype)",
        "WITH v AS (SELECT * FROM variant) SELECT COUNT(*) FROM v",
        "SELECT birth_datetime FROM person",
        "SELECT COUNT(*) FROM person p WHERE p.day_of_birth = 1",
    ],
    ids=["table", "exists", "cte", "column", "column-in-filter"],
)
def test_server_registered_token_is_refused_controlled_data(gen_passport_server, passport_keys, sql):
    token = mint(passport_keys, "registered", "alice")
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, token, sql)
    assert_permission_denied(err.value)
    assert "controlled" in str(err.value)


@pytest.mark.parametrize(
    "flags",
    [
        ["--missing-visa", "ducc"],
        ["--missing-visa", "rcr-training"],
        ["--missing-visa", "researcher"],
        ["--visa-sub", "mallory"],
        ["--visa-issuer", "https://evil.example/"],
    ],
    ids=["no-ducc", "no-rcr-training", "no-researcher", "visa-sub", "visa-issuer"],
)
def test_server_passport_lacking_visas_is_public_tier(gen_passport_server, passport_keys, flags):
    """Authenticated, but without valid registered visas: registered data is PERMISSION_DENIED."""
    token = mint(passport_keys, "controlled", "alice", *flags)
    with pytest.raises(Exception) as err:
        run_sql(gen_passport_server, token, "SELECT person_id FROM person LIMIT 5")
    assert_permission_denied(err.value)


def test_server_expiry_is_checked_on_every_call(gen_passport_server, passport_keys):
    """A connection whose passport expires mid-session is refused on its next call (30 s leeway)."""
    token = mint(passport_keys, "registered", "alice", "--ttl", "2s")
    conn = gen_passport_server.connect(token=token)  # closed by the server fixture's stop()
    cur = conn.cursor()
    cur.execute("SELECT 1 AS one")
    assert cur.fetch_arrow_table().num_rows == 1
    cur.close()
    time.sleep(2 + 30 + 2)
    cur = conn.cursor()
    with pytest.raises(Exception) as err:
        cur.execute("SELECT 1 AS one")
        cur.fetch_arrow_table()
    assert_unauthenticated(err.value, token)
    with contextlib.suppress(Exception):
        cur.close()
