#!/usr/bin/env bash
# Create (or reuse) the virtual environment and install relion-cryopares with its test extras.
#
#   bash scripts/setup_env.sh        # set up only
#   source scripts/setup_env.sh      # set up, then use the venv in this shell (PATH, VIRTUAL_ENV)
#
# Environment:
#   PYTHON      interpreter that creates the venv (default: python3)
#   VENV        venv directory (default: <repo>/.venv)
#   TORCH_SPEC  what to install when the venv has no torch yet (default: torch==2.13.0). A torch
#               already in the venv (e.g. your own CUDA build) is always kept.
#
# Idempotent: the editable install is redone only when pyproject.toml changed since the last one
# (a stamp file in the venv records its checksum).

_cryopares_setup() {
    local root venv py stamp want
    root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)" || return 1
    venv="${VENV:-$root/.venv}"
    py="$venv/bin/python"
    if [ ! -x "$py" ]; then
        echo "setup_env: creating $venv" >&2
        "${PYTHON:-python3}" -m venv "$venv" || { echo "setup_env: could not create $venv" >&2; return 1; }
        "$py" -m pip install --quiet --quiet --upgrade pip || echo "setup_env: pip upgrade failed (continuing)" >&2
    fi
    if ! "$py" -c "import torch" >/dev/null 2>&1; then
        echo "setup_env: installing ${TORCH_SPEC:-torch==2.13.0}" >&2
        "$py" -m pip install --quiet --quiet "${TORCH_SPEC:-torch==2.13.0}" || { echo "setup_env: torch install failed" >&2; return 1; }
    fi
    stamp="$venv/.relion_cryopares_installed"
    want="$(cd "$root" && sha256sum pyproject.toml | cut -d' ' -f1)@$root"
    if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! "$py" -c "import relion_cryopares, pytest" >/dev/null 2>&1; then
        echo "setup_env: installing relion-cryopares (editable, with test extras)" >&2
        "$py" -m pip install --quiet --quiet --upgrade pip >/dev/null 2>&1 || true
        "$py" -m pip install --quiet --quiet -e "$root[test]" || { echo "setup_env: package install failed" >&2; return 1; }
        echo "$want" > "$stamp"
    fi
    "$py" -c "import torch; import relion_cryopares" || return 1
    export VIRTUAL_ENV="$venv"
    case ":$PATH:" in *":$venv/bin:"*) ;; *) export PATH="$venv/bin:$PATH" ;; esac
    return 0
}

if [ "${BASH_SOURCE[0]}" != "$0" ]; then
    _cryopares_setup || return 1
else
    _cryopares_setup || exit 1
fi
