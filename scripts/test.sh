#!/usr/bin/env bash
# The test command of Strata: builds the workspace, runs the Rust tests, then the Python end-to-end
# suite (tests/) against the freshly built `strata` binary.
#
#   ./scripts/test.sh                  everything
#   ./scripts/test.sh -k s3 -x         extra arguments go to pytest
#
# Environment:
#   CARGO_TARGET_DIR   cargo's target folder; defaults to $HOME/.cache/strata-target when that exists
#   PYTHON             interpreter for the venv (default: python3, 3.11 or newer)
#   STRATA_KEEP_TEST_WORK=1  keep .test-work/run-* (datasets, server logs) after pytest
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"

VENV="$REPO/.venv"
REQS="$REPO/tests/requirements.txt"
PYTEST_LOG="$REPO/.test-work/pytest-output.txt"
PYTHON="${PYTHON:-python3}"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

SUITE_START=$SECONDS
declare -a TIMINGS=()

step() { # step NAME COMMAND...: run, time, and stop the script on failure
    local name="$1"; shift
    local start=$SECONDS
    echo "==> $name"
    local rc
    # A subshell with errexit of its own: a failing command inside a step function fails the step
    # (errexit would be ignored in a `cmd || …` context).
    set +e
    ( set -e; "$@" )
    rc=$?
    set -e
    local took=$((SECONDS - start))
    TIMINGS+=("$(printf '%-32s %5ds  %s' "$name" "$took" "$([ $rc -eq 0 ] && echo ok || echo "FAILED (exit $rc)")")")
    echo "<== $name: ${took}s$([ $rc -eq 0 ] || echo ", FAILED (exit $rc)")"
    if [ $rc -ne 0 ]; then
        summary
        echo "test.sh: step '$name' failed" >&2
        if [ -f "$PYTEST_LOG" ]; then
            grep -E '^=*\s*[0-9]+ (passed|failed|error)' "$PYTEST_LOG" | tail -n 1 || true
        fi
        exit "$rc"
    fi
}

summary() {
    echo
    echo "---- timings ----"
    local t
    for t in "${TIMINGS[@]}"; do echo "$t"; done
    printf "%-32s %5ds\n" "total" "$((SECONDS - SUITE_START))"
}

setup_venv() {
    make_venv "$VENV"
    require_python "$VENV" 11 99 "the test suite"
    install_requirements "$VENV" "$REQS"
}

# ACRO (the disclosure-control oracle of tests/test_dominance.py) pins pandas < 3: its own venv.
ACRO_VENV="$REPO/.venv-acro"
ACRO_REQS="$REPO/tests/requirements-acro.txt"
setup_acro_venv() {
    make_venv "$ACRO_VENV"
    install_requirements "$ACRO_VENV" "$ACRO_REQS"
}

# Debian packages of the PostgreSQL-wire door's client tests (tests/pg_clients.py): psql, psqlODBC
# through unixODBC, and R with DBI/RPostgreSQL, dbplyr, RODBC and reticulate; and Prometheus, which
# scrapes the metrics endpoint in tests/test_telemetry.py. Installed only when one is missing (then
# `apt-get update` first); a no-op on a machine that has them all. (jsonlite: the R scripts of
# tests/pg_clients.py write their results as JSON.)
DEBIAN_PACKAGES=(
    postgresql-client odbc-postgresql unixodbc
    r-base-core r-cran-dbi r-cran-rpostgresql r-cran-dbplyr r-cran-rodbc r-cran-reticulate r-cran-jsonlite
    prometheus
)
setup_debian_packages() {
    ensure_debian_packages "${DEBIAN_PACKAGES[@]}"
}

# The chart's screenshot (tests/test_superset.py) needs Debian's chromium and chromium-driver.
setup_superset() {
    setup_superset_venv
    ensure_debian_packages chromium chromium-driver
}

if [ -z "${CARGO_TARGET_DIR:-}" ] && [ -d "$HOME/.cache/strata-target" ]; then
    export CARGO_TARGET_DIR="$HOME/.cache/strata-target"
fi

target_dir() {
    if [ -n "${CARGO_TARGET_DIR:-}" ]; then
        echo "$CARGO_TARGET_DIR"
    else
        cargo metadata --format-version 1 --no-deps 2>/dev/null \
            | "$VENV/bin/python" -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])' \
            2>/dev/null || echo "$REPO/target"
    fi
}

run_pytest() {
    local bin
    bin="$(target_dir)/debug/strata"
    if [ ! -x "$bin" ]; then
        echo "strata binary not found at $bin" >&2
        return 1
    fi
    export STRATA_BIN="$bin"
    export STRATA_ACRO_PYTHON="$ACRO_VENV/bin/python"
    export STRATA_SUPERSET_PYTHON="$SUPERSET_VENV/bin/python"
    echo "STRATA_BIN=$STRATA_BIN"
    local rc=0
    mkdir -p "$REPO/.test-work"
    "$VENV/bin/python" -m pytest tests/ -q "$@" 2>&1 | tee "$PYTEST_LOG" || rc=$?
    if [ $rc -eq 5 ]; then
        echo "pytest collected no tests: treating as failure" >&2
        return 1
    fi
    return $rc
}

# A full disk fails a run halfway (pip, the linker, the audit log of a test) with errors that name
# anything but the disk: check first. Cargo's incremental caches are the part of a warm target
# folder that only grows, and the cheapest to rebuild, so they go first when space is short.
MIN_FREE_GB=12
free_gb() { df -Pk "$1" | awk 'NR == 2 { print int($4 / 1048576) }'; }
check_disk() {
    local target
    target="${CARGO_TARGET_DIR:-$REPO/target}"
    mkdir -p "$target"
    echo "free: $(free_gb "$REPO") GiB under $REPO, $(free_gb "$target") GiB under $target"
    if [ "$(free_gb "$target")" -lt "$MIN_FREE_GB" ]; then
        echo "under ${MIN_FREE_GB} GiB free: removing cargo's incremental caches and pip's cache"
        rm -rf "$target"/debug/incremental "$target"/release/incremental "$HOME/.cache/pip"
        echo "free: $(free_gb "$target") GiB"
    fi
    if [ "$(free_gb "$target")" -lt 4 ] || [ "$(free_gb "$REPO")" -lt 4 ]; then
        echo "less than 4 GiB free: the build and the tests need more. Largest folders:" >&2
        du -xsh "$target" "$HOME/.cache"/* "$REPO"/.venv* 2>/dev/null | sort -h | tail -n 8 >&2
        return 1
    fi
}

rm -f "$PYTEST_LOG"
echo "repo: $REPO"
echo "CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-<cargo default>}"

step "disk space" check_disk
step "Debian packages (clients, Prometheus)" setup_debian_packages
step "python venv + requirements" setup_venv
step "ACRO venv" setup_acro_venv
step "Superset venv + chromium" setup_superset
step "cargo build --workspace --bins" cargo build --workspace --bins
step "cargo test --workspace" cargo test --workspace
step "pytest tests/" run_pytest "$@"
summary
# End with pytest's own closing line ("N passed in …s") so that it is the last thing printed.
if [ -f "$PYTEST_LOG" ]; then
    grep -E '^=*\s*[0-9]+ (passed|failed|error)' "$PYTEST_LOG" | tail -n 1 || true
fi
