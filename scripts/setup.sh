#!/usr/bin/env bash
# Creates .venv and installs skinseg with everything the book and the tests need.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
# torch first, pinned to a build that satisfies requirements.txt: otherwise pip may pick
# a different (much larger) build while resolving the other requirements.
.venv/bin/python -c "import torch" 2>/dev/null || .venv/bin/python -m pip install -q "torch==2.13.0"
.venv/bin/python -m pip install -q -r requirements.txt
.venv/bin/python -m pip install -q --no-deps -e .
.venv/bin/python -c "import skinseg, torch; print(f'skinseg {skinseg.__version__}, torch {torch.__version__}: ready in .venv')"
