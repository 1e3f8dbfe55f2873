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

VENV="${STRATA_SUPERSET_VENV:-$REPO/.venv-superset}"
REQS="$REPO/scripts/superset-requirements.txt"
PYTHON="${PYTHON:-python3}"

install_requirements() { # VENV REQS: pip install REQS into VENV unless its stamp says it is done
    local venv="$1" reqs="$2" want stamp="$1/.requirements.sha256"
    want="$({ cat "$reqs"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "$(basename "$reqs") unchanged, skipping pip install"
        return 0
    fi
    rm -f "$stamp"
    local start=$SECONDS
    echo "installing $(basename "$reqs") into $venv (a minute or two)"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    echo "$want" > "$stamp"
    echo "pip install took $((SECONDS - start))s"
}

setup_venv() {
    if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c 'import sys' >/dev/null 2>&1; then
        rm -rf "$VENV"
        if ! "$PYTHON" -m venv "$VENV" 2>/dev/null; then
            rm -rf "$VENV"
            if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
                echo "python venv module missing: installing python3-venv"
                apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
            fi
            "$PYTHON" -m venv "$VENV"
        fi
    fi
    "$VENV/bin/python" - <<'EOF'
import sys
if not ((3, 10) <= sys.version_info[:2] <= (3, 12)):
    sys.exit(f"Superset 6.1 needs Python 3.10 to 3.12, found {sys.version.split()[0]} (set PYTHON)")
EOF
    install_requirements "$VENV" "$REQS"
}

setup_chromium() {
    case " $* " in *" --no-screenshot "*) return 0 ;; esac
    if command -v chromium >/dev/null 2>&1 && command -v chromedriver >/dev/null 2>&1; then
        return 0
    fi
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        echo "installing Debian's chromium and chromium-driver"
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium chromium-driver >/dev/null
    else
        echo "chromium and chromedriver are needed (apt-get install chromium chromium-driver)" >&2
        return 1
    fi
}

START=$SECONDS
setup_venv
setup_chromium "$@"
echo "setup: $((SECONDS - START))s"
exec "$VENV/bin/python" "$REPO/scripts/superset_check.py" "$@"
