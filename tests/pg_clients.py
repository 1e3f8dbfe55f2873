"""Real PostgreSQL clients for the tests of the PostgreSQL-wire door (`strata serve --pg-listen`).

Each `*_query` function opens ONE connection with ONE real client, runs ONE SQL statement and
returns `(column_names, rows)`: `rows` is a list of tuples of plain Python values (int, float, str,
bool, None, datetime.date, datetime.datetime; timezone-aware timestamps become naive UTC, Decimal
becomes float, NaN/NaT become None).  Compare results across clients with `==`: `2 == 2.0` in
Python, so an integer column that one client hands over as a double (R, pandas with NULLs) still
compares equal.  Row order is the server's: sort in the test unless the SQL has ORDER BY.

A server error raises `PgClientError(sqlstate, message)`; `sqlstate` is the server's SQLSTATE when
the client exposes it, else None (RPostgreSQL and connection failures of psql never show it).

Connection parameters everywhere: host, port, user, password (a passport JWT for the door),
dbname="strata", sslmode="disable" (pass "prefer"/"require" to exercise SSLRequest).  How each
client gets the password (never on a command line):

    psql_query               PGPASSWORD in the environment of the `psql` subprocess
    psycopg_query            psycopg.connect(password=...)
    sqlalchemy_read_sql      sqlalchemy.URL.create(password=...)
    pyodbc_query             PWD={...} in the ODBC connection string (psqlODBC, by driver path)
    r_dbi_query, r_dbplyr_count
                             PGC_PASSWORD in the Rscript environment -> dbConnect(password=)
    r_rodbc_query            PGC_CONNSTR (the ODBC connection string, PWD={...}) in the Rscript
                             environment -> odbcDriverConnect()
    r_reticulate_flight_query
                             PGC_TOKEN in the Rscript environment -> "Bearer <token>" header

Every subprocess (psql, Rscript) runs with a 60 s timeout.  psql and R come from Debian packages,
psycopg/SQLAlchemy/pyodbc from tests/requirements.txt (scripts/test.sh installs both).
"""

from __future__ import annotations

import csv
import datetime as _dt
import decimal
import glob
import io
import json
import math
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Sequence

TIMEOUT = 60  # seconds, for every subprocess
CONNECT_TIMEOUT = 10  # seconds, libpq/ODBC login timeout of the in-process clients
REPO_ROOT = Path(__file__).resolve().parent.parent

Result = tuple[list[str], list[tuple]]


class PgClientError(Exception):
    """A server (or connection) error seen by a client: `sqlstate` (5 characters) or None."""

    def __init__(self, sqlstate: str | None, message: str):
        super().__init__(f"{sqlstate or '?????'}: {message}")
        self.sqlstate = sqlstate
        self.message = message


# --------------------------------------------------------------------------------------------------
# Normalization
# --------------------------------------------------------------------------------------------------


def _utc_naive(v: _dt.datetime) -> _dt.datetime:
    return v if v.tzinfo is None else v.astimezone(_dt.timezone.utc).replace(tzinfo=None)


def normalize(v: Any) -> Any:
    """A driver's value as a plain Python value (see the module docstring)."""
    if v is None:
        return None
    if hasattr(v, "item") and type(v).__module__ == "numpy":  # numpy scalar
        v = v.item()
    if type(v).__name__ in ("NaTType", "NAType"):  # pandas.NaT, pandas.NA
        return None
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, decimal.Decimal):
        return None if v.is_nan() else float(v)
    if isinstance(v, _dt.datetime):  # also pandas.Timestamp
        if hasattr(v, "to_pydatetime"):
            v = v.to_pydatetime()
        return _utc_naive(v)
    return v


_INT = re.compile(r"-?(0|[1-9][0-9]*)")
_FLOAT = re.compile(r"-?([0-9]+\.[0-9]*|\.[0-9]+)([eE][-+]?[0-9]+)?|-?[0-9]+[eE][-+]?[0-9]+|NaN|-?Infinity")
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_TIMESTAMP = re.compile(
    r"[0-9]{4}-[0-9]{2}-[0-9]{2}[ T][0-9]{2}:[0-9]{2}:[0-9]{2}(\.[0-9]+)?([+-][0-9]{2}(:?[0-9]{2})?|Z)?"
)


def parse_text(s: str) -> Any:
    """A value that a client only gave as text (psql): int, float, date, timestamp, else the string.

    A heuristic: a text column whose values look like numbers (e.g. a concept_code "44054006")
    comes back as numbers too; leading zeros ("007") and booleans ("t"/"f") stay strings."""
    if _INT.fullmatch(s):
        return int(s)
    if _FLOAT.fullmatch(s):
        return normalize(float(s))
    if _DATE.fullmatch(s):
        return _dt.date.fromisoformat(s)
    if _TIMESTAMP.fullmatch(s):
        s = s.replace("Z", "+00:00")
        if re.search(r"[+-][0-9]{2}$", s):
            s += ":00"
        return _utc_naive(_dt.datetime.fromisoformat(s))
    return s


def _rows(rows) -> list[tuple]:
    return [tuple(normalize(v) for v in row) for row in rows]


_SQLSTATE_IN_TEXT = [
    re.compile(r"SQLSTATE: ([0-9A-Z]{5})"),  # written by our R scripts
    re.compile(r"(?:ERROR|FATAL|PANIC):\s+([0-9A-Z]{5}): "),  # psql with VERBOSITY=verbose
    re.compile(r"^([0-9A-Z]{5}) -?[0-9]+ ", re.M),  # RODBC: "42P01 7 ERROR: relation ..."
    re.compile(r"\bstate ([0-9A-Z]{5}),"),  # RODBC: "[RODBC] ERROR: state 08001, code 101, ..."
]


def sqlstate_in(text: str) -> str | None:
    """The first SQLSTATE a client printed in `text` (psql verbose, RODBC, our R scripts)."""
    for pattern in _SQLSTATE_IN_TEXT:
        m = pattern.search(text)
        if m:
            return m.group(1)
    return None


def _run(cmd: list[str], env: dict[str, str]) -> subprocess.CompletedProcess:
    try:
        return subprocess.run(
            cmd, env={**os.environ, **env}, capture_output=True, encoding="utf-8", errors="replace",
            timeout=TIMEOUT, stdin=subprocess.DEVNULL,
        )  # fmt: skip
    except subprocess.TimeoutExpired as e:
        raise PgClientError(None, f"{cmd[0]} timed out after {TIMEOUT}s; stderr: {e.stderr!r}") from None


# --------------------------------------------------------------------------------------------------
# psql
# --------------------------------------------------------------------------------------------------

_PSQL_NULL = "\x01NULL\x01"  # --csv prints NULL as this, an empty string as an empty field


def _libpq_quote(v: Any) -> str:
    return str(v).replace("\\", "\\\\").replace("'", "\\'")


def psql_query(host, port, user, password, sql, dbname="strata", sslmode="disable") -> Result:
    """`psql -c SQL` (simple query protocol), CSV output; values typed by `parse_text` (booleans
    stay 't'/'f').

    SQLSTATE from `-v VERBOSITY=verbose` ("ERROR:  42P01: ..."); a failed login has none."""
    parts = {"host": host, "port": port, "dbname": dbname, "user": user, "sslmode": sslmode,
             "connect_timeout": CONNECT_TIMEOUT}  # fmt: skip
    conninfo = " ".join(f"{k}='{_libpq_quote(v)}'" for k, v in parts.items())
    cmd = ["psql", "-X", "-q", "--csv", "-P", f"null={_PSQL_NULL}", "-v", "ON_ERROR_STOP=1",
           "-v", "VERBOSITY=verbose", "-c", sql, conninfo]  # fmt: skip
    proc = _run(cmd, {"PGPASSWORD": password, "PGCLIENTENCODING": "UTF8"})
    if proc.returncode != 0:
        raise PgClientError(sqlstate_in(proc.stderr), proc.stderr.strip())
    lines = list(csv.reader(io.StringIO(proc.stdout)))
    if not lines:
        return [], []
    rows = [tuple(None if v == _PSQL_NULL else parse_text(v) for v in line) for line in lines[1:]]
    return lines[0], rows


# --------------------------------------------------------------------------------------------------
# psycopg 3 and SQLAlchemy + pandas
# --------------------------------------------------------------------------------------------------


def psycopg_query(
    host, port, user, password, sql, params: Sequence | None = None, binary=False, autocommit=False,
    dbname="strata", sslmode="disable",
) -> Result:  # fmt: skip
    """psycopg 3.  `params=None` and text results: the simple query protocol.  `params` (a tuple
    for `%s` placeholders): the extended protocol, bound by the server (Parse with typed params,
    e.g. int2 for a small int, Bind with BINARY parameter values, Describe portal, Execute, Sync).
    `binary=True`: a binary cursor (extended protocol, binary result format).  `autocommit=False`
    (psycopg's default) sends BEGIN before the statement and COMMIT/ROLLBACK after."""
    import psycopg

    try:
        with psycopg.connect(
            host=host, port=port, user=user, password=password, dbname=dbname, sslmode=sslmode,
            connect_timeout=CONNECT_TIMEOUT, autocommit=autocommit,
        ) as conn:  # fmt: skip
            with conn.cursor(binary=binary) as cur:
                cur.execute(sql, params)
                if cur.description is None:
                    return [], []
                return [c.name for c in cur.description], _rows(cur.fetchall())
    except psycopg.Error as e:
        raise PgClientError(e.sqlstate, str(e).strip()) from None


def sqlalchemy_read_sql(host, port, user, password, sql, dbname="strata", sslmode="disable") -> Result:
    """`pandas.read_sql(sql, connection)` on a SQLAlchemy 2.1 `postgresql+psycopg` engine (its
    dialect's first-connect queries included), the DataFrame as (columns, rows).  pandas turns an
    integer column with NULLs into floats (compares equal to ints) and NULLs into NaN/NaT (None).
    pandas first asks whether the SQL text is a table name (a parameterized pg_class query)."""
    import pandas
    import sqlalchemy
    from sqlalchemy.pool import NullPool

    url = sqlalchemy.URL.create(
        "postgresql+psycopg", username=user, password=password, host=host, port=int(port), database=dbname,
        query={"sslmode": sslmode, "connect_timeout": str(CONNECT_TIMEOUT)},
    )  # fmt: skip
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as conn:
            # pandas runs a str through exec_driver_sql with an empty parameter list, so psycopg
            # reads `%` as a placeholder: `%%` is a literal `%` (the server receives `%`).
            df = pandas.read_sql(sql.replace("%", "%%"), conn)
    except Exception as e:  # pandas wraps SQLAlchemy's DBAPIError in its own DatabaseError
        orig = _cause(e, sqlalchemy.exc.DBAPIError)
        if orig is None:
            raise
        raise PgClientError(getattr(orig.orig, "sqlstate", None), str(orig.orig).strip()) from None
    finally:
        engine.dispose()
    return [str(c) for c in df.columns], _rows(df.astype(object).itertuples(index=False, name=None))


def _cause(e: BaseException | None, cls: type) -> Any:
    """The first exception of type `cls` in e's chain of causes, or None."""
    while e is not None and not isinstance(e, cls):
        e = e.__cause__ or e.__context__
    return e


# --------------------------------------------------------------------------------------------------
# ODBC: psqlODBC through unixODBC (pyodbc, RODBC)
# --------------------------------------------------------------------------------------------------


def psqlodbc_driver() -> str:
    """Path of psqlODBC's Unicode driver (Debian odbc-postgresql); STRATA_PSQLODBC_DRIVER overrides.
    Used by path in the connection string: no odbcinst.ini is read or written."""
    env = os.environ.get("STRATA_PSQLODBC_DRIVER")
    if env:
        return env
    found = sorted(glob.glob("/usr/lib/*/odbc/psqlodbcw.so") + glob.glob("/usr/lib/odbc/psqlodbcw.so"))
    if not found:
        raise FileNotFoundError("psqlodbcw.so not found: install Debian's odbc-postgresql (scripts/test.sh)")
    return found[0]


def _odbc_value(v: Any) -> str:
    # psqlODBC hands some braced values to libpq with their braces (Port={5433} is refused): brace
    # only a value that needs it (a JWT never does), `}` doubled inside.
    v = str(v)
    return "{" + v.replace("}", "}}") + "}" if re.search(r"[;{}=]|^\s|\s$", v) else v


def odbc_connection_string(host, port, user, password, dbname="strata", sslmode="disable") -> str:
    parts = {"DRIVER": psqlodbc_driver(), "Server": host, "Port": port, "Database": dbname,
             "UID": user, "PWD": password, "sslmode": sslmode}  # fmt: skip
    return ";".join(f"{k}={_odbc_value(v)}" for k, v in parts.items())


def pyodbc_query(
    host, port, user, password, sql, autocommit=False, dbname="strata", sslmode="disable"
) -> Result:
    """pyodbc → unixODBC → psqlODBC (psqlodbcw.so); SQLSTATE from pyodbc's error args[0].

    pyodbc's default autocommit=False makes psqlODBC send "BEGIN;<sql>" as ONE simple Query (and
    ROLLBACK at close).  psqlODBC hands booleans over as the strings '1'/'0' (BoolsAsChar)."""
    import pyodbc

    try:
        conn = pyodbc.connect(
            odbc_connection_string(host, port, user, password, dbname, sslmode), timeout=CONNECT_TIMEOUT,
            autocommit=autocommit,
        )  # fmt: skip
    except pyodbc.Error as e:
        raise PgClientError(_pyodbc_state(e), str(e)) from None
    try:
        cur = conn.cursor()
        cur.execute(sql)
        if cur.description is None:
            return [], []
        return [c[0] for c in cur.description], _rows(cur.fetchall())
    except pyodbc.Error as e:
        raise PgClientError(_pyodbc_state(e), str(e)) from None
    finally:
        conn.close()


def _pyodbc_state(e: Exception) -> str | None:
    state = e.args[0] if e.args and isinstance(e.args[0], str) else None
    return state if state and re.fullmatch(r"[0-9A-Z]{5}", state) else None


# --------------------------------------------------------------------------------------------------
# R: DBI + RPostgreSQL, dbplyr, RODBC, reticulate → ADBC Flight SQL
# --------------------------------------------------------------------------------------------------

# Shared by every R script: inputs come from PGC_* environment variables; the result is written as
# JSON to the file PGC_OUT ({"columns", "types", "data": [column arrays], ...}); an error goes to
# stderr (with "SQLSTATE: XXXXX" when known) and exits 1.
_R_PRELUDE = r"""
options(warn = 1)
suppressPackageStartupMessages(library(jsonlite))
env <- function(name) Sys.getenv(name, unset = NA)
column_json <- function(v) {
  if (inherits(v, "POSIXct")) format(v, "%Y-%m-%d %H:%M:%OS6", tz = "UTC")
  else if (inherits(v, "Date")) format(v, "%Y-%m-%d")
  else if (is.factor(v) || inherits(v, "integer64")) as.character(v)
  else v
}
emit <- function(df, extra = list(), types = NULL) {
  df <- as.data.frame(df, stringsAsFactors = FALSE)
  if (is.null(types)) types <- vapply(df, function(v) class(v)[1], "")
  out <- c(list(columns = names(df), types = unname(types), data = unname(lapply(df, column_json))), extra)
  writeLines(toJSON(out, na = "null", null = "null", digits = NA), env("PGC_OUT"))
}
fail <- function(e) {
  message(conditionMessage(e))
  quit(save = "no", status = 1)
}
pg_connect <- function() {
  suppressPackageStartupMessages({ library(DBI); library(RPostgreSQL) })
  dbConnect(PostgreSQL(), host = env("PGC_HOST"), port = as.integer(env("PGC_PORT")), user = env("PGC_USER"),
            password = env("PGC_PASSWORD"), dbname = env("PGC_DBNAME"))
}
"""


def _run_r(script: str, env: dict[str, str]) -> dict:
    """Run `_R_PRELUDE + script` with Rscript; inputs in `env` (PGC_* variables); the JSON it wrote."""
    with tempfile.TemporaryDirectory(prefix="pgc-r-") as tmp:
        path, out = Path(tmp, "script.R"), Path(tmp, "out.json")
        path.write_text(_R_PRELUDE + script)
        # TZ=UTC: RPostgreSQL/RODBC read `timestamp` values as local time; UTC keeps them unchanged.
        # LC_ALL=C.UTF-8: R reads and writes UTF-8 whatever the caller's locale.
        env = {**env, "PGC_OUT": str(out), "TZ": "UTC", "LC_ALL": "C.UTF-8"}
        proc = _run(["Rscript", "--vanilla", str(path)], env)
        if proc.returncode != 0 or not out.exists():
            message = proc.stderr.strip() or f"Rscript exited {proc.returncode}"
            raise PgClientError(sqlstate_in(proc.stderr), message)
        return json.loads(out.read_text())


def _r_value(v: Any, rtype: str) -> Any:
    if v is None:
        return None
    if rtype == "Date" or rtype.startswith("date"):
        return _dt.date.fromisoformat(v)
    if rtype == "POSIXct" or rtype.startswith("timestamp"):
        return _utc_naive(_dt.datetime.fromisoformat(v))
    if rtype.startswith("decimal"):
        return float(v)
    if isinstance(v, str) and rtype not in ("character", "string", "large_string"):
        return parse_text(v)
    return normalize(v)


def _r_result(obj: dict) -> Result:
    cols, types, data = obj["columns"], obj["types"], obj["data"]
    typed = [[_r_value(v, t) for v in col] for col, t in zip(data, types)]
    return list(cols), [tuple(r) for r in zip(*typed)] if typed else []


def _pg_env(host, port, user, password, dbname, sslmode) -> dict[str, str]:
    # RPostgreSQL's dbConnect has no sslmode argument: libpq reads PGSSLMODE.
    return {"PGC_HOST": str(host), "PGC_PORT": str(port), "PGC_USER": user, "PGC_PASSWORD": password,
            "PGC_DBNAME": dbname, "PGSSLMODE": sslmode, "PGCONNECT_TIMEOUT": str(CONNECT_TIMEOUT)}  # fmt: skip


_R_DBI = r"""
main <- function() {
  con <- pg_connect()
  on.exit(dbDisconnect(con))
  res <- dbGetQuery(con, env("PGC_SQL"))
  # RPostgreSQL's dbGetQuery warns and returns NULL on a server error: the message is kept here.
  if (is.null(res)) stop(dbGetException(con)$errorMsg)
  emit(res)
}
tryCatch(main(), error = fail)
"""


def r_dbi_query(host, port, user, password, sql, dbname="strata", sslmode="disable") -> Result:
    """R: DBI::dbGetQuery on an RPostgreSQL connection.  RPostgreSQL never shows the SQLSTATE
    (sqlstate is None; the message carries the server's text).  bigint arrives as double."""
    return _r_result(_run_r(_R_DBI, {**_pg_env(host, port, user, password, dbname, sslmode), "PGC_SQL": sql}))


_R_DBPLYR = r"""
main <- function() {
  suppressPackageStartupMessages({ library(dplyr); library(dbplyr) })
  con <- pg_connect()
  on.exit(dbDisconnect(con))
  q <- tbl(con, env("PGC_TABLE")) %>%
    group_by(!!rlang::sym(env("PGC_GROUP"))) %>%
    summarise(n = n(), .groups = "drop")
  sql <- as.character(sql_render(q))
  emit(collect(q), extra = list(sql = sql))
}
tryCatch(main(), error = fail)
"""


def r_dbplyr_count(
    host, port, user, password, table, group_col, dbname="strata", sslmode="disable"
) -> tuple[list[str], list[tuple], str]:
    """R: dbplyr `tbl(con, table) %>% group_by(group_col) %>% summarise(n = n()) %>% collect()` on
    RPostgreSQL; returns (columns, rows, the SQL dbplyr generated).  tbl() first runs a zero-row
    probe (`SELECT * FROM "table" AS "q01" WHERE (0 = 1)`) to learn the columns."""
    env = {**_pg_env(host, port, user, password, dbname, sslmode), "PGC_TABLE": table, "PGC_GROUP": group_col}
    obj = _run_r(_R_DBPLYR, env)
    cols, rows = _r_result(obj)
    sql = obj["sql"]
    return cols, rows, sql[0] if isinstance(sql, list) else sql


_R_RODBC = r"""
main <- function() {
  suppressPackageStartupMessages(library(RODBC))
  ch <- odbcDriverConnect(env("PGC_CONNSTR"))  # failures: warnings "[RODBC] ERROR: state 28P01, ..."
  if (!inherits(ch, "RODBC")) stop("odbcDriverConnect failed")
  on.exit(odbcClose(ch))
  res <- sqlQuery(ch, env("PGC_SQL"), errors = TRUE)
  if (!is.data.frame(res)) stop(paste(res, collapse = "\n"))  # errors: "42P01 7 ERROR: ..."
  emit(res)
}
tryCatch(main(), error = fail)
"""


def r_rodbc_query(host, port, user, password, sql, dbname="strata", sslmode="disable") -> Result:
    """R: RODBC::sqlQuery through psqlODBC (by driver path, autocommit on); SQLSTATE from RODBC's
    error strings.  RODBC type-converts text columns: digits become numbers, an all-'' column NA
    (None), booleans 1/0."""
    env = {"PGC_CONNSTR": odbc_connection_string(host, port, user, password, dbname, sslmode), "PGC_SQL": sql}
    return _r_result(_run_r(_R_RODBC, env))


_R_RETICULATE = r"""
main <- function() {
  suppressPackageStartupMessages(library(reticulate))
  use_python(env("RETICULATE_PYTHON"), required = TRUE)
  adbc <- import("adbc_driver_flightsql", convert = FALSE)
  flight_sql <- import("adbc_driver_flightsql.dbapi", convert = FALSE)
  opt <- function(name) py_to_r(adbc$DatabaseOptions[[name]]$value)
  keys <- list(opt("AUTHORIZATION_HEADER"), opt("TIMEOUT_QUERY"), opt("TIMEOUT_FETCH"))
  kwargs <- py_dict(keys, list(paste("Bearer", env("PGC_TOKEN")), "50", "50"))
  conn <- flight_sql$connect(env("PGC_URI"), db_kwargs = kwargs, autocommit = TRUE)
  on.exit(conn$close())
  cur <- conn$cursor()
  cur$execute(env("PGC_SQL"))
  tbl <- cur$fetch_arrow_table()
  # Each column as Python str() of its values, converted to R only as strings: Debian's reticulate
  # 1.28 cannot convert NumPy 2 arrays (so no fetch_df()) and truncates Python ints beyond 32 bits.
  as_text <- py_eval("lambda xs: [None if x is None else str(x) for x in xs]")
  n <- py_to_r(tbl$num_columns)
  cols <- lapply(seq_len(n) - 1L, function(i) {
    vapply(as_text(tbl$column(i)$to_pylist()), function(x) if (is.null(x)) NA_character_ else x, "")
  })
  names(cols) <- py_to_r(tbl$column_names)
  types <- vapply(seq_len(n) - 1L, function(i) py_str(tbl$schema$field(i)$type), "")
  emit(as.data.frame(cols, stringsAsFactors = FALSE, check.names = FALSE), types = types)
}
tryCatch(main(), error = function(e) {
  ex <- attr(py_last_error(), "exception")  # the Python exception: ADBC errors carry .sqlstate
  state <- tryCatch(py_to_r(ex$sqlstate), error = function(e2) NULL)
  if (is.character(state) && nchar(state) == 5 && state != "00000") message("SQLSTATE: ", state)
  fail(e)
})
"""


def _venv_python() -> str:
    venv = REPO_ROOT / ".venv" / "bin" / "python"
    return os.environ.get("RETICULATE_PYTHON") or (str(venv) if venv.exists() else sys.executable)


def _flight_value(v: str | None, arrow_type: str) -> Any:
    if v is None:
        return None
    if arrow_type in ("string", "large_string", "string_view"):
        return v
    if arrow_type == "bool":
        return v == "True"
    if re.match(r"u?int[0-9]+$", arrow_type):
        return int(v)
    if arrow_type in ("float", "double", "halffloat") or arrow_type.startswith("decimal"):
        return normalize(float(v))
    return _r_value(v, arrow_type)


def r_reticulate_flight_query(flight_uri: str, token: str, sql: str) -> Result:
    """R → reticulate → the venv's Python → adbc_driver_flightsql.dbapi with `Bearer <token>`
    (as tests/helpers.py connects), `fetch_arrow_table()`; values cross into R as Python str() and
    are typed back from the Arrow schema.  A failure's SQLSTATE is the ADBC error's, if it has one."""
    env = {"RETICULATE_PYTHON": _venv_python(), "PGC_URI": flight_uri, "PGC_TOKEN": token, "PGC_SQL": sql}
    obj = _run_r(_R_RETICULATE, env)
    cols, types, data = obj["columns"], obj["types"], obj["data"]
    typed = [[_flight_value(v, t) for v in col] for col, t in zip(data, types)]
    return list(cols), [tuple(r) for r in zip(*typed)] if typed else []
