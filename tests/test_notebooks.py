"""Execute every notebook in notebooks/ top to bottom in its small configuration.

Each notebook reads ``GPVI_NOTEBOOK_SMALL=1`` and then runs on a small data set with few steps; it
must finish within ``TIME_LIMIT_S`` seconds. Notebooks that need the UCI data are skipped when the
shared data folder is absent.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat")
nbclient = pytest.importorskip("nbclient")

NOTEBOOK_DIR = Path(__file__).resolve().parents[1] / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
KERNEL_NAME = "python3"
TIME_LIMIT_S = 120.0


def _ensure_kernel() -> None:
    """Register an ipykernel named ``python3`` for this interpreter (in sys.prefix) if missing."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        KernelSpecManager().get_kernel_spec(KERNEL_NAME)
        return
    except NoSuchKernel:
        pass
    from ipykernel.kernelspec import install

    install(kernel_name=KERNEL_NAME, prefix=sys.prefix)


def _needs_uci(path: Path) -> bool:
    return "uci.load(" in path.read_text(encoding="utf-8")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    if _needs_uci(path):
        from gpvi.data import uci

        if "yacht" not in uci.available():
            pytest.skip(f"UCI data not found (looked in $GPVI_DATA_DIR or {uci.default_root()}).")
    _ensure_kernel()
    monkeypatch.setenv("GPVI_NOTEBOOK_SMALL", "1")

    nb = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(
        nb, kernel_name=KERNEL_NAME, timeout=600, resources={"metadata": {"path": str(path.parent)}}
    )
    start = time.perf_counter()
    client.execute()
    elapsed = time.perf_counter() - start
    assert elapsed < TIME_LIMIT_S, f"{path.name} took {elapsed:.0f} s (limit {TIME_LIMIT_S:.0f} s)"

    errors = [
        out
        for cell in nb.cells
        if cell.cell_type == "code"
        for out in cell.get("outputs", [])
        if out.get("output_type") == "error"
    ]
    assert not errors


def test_notebooks_are_stored_executed_without_errors() -> None:
    """The docs site renders the stored outputs (`make notebooks` refreshes them at the small size)."""
    assert NOTEBOOKS, f"no notebooks in {NOTEBOOK_DIR}"
    for path in NOTEBOOKS:
        nb = nbformat.read(path, as_version=4)
        nbformat.validate(nb)
        code = [cell for cell in nb.cells if cell.cell_type == "code" and cell.source.strip()]
        counts = [cell.get("execution_count") for cell in code]
        assert all(counts) and counts == sorted(counts), f"{path.name} is not stored executed: run `make notebooks`"
        errors = [out for cell in code for out in cell.get("outputs", []) if out.get("output_type") == "error"]
        assert not errors, f"{path.name} is stored with an error output: run `make notebooks`"
