#!/usr/bin/env bash
# Rewrites requirements.lock from requirements.txt with pip-tools (in a throwaway venv).
#   bash scripts/lock.sh             keeps the locked versions, adds what requirements.txt gained
#   bash scripts/lock.sh --upgrade   takes the newest versions the ranges allow
# Extra arguments go to pip-compile. The lock is for the Python that runs this script.
# After a change of the lock, re-execute every chapter (scripts/execute_chapter.py): the
# stored outputs were made with the locked versions.
set -euo pipefail
cd "$(dirname "$0")/.."
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
python3 -m venv "$tmp/venv"
"$tmp/venv/bin/python" -m pip install -q pip-tools
[ ! -f requirements.lock ] || cp requirements.lock "$tmp/requirements.lock"  # pins to keep
cp requirements.txt "$tmp/"
# torch keeps its locked version (change it in the lock's torch line); it is "unsafe" here
# so that pip-compile writes it apart from the rest, see the note written below.
torch_pin=$(grep -o '^# torch==[^ ]*' requirements.lock 2>/dev/null | cut -c3- || true)
echo "${torch_pin:-torch}" > "$tmp/torch.txt"
(cd "$tmp" && venv/bin/pip-compile -q --generate-hashes --allow-unsafe --unsafe-package torch \
  --strip-extras --no-emit-index-url --no-emit-find-links --no-header \
  --constraint torch.txt --output-file requirements.lock "$@" requirements.txt)
python3 - "$tmp/requirements.lock" <<'EOF'
import re, sys

text = open(sys.argv[1]).read()
body, sep, unsafe = text.partition("# The following packages are considered to be unsafe")
torch = re.search(r"^torch==([^ \\+]+)", unsafe, re.M)
if torch is None:
    sys.exit("scripts/lock.sh: pip-compile pinned no torch; expected it among the unsafe packages")
other = unsafe.split("\n", 1)[1] if sep else ""
other = re.sub(r"^torch==.*?(?=^\S|\Z)", "", other, flags=re.M | re.S)
header = f"""\
# Exact versions of everything the book and the tests use: the stored chapter outputs were
# made with these, on Python {sys.version_info.major}.{sys.version_info.minor} (some pins need that Python or
# newer). scripts/setup.sh installs from here; refresh with scripts/lock.sh.
#
# torch=={torch.group(1)} is locked by version only and installed first, on its own, by
# scripts/setup.sh: its wheels differ by platform and accelerator (CPU, CUDA builds) and a
# hash would fix one file; `pip install torch=={torch.group(1)}` takes the CPU build where one
# lies on disk, as on this project's machines. Every other line is checked by hash
# (`pip install --require-hashes`).
#
"""
open("requirements.lock", "w").write(header + body.rstrip() + "\n" + other.rstrip() + "\n")
EOF
echo "requirements.lock: $(grep -c '^[A-Za-z]' requirements.lock) pinned with hashes, plus $(grep -o '^# torch==[^ ]*' requirements.lock | cut -c3-)"
