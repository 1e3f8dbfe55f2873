#!/usr/bin/env bash
# Apache Superset 6.1 against Strata's PostgreSQL-wire door: database, dataset, bar chart of
# participants by age group, chart data checked against an expected answer, and a headless
# Chromium screenshot of the chart. Sets up what it needs first (idempotent):
#   - .venv-superset with scripts/superset-requirements.txt (its own venv: Superset pins
#     SQLAlchemy < 2 and pyarrow < 19), re-installed only when that file or Python changes;
#   - Debian's chromium and chromium-driver (apt-get, when missing and running as root).
#
#   ./scripts/superset.sh --pg-port 5433 --user dashboard --password-file token.jwt \
#       --expect-json expected.json [--dataset-kind virtual|physical] [--out-dir DIR]
#
# All arguments go to scripts/superset_check.py (see its --help). The server behind --pg-port
# must already be running. Outputs: OUT_DIR/chart-data.json, OUT_DIR/chart.png and the Superset
# logs (default OUT_DIR: .test-work/superset in the repo).
#
# Environment:
#   PYTHON                  interpreter for the venv (default: python3, 3.10 to 3.12)
#   STRATA_SUPERSET_VENV    venv folder (default: .venv-superset in the repo)
#   STRATA_PG_PASSWORD      the password (passport JWT), instead of --password/--password-file
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# No cd: relative paths in the arguments (--expect-json, --password-file, --out-dir) are the caller's.

PYTHON="${PYTHON:-python3}"
# shellcheck source=scripts/lib.sh
source "$REPO/scripts/lib.sh"

setup_chromium() {
    case " $* " in *" --no-screenshot "*) return 0 ;; esac
    ensure_debian_packages chromium chromium-driver
}

START=$SECONDS
setup_superset_venv
setup_chromium "$@"
echo "setup: $((SECONDS - START))s"
exec "$SUPERSET_VENV/bin/python" "$REPO/scripts/superset_check.py" "$@"
