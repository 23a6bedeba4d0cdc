"""Execute the notebooks at their small size and store them with their outputs (the docs site shows them).

    make notebooks        # or: GPVI_NOTEBOOK_SMALL=1 python notebooks/execute.py [notebook ...]

Outputs are stored without timing metadata; progress bars are off (``GPVI_PROGRESS=0``), so the
stored cells hold the results only. `tests/test_notebooks.py` executes them again in the suite.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

import nbclient
import nbformat

HERE = Path(__file__).resolve().parent


def execute(path: Path) -> None:
    nb = nbformat.read(path, as_version=4)
    nbclient.NotebookClient(nb, kernel_name="python3", timeout=900, resources={"metadata": {"path": str(HERE)}}).execute()
    for cell in nb.cells:
        cell.get("metadata", {}).pop("execution", None)
    nbformat.write(nb, path)
    print(f"executed {path.name}", flush=True)


if __name__ == "__main__":
    os.environ.setdefault("GPVI_NOTEBOOK_SMALL", "1")
    os.environ.setdefault("GPVI_PROGRESS", "0")
    for name in sys.argv[1:] or sorted(p.name for p in HERE.glob("*.ipynb")):
        execute(HERE / name)
