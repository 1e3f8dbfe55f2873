#!/usr/bin/env python3
"""A real BI tool against the PostgreSQL-wire door: Apache Superset 6.1, driven as a person would.

Run it with the Superset venv's interpreter (scripts/superset.sh sets that venv up and calls this):

    .venv-superset/bin/python scripts/superset_check.py \
        --pg-host 127.0.0.1 --pg-port 5433 --user dashboard --password-file token.jwt \
        --expect-json expected.json --out-dir .test-work/superset

What it does, each step timed:
  1. writes superset_config.py in a temporary folder (SQLite metadata database there too),
     runs `superset db upgrade`, `superset fab create-admin`, `superset init`;
  2. starts Superset (gunicorn, one worker) on 127.0.0.1 and waits for /health;
  3. logs in through the REST API (/api/v1/security/login → JWT access token, then the CSRF token
     from /api/v1/security/csrf_token/, sent back as X-CSRFToken with the session cookie);
  4. tests the connection and creates the database `postgresql+psycopg2://USER@HOST:PORT/DB`, the
     password URL-encoded in the URI when the URI stays within Superset's 1024 characters, else
     (a passport JWT: about 3 kB) in the Secure Extra field as connect_args (--password-in; the
     config masks it there, and the API must never hand the password back), then
     lists its schemas and tables as SQL Lab and the dataset editor do, and for a physical dataset
     reads the table's metadata (the editor's column preview: columns, keys, indexes);
  5. creates a dataset: `virtual` (default: the SQL below, which Superset wraps as a subquery
     `SELECT ... FROM (<sql>) AS virtual_table GROUP BY ... LIMIT ...`) or `physical` (the table
     `person`; the chart then groups by an ad-hoc CASE column with an ad-hoc COUNT(DISTINCT) metric);
  6. creates a bar chart (viz_type echarts_timeseries_bar: 6.x has no dist_bar any more) with a
     saved query context, and fetches its data through /api/v1/chart/{id}/data/;
  7. takes a screenshot of the chart with headless Chromium (Debian's chromium + chromium-driver,
     driven by Selenium, which Superset already depends on): logs in through the login form, opens
     /explore/?slice_id=ID&standalone=1, waits for the ECharts canvas, saves a PNG, and checks that
     the PNG holds coloured (bar) pixels;
  8. compares the chart data with --expect-json (a list of {"age_group": ..., "participants": ...})
     exactly, order aside.

Exit status: 0 when every step passed, 1 otherwise; a summary with timings is printed either way.
The chart data is written to OUT_DIR/chart-data.json, the SQL Superset sent for it to
OUT_DIR/chart-query.sql and the screenshot to OUT_DIR/chart.png.
"""
from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import traceback
import urllib.parse
from pathlib import Path

import requests

# Age at the end of 2024, by year of birth: fixed years so the answer never depends on today's date.
AGE_GROUP_SQL = (
    "CASE WHEN year_of_birth >= 1980 THEN '<45' "
    "WHEN year_of_birth >= 1960 THEN '45-64' "
    "ELSE '65+' END"
)
VIRTUAL_SQL = (
    f"SELECT {AGE_GROUP_SQL} AS age_group, COUNT(DISTINCT person_id) AS participants "
    "FROM person GROUP BY 1"
)
CHART_NAME = "Participants by age group"


class Failure(Exception):
    pass


class Steps:
    """Runs named steps, times them, and remembers the first failure."""

    def __init__(self) -> None:
        self.rows: list[tuple[str, float, str]] = []
        self.start = time.monotonic()
        self.failed = False

    def run(self, name, fn, *args, **kwargs):
        t0 = time.monotonic()
        print(f"==> {name}  [{time.strftime('%H:%M:%S')}.{int(time.time() * 1000) % 1000:03d}]",
              flush=True)
        try:
            result = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - every failure ends the run with a message
            took = time.monotonic() - t0
            first_line = (str(exc).splitlines() or [""])[0][:200]
            self.rows.append((name, took, f"FAILED: {first_line}"))
            self.failed = True
            print(f"<== {name}: {took:.1f}s, FAILED", flush=True)
            if not isinstance(exc, Failure):
                traceback.print_exc()
            else:
                print(f"    {exc}", file=sys.stderr, flush=True)
            raise
        took = time.monotonic() - t0
        self.rows.append((name, took, "ok"))
        print(f"<== {name}: {took:.1f}s  [{time.strftime('%H:%M:%S')}]", flush=True)
        return result

    def summary(self) -> None:
        print("\n---- superset check: timings ----")
        for name, took, status in self.rows:
            print(f"{name:<34} {took:7.1f}s  {status}")
        print(f"{'total':<34} {time.monotonic() - self.start:7.1f}s  "
              f"{'FAILED' if self.failed else 'ok'}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def write_config(work: Path, port: int) -> Path:
    config = work / "superset_config.py"
    db = work / "superset.db"
    config.write_text(f'''# Written by scripts/superset_check.py for one run; thrown away afterwards.
SECRET_KEY = {secrets.token_urlsafe(42)!r}
SQLALCHEMY_DATABASE_URI = "sqlite:///{db}?check_same_thread=false"
DATA_DIR = {str(work)!r}
# The REST API is used with a JWT; POSTs still carry the CSRF token from
# /api/v1/security/csrf_token/ (with the session cookie that goes with it).
WTF_CSRF_ENABLED = True
TALISMAN_ENABLED = False
# No results cache: every chart-data call reaches the database (so each run sees the door's answer).
CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
DATA_CACHE_CONFIG = {{"CACHE_TYPE": "NullCache"}}
FILTER_STATE_CACHE_CONFIG = {{"CACHE_TYPE": "SimpleCache"}}
EXPLORE_FORM_DATA_CACHE_CONFIG = {{"CACHE_TYPE": "SimpleCache"}}
RATELIMIT_STORAGE_URI = "memory://"
WEBDRIVER_BASEURL = "http://127.0.0.1:{port}/"
FEATURE_FLAGS = {{}}
SUPERSET_LOG_VIEW = False


def FLASK_APP_MUTATOR(app):
    # A passport too long for the SQLAlchemy URI sits in the Secure Extra as connect_args.password
    # (see superset_check.py), which Superset's PostgreSQL engine spec does not mask (only its
    # aws_iam paths): mask it too, so that GET /api/v1/database/<id>/connection answers
    # XXXXXXXXXX instead of handing the passport back (an unchanged mask keeps the stored value).
    from superset.db_engine_specs.postgres import PostgresEngineSpec
    PostgresEngineSpec.encrypted_extra_sensitive_fields = {{
        **PostgresEngineSpec.encrypted_extra_sensitive_fields,
        "$.connect_args.password": "Password",
    }}
''')
    return config


class Superset:
    def __init__(self, venv_bin: Path, work: Path, out_dir: Path, port: int):
        self.bin = venv_bin
        self.work = work
        self.out_dir = out_dir
        self.port = port
        self.base = f"http://127.0.0.1:{port}"
        self.admin_password = secrets.token_urlsafe(16)
        self.env = dict(os.environ)
        self.env.update(
            SUPERSET_CONFIG_PATH=str(work / "superset_config.py"),
            SUPERSET_HOME=str(work),
            FLASK_APP="superset",
            PYTHONUNBUFFERED="1",
        )
        self.proc: subprocess.Popen | None = None
        self.log_path = out_dir / "superset-server.log"
        self.http = requests.Session()

    def cli(self, *args: str) -> None:
        log = self.out_dir / "superset-cli.log"
        with open(log, "a") as f:
            f.write(f"\n$ superset {' '.join(args)}\n")
            f.flush()
            rc = subprocess.run([str(self.bin / "superset"), *args], env=self.env, stdout=f,
                                stderr=subprocess.STDOUT, cwd=self.work, timeout=900).returncode
        if rc != 0:
            raise Failure(f"`superset {args[0]} ...` exited {rc}; see {log}")

    def init_metadata(self) -> None:
        self.cli("db", "upgrade")
        self.cli("fab", "create-admin", "--username", "admin", "--firstname", "Strata",
                 "--lastname", "Check", "--email", "admin@localhost", "--password",
                 self.admin_password)
        self.cli("init")

    def start(self, timeout: float) -> None:
        log = open(self.log_path, "w")
        self.proc = subprocess.Popen(
            [str(self.bin / "gunicorn"), "--bind", f"127.0.0.1:{self.port}", "--workers", "1",
             "--threads", "8", "--timeout", "300", "--access-logfile", "-",
             "superset.app:create_app()"],
            env=self.env, stdout=log, stderr=subprocess.STDOUT, cwd=self.work,
            start_new_session=True)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise Failure(f"Superset exited with {self.proc.returncode}; see {self.log_path}")
            try:
                r = requests.get(f"{self.base}/health", timeout=5)
                if r.status_code == 200 and r.text.strip() == "OK":
                    return
            except requests.RequestException:
                pass
            time.sleep(1)
        raise Failure(f"Superset did not answer /health within {timeout:.0f}s; see {self.log_path}")

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()

    # ---- REST API ----
    def api(self, method: str, path: str, expect=(200, 201), **kwargs):
        r = self.http.request(method, f"{self.base}{path}", timeout=300, **kwargs)
        if r.status_code not in expect:
            raise Failure(f"{method} {path} -> HTTP {r.status_code}: {r.text[:2000]}")
        return r.json()

    def login(self) -> None:
        body = self.api("POST", "/api/v1/security/login", json={
            "username": "admin", "password": self.admin_password, "provider": "db",
            "refresh": True})
        self.http.headers["Authorization"] = f"Bearer {body['access_token']}"
        csrf = self.api("GET", "/api/v1/security/csrf_token/")["result"]
        self.http.headers["X-CSRFToken"] = csrf
        self.http.headers["Referer"] = self.base


URI_MAX = 1024  # Superset's limit on sqlalchemy_uri (schema validation and the metadata column)


def pg_uri(args, with_password: bool) -> str:
    user = urllib.parse.quote(args.user, safe="")
    auth = user
    if with_password:
        auth += ":" + urllib.parse.quote(args.password, safe="")
    return f"postgresql+psycopg2://{auth}@{args.pg_host}:{args.pg_port}/{args.pg_database}"


def connection_payload(args) -> dict:
    """Where the password goes. A GA4GH passport (about 3 kB: three signed visas inside) does not
    fit in Superset's sqlalchemy_uri (at most 1024 characters, for the SQLAlchemy form and for the
    dynamic form alike, which builds the same URI): then the URI has no password and the passport
    goes to the "Secure Extra" field (`encrypted_extra`, encrypted in the metadata database) as
    `{"connect_args": {"password": ...}}`, which Superset merges into create_engine()'s arguments
    and psycopg2 hands to libpq. A short password (a real PostgreSQL's) stays in the URI."""
    mode = args.password_in
    if mode == "auto":
        mode = "uri" if len(pg_uri(args, True)) <= URI_MAX else "secure-extra"
    print(f"    password in: {mode} ({len(args.password)} characters)")
    if mode == "uri":
        return {"sqlalchemy_uri": pg_uri(args, True)}
    return {"sqlalchemy_uri": pg_uri(args, False),
            "masked_encrypted_extra": json.dumps({"connect_args": {"password": args.password}})}


def rison_q(obj: dict) -> str:
    """A tiny rison encoder for the flat ?q= objects used here."""
    def enc(v):
        if v is True:
            return "!t"
        if v is False:
            return "!f"
        if isinstance(v, (int, float)):
            return str(v)
        s = str(v)
        if s and all(c.isalnum() or c in "-_./~" for c in s) and not s[0].isdigit() and s[0] != "-":
            return s
        return "'" + s.replace("!", "!!").replace("'", "!'") + "'"
    return "(" + ",".join(f"{k}:{enc(v)}" for k, v in obj.items()) + ")"


def create_database(ss: Superset, args) -> int:
    conn = connection_payload(args)
    ss.api("POST", "/api/v1/database/test_connection/", json={
        "database_name": args.database_name, "engine": "postgresql",
        "configuration_method": "sqlalchemy_form", **conn})
    body = ss.api("POST", "/api/v1/database/", json={
        "database_name": args.database_name, "configuration_method": "sqlalchemy_form",
        "expose_in_sqllab": True, "allow_run_async": False, "allow_dml": False,
        "allow_file_upload": False, **conn})
    # What an administrator editing the connection gets back: never the password (looked for when
    # long enough not to turn up by chance, as a passport is).
    for path in (f"/api/v1/database/{body['id']}", f"/api/v1/database/{body['id']}/connection"):
        if len(args.password) >= 16 and args.password in json.dumps(ss.api("GET", path)):
            raise Failure(f"GET {path} hands the password back")
    return body["id"]


def browse_database(ss: Superset, db_id: int, schema: str, table: str) -> None:
    """What SQL Lab's side panel and the dataset editor call when a person picks the schema."""
    schemas = ss.api("GET", f"/api/v1/database/{db_id}/schemas/?q={rison_q({'force': True})}")
    if schema not in schemas.get("result", []):
        raise Failure(f"schema {schema!r} not listed: {schemas}")
    tables = ss.api("GET", f"/api/v1/database/{db_id}/tables/?q="
                    + rison_q({"force": True, "schema_name": schema}))
    names = [t.get("value") for t in tables.get("result", [])]
    if table not in names:
        raise Failure(f"table {table!r} not listed in {schema!r}: {names}")
    print(f"    schemas={schemas.get('result')} tables={names}")


def table_metadata(ss: Superset, db_id: int, schema: str, table: str) -> None:
    """The column preview of the dataset editor once a person picks the table (a physical
    dataset): SQLAlchemy reflection of its columns, primary key, foreign keys and indexes."""
    meta = ss.api("GET", f"/api/v1/database/{db_id}/table_metadata/?"
                  + urllib.parse.urlencode({"name": table, "schema": schema}))
    cols = [c.get("column_name") or c.get("name") for c in meta.get("columns", [])]
    print(f"    {table} columns={cols}")


def create_dataset(ss: Superset, db_id: int, args) -> int:
    if args.dataset_kind == "virtual":
        payload = {"database": db_id, "schema": args.schema,
                   "table_name": "participants_by_age_group", "sql": VIRTUAL_SQL}
    else:
        payload = {"database": db_id, "schema": args.schema, "table_name": "person"}
    body = ss.api("POST", "/api/v1/dataset/", json=payload)
    ds_id = body["id"]
    got = ss.api("GET", f"/api/v1/dataset/{ds_id}")["result"]
    print(f"    dataset {ds_id}: columns "
          f"{[(c['column_name'], c.get('type')) for c in got.get('columns', [])]}")
    return ds_id


def chart_definition(ds_id: int, kind: str, virtual_aggregate: str = "MAX") -> tuple[dict, dict]:
    """form_data (params) as Explore saves it, and the query context Explore would send.

    The virtual dataset has one row per age group already: the chart's metric re-aggregates that
    row with `virtual_aggregate` (Superset wraps the dataset's SQL as a subquery and always puts an
    aggregate around a metric column). MAX hands the released count through unchanged; SUM (the
    usual choice for a pre-aggregated column) and AVG come back suppressed from Strata (its
    dominance rule sees a sum of one large contribution), which --virtual-aggregate SUM shows."""
    if kind == "virtual":
        x_axis = "age_group"
        metric = {"expressionType": "SIMPLE", "aggregate": virtual_aggregate,
                  "label": "participants",
                  "column": {"column_name": "participants"}, "optionName": "metric_participants",
                  "hasCustomLabel": True}
        query_column = {"columnType": "BASE_AXIS", "sqlExpression": "age_group",
                        "label": "age_group", "expressionType": "SQL"}
    else:
        x_axis = {"expressionType": "SQL", "sqlExpression": AGE_GROUP_SQL, "label": "age_group"}
        metric = {"expressionType": "SQL", "sqlExpression": "COUNT(DISTINCT person_id)",
                  "label": "participants", "optionName": "metric_participants",
                  "hasCustomLabel": True}
        query_column = {"columnType": "BASE_AXIS", "sqlExpression": AGE_GROUP_SQL,
                        "label": "age_group", "expressionType": "SQL"}
    datasource = f"{ds_id}__table"
    params = {
        "datasource": datasource, "viz_type": "echarts_timeseries_bar",
        "x_axis": x_axis, "x_axis_sort": "age_group", "x_axis_sort_asc": True,
        "metrics": [metric], "groupby": [], "adhoc_filters": [], "row_limit": 10000,
        "truncate_metric": True, "show_legend": False, "show_value": True,
        "orientation": "vertical", "x_axis_title": "Age group", "y_axis_title": "Participants",
        "x_axis_title_margin": 30, "y_axis_title_margin": 50, "y_axis_title_position": "Left",
        "color_scheme": "supersetColors", "rich_tooltip": True, "comparison_type": "values",
    }
    query_context = {
        "datasource": {"id": ds_id, "type": "table"},
        "force": True,
        "queries": [{
            "filters": [], "extras": {"having": "", "where": ""}, "applied_time_extras": {},
            "columns": [query_column], "metrics": [metric],
            "orderby": [[metric, False]], "annotation_layers": [], "row_limit": 10000,
            "series_columns": [], "series_limit": 0, "order_desc": True,
            "url_params": {}, "custom_params": {}, "custom_form_data": {},
            "post_processing": [
                {"operation": "pivot", "options": {
                    "index": ["age_group"], "columns": [],
                    "aggregates": {"participants": {"operator": "mean"}},
                    "drop_missing_columns": False}},
                {"operation": "flatten"},
            ],
        }],
        "form_data": params,
        "result_format": "json", "result_type": "full",
    }
    return params, query_context


def create_chart(ss: Superset, ds_id: int, args) -> int:
    params, query_context = chart_definition(ds_id, args.dataset_kind, args.virtual_aggregate)
    body = ss.api("POST", "/api/v1/chart/", json={
        "slice_name": CHART_NAME, "viz_type": "echarts_timeseries_bar",
        "datasource_id": ds_id, "datasource_type": "table",
        "params": json.dumps(params), "query_context": json.dumps(query_context),
        "query_context_generation": True})
    return body["id"]


def normalise(rows: list[dict]) -> list[dict]:
    out = []
    for row in rows:
        value = row.get("participants")
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        out.append({"age_group": row.get("age_group"), "participants": value})
    return sorted(out, key=lambda r: str(r["age_group"]))


def chart_data(ss: Superset, chart_id: int, out_dir: Path) -> list[dict]:
    body = ss.api("GET", f"/api/v1/chart/{chart_id}/data/?format=json&force=true")
    results = body.get("result") or []
    if not results:
        raise Failure(f"chart data has no result: {body}")
    first = results[0]
    if first.get("error") or first.get("status") not in (None, "success"):
        raise Failure(f"chart data failed: {first.get('error') or first.get('status')}")
    query = first.get("query", "").strip()
    print(f"    SQL Superset sent for the chart:\n{query}")
    (out_dir / "chart-query.sql").write_text(query + "\n")
    rows = normalise(first.get("data") or [])
    (out_dir / "chart-data.json").write_text(json.dumps(rows, indent=2) + "\n")
    print(json.dumps(rows, indent=2))
    return rows


def screenshot(ss: Superset, chart_id: int, args, out_dir: Path) -> Path:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    chromium = args.chromium or shutil.which("chromium") or shutil.which("chromium-browser")
    driver_bin = args.chromedriver or shutil.which("chromedriver")
    if not chromium or not driver_bin:
        raise Failure("chromium and chromedriver are needed (Debian: apt-get install -y chromium "
                      "chromium-driver)")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--hide-scrollbars", "--window-size=1200,800", "--force-device-scale-factor=1"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=Service(executable_path=driver_bin))
    png = out_dir / "chart.png"
    try:
        wait = WebDriverWait(driver, args.screenshot_timeout)
        browser_login(driver, ss, args.screenshot_timeout, out_dir)
        driver.get(f"{ss.base}/explore/?slice_id={chart_id}&standalone=1")
        try:
            wait.until(ec.visibility_of_element_located((By.CSS_SELECTOR,
                                                         ".chart-container canvas")))
        except Exception:
            driver.save_screenshot(str(png))
            raise Failure(f"no chart canvas within {args.screenshot_timeout}s "
                          f"(page saved to {png}): {driver.find_element(By.TAG_NAME, 'body').text[:500]}")
        time.sleep(2)  # the bars grow in with an animation
        driver.save_screenshot(str(png))
    finally:
        driver.quit()
    check_png_has_bars(png)
    return png


def browser_login(driver, ss: Superset, timeout: float, out_dir: Path) -> None:
    """The login form, as a person fills it in. On a loaded machine the React page can take the
    click before its handlers are attached (the click is then lost): the form is filled in again,
    up to the timeout, and the page is saved as login-failed.png when it never lets us in."""
    from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    deadline = time.monotonic() + timeout
    attempt = 0
    while True:
        attempt += 1
        left = max(5.0, deadline - time.monotonic())
        driver.get(f"{ss.base}/login/")
        if "/login" not in driver.current_url:
            return  # an earlier click got through after all: /login/ sends us on
        try:
            wait = WebDriverWait(driver, left)
            for field, text in (("username-input", "admin"), ("password-input", ss.admin_password)):
                el = wait.until(ec.element_to_be_clickable(
                    (By.CSS_SELECTOR, f'[data-test="{field}"]')))
                el.clear()
                el.send_keys(text)
            wait.until(ec.element_to_be_clickable(
                (By.CSS_SELECTOR, '[data-test="login-button"]'))).click()
            WebDriverWait(driver, min(30.0, left)).until(lambda d: "/login" not in d.current_url)
            if attempt > 1:
                print(f"    logged in at attempt {attempt}")
            return
        except (TimeoutException, StaleElementReferenceException):
            if time.monotonic() < deadline:
                print(f"    login form: still on {driver.current_url} (attempt {attempt}), again")
                continue
            png = out_dir / "login-failed.png"
            driver.save_screenshot(str(png))
            body = driver.find_element(By.TAG_NAME, "body").text[:500]
            raise Failure(f"the login form did not let us in within {timeout:.0f}s ({attempt} "
                          f"attempts; page saved to {png}): {body!r}") from None


def check_png_has_bars(png: Path) -> None:
    from PIL import Image

    img = Image.open(png).convert("RGB")
    small = img.resize((img.width // 4, img.height // 4))
    raw = small.tobytes()
    coloured = sum(1 for i in range(0, len(raw), 3)
                   if max(raw[i:i + 3]) - min(raw[i:i + 3]) > 60)
    print(f"    {png}: {img.width}x{img.height}, {coloured} coloured pixels (of {small.width * small.height} sampled)")
    if coloured < 200:
        raise Failure(f"the screenshot {png} shows no bars (only {coloured} coloured pixels)")


def compare(rows: list[dict], expect_path: Path) -> None:
    expected = normalise(json.loads(expect_path.read_text()))
    if rows != expected:
        raise Failure("chart data differs from " + str(expect_path) + ":\n  got      "
                      + json.dumps(rows) + "\n  expected " + json.dumps(expected))
    print(f"    chart data equals {expect_path} ({len(rows)} groups)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--pg-host", default="127.0.0.1")
    ap.add_argument("--pg-port", type=int, required=True)
    ap.add_argument("--pg-database", default="strata")
    ap.add_argument("--user", required=True, help="login user: the passport's sub")
    ap.add_argument("--password", help="the passport JWT (better: --password-file or "
                    "$STRATA_PG_PASSWORD, which ps does not show)")
    ap.add_argument("--password-file", type=Path)
    ap.add_argument("--password-in", choices=("auto", "uri", "secure-extra"), default="auto",
                    help="the password in the SQLAlchemy URI or in Superset's Secure Extra "
                    "(connect_args); auto: the URI when it fits in Superset's 1024 characters")
    ap.add_argument("--schema", default="public")
    ap.add_argument("--database-name", default="Strata")
    ap.add_argument("--dataset-kind", choices=("virtual", "physical"), default="virtual")
    ap.add_argument("--virtual-aggregate", choices=("MAX", "MIN", "SUM", "AVG"), default="MAX",
                    help="the chart metric's aggregate around the virtual dataset's participants "
                    "column (default MAX: see chart_definition)")
    ap.add_argument("--expect-json", type=Path,
                    help="list of {age_group, participants}: the chart data must equal it")
    ap.add_argument("--out-dir", type=Path,
                    default=Path(__file__).resolve().parent.parent / ".test-work" / "superset")
    ap.add_argument("--port", type=int, default=0, help="Superset's port (default: a free one)")
    ap.add_argument("--chromium")
    ap.add_argument("--chromedriver")
    ap.add_argument("--no-screenshot", action="store_true")
    ap.add_argument("--startup-timeout", type=float, default=300)
    ap.add_argument("--screenshot-timeout", type=float, default=120)
    ap.add_argument("--keep-work", action="store_true",
                    help="keep the temporary Superset home (config, metadata db)")
    args = ap.parse_args()
    # SIGTERM unwinds like Ctrl-C, so that the Superset server started below is stopped too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))

    if args.password_file:
        args.password = args.password_file.read_text().strip()
    elif not args.password:
        args.password = os.environ.get("STRATA_PG_PASSWORD", "")
    if not args.password:
        ap.error("a password is needed: --password, --password-file or $STRATA_PG_PASSWORD")
    if args.expect_json and not args.expect_json.is_file():
        ap.error(f"--expect-json {args.expect_json}: no such file")

    args.out_dir.mkdir(parents=True, exist_ok=True)
    out_dir = args.out_dir.resolve()
    for stale in ("chart.png", "chart-data.json", "chart-query.sql", "superset-cli.log"):
        (out_dir / stale).unlink(missing_ok=True)
    venv_bin = Path(sys.executable).parent
    work = Path(tempfile.mkdtemp(prefix="strata-superset-"))
    port = args.port or free_port()
    write_config(work, port)
    ss = Superset(venv_bin, work, out_dir, port)
    steps = Steps()
    ok = False
    try:
        steps.run("superset db upgrade/create-admin/init", ss.init_metadata)
        steps.run(f"start superset on :{port}", ss.start, args.startup_timeout)
        steps.run("REST login + CSRF token", ss.login)
        db_id = steps.run("create database (test + save)", create_database, ss, args)
        steps.run("list schemas and tables", browse_database, ss, db_id, args.schema, "person")
        if args.dataset_kind == "physical":
            steps.run("table metadata (column preview)", table_metadata, ss, db_id, args.schema,
                      "person")
        ds_id = steps.run(f"create {args.dataset_kind} dataset", create_dataset, ss, db_id, args)
        chart_id = steps.run("create bar chart", create_chart, ss, ds_id, args)
        rows = steps.run("fetch chart data", chart_data, ss, chart_id, out_dir)
        if not args.no_screenshot:
            png = steps.run("chromium screenshot", screenshot, ss, chart_id, args, out_dir)
            print(f"    screenshot: {png}")
        if args.expect_json:
            steps.run("compare with --expect-json", compare, rows, args.expect_json)
        ok = True
    except Exception:  # noqa: BLE001 - reported by Steps; the summary follows
        pass
    except (KeyboardInterrupt, SystemExit):
        print("interrupted", file=sys.stderr)
    finally:
        ss.stop()
        if args.keep_work:
            print(f"Superset home kept at {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)
        steps.summary()
        print(f"logs: {out_dir}/superset-cli.log, {ss.log_path}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
