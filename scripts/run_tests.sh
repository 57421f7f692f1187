#!/usr/bin/env bash
# Run the test suite: sets up .venv (scripts/setup_env.sh), then pytest.
#
#   bash scripts/run_tests.sh                      # everything under tests/
#   bash scripts/run_tests.sh -m "not relion"      # extra arguments go to pytest
#   bash scripts/run_tests.sh tests/relion -x      # given paths replace tests/
#
# Tests marked `relion` need RELION 3.1 on PATH (relion_pipeliner ...) and are skipped without it;
# .ci/run installs it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=setup_env.sh
source scripts/setup_env.sh

targets=(tests)
for arg in "$@"; do
    if [[ "$arg" != -* && -e "${arg%%::*}" ]]; then
        targets=()
        break
    fi
done
exec python -m pytest -q "${targets[@]}" "$@"
