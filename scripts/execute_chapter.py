"""Execute chapters and store their outputs in the paired .ipynb files.

    .venv/bin/python scripts/execute_chapter.py book/06_test_comparison.md [more chapters]

Each chapter runs in a fresh kernel with ``book/`` as working directory, exactly as nbval
and the reader's Jupyter do; on a machine without CUDA that is the smoke profile.
"""
import sys
import time
from pathlib import Path

import jupytext
import nbclient

for arg in sys.argv[1:]:
    md = Path(arg).resolve().with_suffix(".md")
    notebook = jupytext.read(md)
    t0 = time.time()
    nbclient.NotebookClient(notebook, timeout=1200, kernel_name="python3", store_widget_state=False,
                            resources={"metadata": {"path": str(md.parent)}}).execute()
    jupytext.write(notebook, md.with_suffix(".ipynb"), fmt="ipynb")
    print(f"{md.name}: executed in {time.time() - t0:.0f} s, outputs written to {md.with_suffix('.ipynb').name}")
