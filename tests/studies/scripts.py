"""Running a study script in a subprocess, as the smoke tests of `studies/` do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_script(script: Path, *args: str, timeout: float = 120, one_thread: bool = False) -> subprocess.CompletedProcess:
    """Run ``script`` with this interpreter from the repository root and assert it exits 0 (its stderr's
    tail is the failure message); ``one_thread`` sets OMP_NUM_THREADS=1. Returns the finished process."""
    env = {**os.environ, "OMP_NUM_THREADS": "1"} if one_thread else None
    proc = subprocess.run(
        [sys.executable, str(script), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    return proc
