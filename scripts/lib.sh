# Shell functions the test command (scripts/test.sh) and scripts/superset.sh share: venvs kept in
# step with their requirements files, Debian packages installed when missing, and Superset's venv.
# Sourced; expects REPO and PYTHON to be set.

make_venv() { # VENV: a working venv at VENV (re-made when broken)
    local venv="$1"
    if [ -x "$venv/bin/python" ] && "$venv/bin/python" -c 'import sys' >/dev/null 2>&1; then
        return 0
    fi
    rm -rf "$venv"
    if ! "$PYTHON" -m venv "$venv" 2>/dev/null; then
        # Debian's python3 ships venv/ensurepip separately.
        rm -rf "$venv"
        if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
            echo "python venv module missing: installing python3-venv"
            apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv python3-pip >/dev/null
        fi
        "$PYTHON" -m venv "$venv"
    fi
}

require_python() { # VENV LOWEST HIGHEST WHAT: the venv's Python is 3.LOWEST to 3.HIGHEST, else fail
    "$1/bin/python" -c '
import sys
low, high, what = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
if not (3, low) <= sys.version_info[:2] <= (3, high):
    sys.exit(f"{what} needs Python 3.{low} to 3.{high}, found {sys.version.split()[0]} (set PYTHON)")
' "$2" "$3" "$4"
}

install_requirements() { # VENV REQS: pip install REQS into VENV unless its stamp says it is done
    local venv="$1" reqs="$2" want stamp="$1/.requirements.sha256"
    # The interpreter's version is part of the stamp: a new Python needs a new install.
    want="$({ cat "$reqs"; "$venv/bin/python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"
    if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ]; then
        echo "$(basename "$reqs") unchanged, skipping pip install"
        return 0
    fi
    rm -f "$stamp"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$reqs"
    echo "$want" > "$stamp"
}

ensure_debian_packages() { # PACKAGES...: apt-get install those that are missing (as root), else fail
    local missing=() p
    if ! command -v dpkg >/dev/null 2>&1; then
        echo "dpkg not found: the tests need Debian packages: $*" >&2
        return 1
    fi
    for p in "$@"; do
        # The Status field of `dpkg -s` (which also succeeds for a removed package whose config files
        # remain), read without a pipe that pipefail could fail.
        [ "$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null)" = "install ok installed" ] || missing+=("$p")
    done
    if [ ${#missing[@]} -eq 0 ]; then
        echo "Debian packages present: $*"
        return 0
    fi
    if [ "$(id -u)" != 0 ]; then
        echo "missing Debian packages: ${missing[*]}; run as root, or install them first:" >&2
        echo "  sudo apt-get install --no-install-recommends ${missing[*]}" >&2
        return 1
    fi
    echo "installing Debian packages: ${missing[*]}"
    # Lock::Timeout: wait for another apt/dpkg run (e.g. unattended or a parallel session) to finish.
    apt-get update -qq -o DPkg::Lock::Timeout=600
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends -o DPkg::Lock::Timeout=600 "${missing[@]}" >/dev/null
}

# Apache Superset 6.1 (tests/test_superset.py and scripts/superset.sh, through
# scripts/superset_check.py) pins SQLAlchemy < 2 and pyarrow < 19: its own venv. Superset 6.1 runs
# on Python 3.10 to 3.12.
SUPERSET_VENV="${STRATA_SUPERSET_VENV:-$REPO/.venv-superset}"
SUPERSET_REQS="$REPO/scripts/superset-requirements.txt"
setup_superset_venv() {
    make_venv "$SUPERSET_VENV"
    require_python "$SUPERSET_VENV" 10 12 "Superset 6.1"
    install_requirements "$SUPERSET_VENV" "$SUPERSET_REQS"
}
