#!/usr/bin/env bash
# Sets up the project (scripts/setup.sh) and builds the book into _build/html.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/jupyter-book build . 
echo "Open _build/html/index.html"
