#!/usr/bin/env bash
# The end-to-end demo: sets up .venv (scripts/setup_env.sh), then simulates realistic extractions of
# the shipped map (an apo training set, known junk, a ligand data set on another microscope with 30 %
# junk of five kinds) and runs cryopares_train -> cryopares_infer (pruning stage 1) ->
# cryopares_localrefine (pruning stage 2) -> RELION PostProcess as External jobs in a RELION project
# (./demo_project); prints the particles of each kind kept after each stage, angular errors and FSCs.
#
#   bash scripts/run_demo.sh                 # defaults (about 10-20 min on 2 CPU cores)
#   bash scripts/run_demo.sh --out /tmp/p    # extra arguments go to `python -m relion_cryopares.demo`
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=setup_env.sh
source scripts/setup_env.sh
if ! command -v relion_pipeliner >/dev/null 2>&1; then
    echo "run_demo: RELION not found; the jobs run directly (install it with: apt-get install -y relion)" >&2
fi
exec python -m relion_cryopares.demo "$@"
