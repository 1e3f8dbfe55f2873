#!/usr/bin/env bash
# Coverage-guided fuzzing of Strata's parsers and doors with cargo-fuzz (libFuzzer, nightly Rust),
# on the targets in fuzz/fuzz_targets; each calls the same harness (crate fuzzing/) as the stable
# property tests that the test command runs.
#
#   ./scripts/fuzz.sh                      every target for 3600 s each, one after another
#   ./scripts/fuzz.sh 600 sql flight_sql   those targets, 600 s each
#
# Corpora live in .fuzz-work/corpus/<target>, seeded from the repository's own queries and
# cohort definitions; crashes are written to .fuzz-work/artifacts/<target>, and a summary line
# per target (runs, execs/s, coverage, crashes) to .fuzz-work/summary.txt. A crash becomes a
# regression case in the test suite (fuzzing/tests/properties.rs or the module it was in).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO"
SECONDS_PER_TARGET="${1:-3600}"
shift || true
ALL=(sql circe_json cohort_builder_json passport_token passport_claims flight_sql pg_startup pg_messages)
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL[@]}")
WORK="$REPO/.fuzz-work"
mkdir -p "$WORK"

if ! rustup toolchain list | grep -q '^nightly'; then
    echo "cargo fuzz needs a nightly toolchain (rustup toolchain install nightly); the stable" >&2
    echo "property tests (cargo test -p strata-fuzzing) cover the same targets" >&2
    exit 1
fi
command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

seed() { # TARGET: a corpus directory with the repository's own inputs for it
    local dir="$WORK/corpus/$1"
    mkdir -p "$dir"
    case "$1" in
        sql)
            python3 - "$dir" <<'PY'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
for i, q in enumerate(json.load(open("bench/queries.json"))):
    (out / f"bench-{i}.sql").write_text(q["sql"])
PY
            ;;
        circe_json) cp tests/cohorts/circe/*.json "$dir/" ;;
        cohort_builder_json | passport_token | passport_claims | pg_messages | pg_startup | flight_sql)
            [ -d "fuzz/seeds/$1" ] && cp fuzz/seeds/"$1"/* "$dir/" ;;
    esac
}

# One line per run, appended: several runs may share the folder.
for target in "${TARGETS[@]}"; do
    seed "$target"
    mkdir -p "$WORK/artifacts/$target"
    log="$WORK/$target.log"
    echo "==> $target: ${SECONDS_PER_TARGET}s (log: $log)"
    set +e
    # No sanitizer: safe Rust needs none, and the speed goes to coverage; overflow checks and
    # debug assertions stay on. TMPDIR holds the harness's generated dataset.
    TMPDIR="$WORK" CARGO_TARGET_DIR="$REPO/fuzz/target" cargo +nightly fuzz run \
        --fuzz-dir fuzz --sanitizer none --debug-assertions "$target" \
        "$WORK/corpus/$target" -- \
        -max_total_time="$SECONDS_PER_TARGET" -timeout=120 -rss_limit_mb=4096 \
        -artifact_prefix="$WORK/artifacts/$target/" -print_final_stats=1 >"$log" 2>&1
    rc=$?
    set -e
    runs="$(grep -Eo 'stat::number_of_executed_units: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')"
    speed="$(grep -Eo 'stat::average_exec_per_sec: *[0-9]+' "$log" | grep -Eo '[0-9]+$' || echo '?')"
    cov="$(grep -Eo 'cov: [0-9]+' "$log" | tail -1 | grep -Eo '[0-9]+' || echo '?')"
    crashes="$(find "$WORK/artifacts/$target" -type f | wc -l)"
    line="$(date -u +%FT%TZ) $(printf '%-22s %5ss exit %-3s runs %-9s exec/s %-6s cov %-7s crashes %s' "$target" "$SECONDS_PER_TARGET" "$rc" "$runs" "$speed" "$cov" "$crashes")"
    echo "$line" | tee -a "$WORK/summary.txt"
done
