#!/usr/bin/env bash
# Run every benchmark (benchmarks/bench_*.py) in turn: sets up .venv (scripts/setup_env.sh), then
# `python -m benchmarks.bench_<name>` for each, and lists the results files each one wrote
# (benchmarks/results/*.md and .json).
#
#   bash scripts/run_benchmarks.sh                    # all benchmarks, full size (can take hours on a CPU)
#   bash scripts/run_benchmarks.sh --quick            # --quick goes to the benchmarks that take it
#   bash scripts/run_benchmarks.sh --quick scaling infer   # only bench_scaling.py and bench_infer.py
#   nice -n 10 bash scripts/run_benchmarks.sh         # on a shared machine
#
# A benchmark without a --quick option runs at its defaults (a note says so). A failing benchmark
# does not stop the others; the exit status is non-zero when any failed. Each benchmark's output is
# also saved to benchmarks/work/logs/<name>.log (gitignored).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=setup_env.sh
source scripts/setup_env.sh

quick=0
only=()
for arg in "$@"; do
    case "$arg" in
        --quick) quick=1 ;;
        -h|--help) sed -n '2,13p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//'; exit 0 ;;
        -*) echo "run_benchmarks: unknown option $arg (only --quick)" >&2; exit 2 ;;
        *) only+=("${arg#bench_}") ;;
    esac
done

for want in "${only[@]}"; do
    [ -f "benchmarks/bench_${want%.py}.py" ] || echo "run_benchmarks: no benchmarks/bench_${want%.py}.py" >&2
done
benches=()
for file in benchmarks/bench_*.py; do
    name="$(basename "$file" .py)"
    name="${name#bench_}"
    if [ ${#only[@]} -gt 0 ]; then
        keep=0
        for want in "${only[@]}"; do [ "${want%.py}" = "$name" ] && keep=1; done
        [ "$keep" = 1 ] || continue
    fi
    benches+=("$name")
done
if [ ${#benches[@]} -eq 0 ]; then
    echo "run_benchmarks: no benchmark matches ${only[*]:-benchmarks/bench_*.py}" >&2
    exit 2
fi

logs=benchmarks/work/logs
mkdir -p "$logs" benchmarks/results
marker="$(mktemp)"
trap 'rm -f "$marker"' EXIT
failed=()
summary=()
for name in "${benches[@]}"; do
    args=()
    if [ "$quick" = 1 ]; then
        if grep -qE -- "[\"']--quick[\"']" "benchmarks/bench_$name.py"; then
            args=(--quick)
        else
            echo "run_benchmarks: bench_$name has no --quick option: running it at its defaults" >&2
        fi
    fi
    echo "=== bench_$name${args[*]:+ ${args[*]}} ($(date '+%F %T'))"
    touch "$marker"
    sleep 1  # results written from now on are strictly newer than the marker
    start=$SECONDS
    if python -m "benchmarks.bench_$name" "${args[@]}" 2>&1 | tee "$logs/$name.log"; then
        status=ok
    else
        status=FAILED
        failed+=("$name")
    fi
    written="$(find benchmarks/results -maxdepth 1 -type f -newer "$marker" | sort | tr '\n' ' ' | sed 's/ $//')"
    summary+=("$(printf '%-14s %-6s %6ss  %s' "$name" "$status" "$((SECONDS - start))" "${written:-(no results file)}")")
    echo "=== bench_$name: $status after $((SECONDS - start)) s (log: $logs/$name.log)"
done

echo
echo "benchmark      status  time   results written"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
    echo "run_benchmarks: failed: ${failed[*]} (logs in $logs/)" >&2
    exit 1
fi
