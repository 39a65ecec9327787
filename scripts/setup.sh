#!/usr/bin/env bash
# Creates .venv and installs skinseg with the exact versions of requirements.lock (the ones
# the stored chapter outputs were made with; requirements.txt holds the ranges).
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first and alone, by version (the lock says why); its dependencies come from the lock.
torch_pin=$(grep -o '^# torch==[^ ]*' requirements.lock | cut -c3-)
.venv/bin/python -m pip install -q --no-deps "$torch_pin"
.venv/bin/python -m pip install -q --require-hashes -r requirements.lock
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -m pip check
.venv/bin/python -c "import skinseg, torch; print(f'skinseg {skinseg.__version__}, torch {torch.__version__}: ready in .venv')"
