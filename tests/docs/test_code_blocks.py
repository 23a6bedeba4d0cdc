"""Every ```python block of the documentation site (`docs/**/*.md`) and of README.md runs as written.

The blocks of one page run top to bottom in one namespace (a later block may use an earlier one's
names), in a fresh temporary working directory, with torch's default dtype float32 (what a user
gets) and the seed 0. A block is left out only when an explicit marker precedes it::

    <!-- skip-test: why (e.g. a 10-minute study) -->

Other fenced blocks (bash, toml, text) are not executed. The sizes in the pages are small, so the
whole file runs in seconds; a block that is too slow is made smaller, not skipped.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[2]
#: Pages whose python blocks are executed: the site's Markdown (not its build) and the README.
PAGES = [ROOT / "README.md"] + sorted(p for p in (ROOT / "docs").rglob("*.md") if "_build" not in p.parts)

FENCE = re.compile(r"^(?P<indent> {0,3})(?P<fence>`{3,}|~{3,})\s*(?P<info>[^`\s]*)[^`]*$")
SKIP = re.compile(r"<!--\s*skip-test:\s*(?P<reason>.*?)\s*-->")
#: A page's blocks together must run within this many seconds: a guard against a block that runs for minutes
#: (each page takes 1-10 s on 2 cores; the limit is loose because shared cores make the times noisy).
PAGE_TIME_LIMIT_S = 60.0


@dataclass
class Block:
    """One fenced code block: its language, first line number (1-based), source and skip reason."""

    language: str
    line: int
    source: str
    skip: str | None


def code_blocks(text: str) -> list[Block]:
    """The fenced code blocks of a Markdown text, with the skip marker of each (the last non-blank line
    before its fence, when it is a ``<!-- skip-test: reason -->`` comment)."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        match = FENCE.match(lines[i])
        if match is None:
            i += 1
            continue
        fence, language, start = match["fence"], match["info"].strip("{}").lower(), i
        body, i = [], i + 1
        while i < len(lines) and not lines[i].strip().startswith(fence):
            body.append(lines[i])
            i += 1
        previous = next((line for line in reversed(lines[:start]) if line.strip()), "")
        marker = SKIP.search(previous)
        blocks.append(Block(language, start + 2, "\n".join(body) + "\n", marker["reason"] if marker else None))
        i += 1
    return blocks


def python_blocks(path: Path) -> list[Block]:
    """The ```python blocks of a page (```{code-block} python too)."""
    blocks = code_blocks(path.read_text(encoding="utf-8"))
    return [b for b in blocks if b.language in ("python", "py", "python3", "code-block")]


def _page_id(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", PAGES, ids=[_page_id(p) for p in PAGES])
def test_page_code_blocks_run(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    blocks = [b for b in python_blocks(path) if b.skip is None]
    if not blocks:
        pytest.skip(f"{_page_id(path)} has no python blocks to run.")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float32)
    torch.manual_seed(0)
    namespace: dict[str, object] = {"__name__": f"docs_page_{path.stem}"}
    start = time.perf_counter()
    try:
        for block in blocks:
            # padded so that tracebacks and warnings give the block's own line numbers in the page
            code = compile("\n" * (block.line - 1) + block.source, _page_id(path), "exec")
            try:
                exec(code, namespace)
            except Exception as err:
                raise AssertionError(
                    f"The python block at {_page_id(path)}:{block.line} failed: {type(err).__name__}: {err}"
                ) from err
    finally:
        torch.set_default_dtype(previous)
        import matplotlib.pyplot as plt

        plt.close("all")
    elapsed = time.perf_counter() - start
    assert elapsed < PAGE_TIME_LIMIT_S, f"{_page_id(path)}: its blocks took {elapsed:.0f} s; make them smaller."


def test_skip_markers_give_a_reason_and_precede_a_python_block() -> None:
    for path in PAGES:
        text = path.read_text(encoding="utf-8")
        marked = [b for b in code_blocks(text) if b.skip is not None]
        for block in marked:
            assert block.skip, f"{_page_id(path)}:{block.line}: a skip-test marker needs a reason."
            assert block.language == "python", f"{_page_id(path)}:{block.line}: skip-test marks python blocks only."
        assert len(marked) == len(SKIP.findall(text)), f"{_page_id(path)}: a skip-test marker is not before a block."


def test_the_extractor_reads_blocks_and_markers() -> None:
    text = (
        "# Page\n\n```python\nx = 1\n```\n\ntext\n\n<!-- skip-test: slow -->\n```python\ny = x\n```\n\n"
        "```bash\nmake docs\n```\n````python\nz = '```'\n````\n"
    )
    blocks = code_blocks(text)
    assert [(b.language, b.line, b.skip) for b in blocks] == [
        ("python", 4, None),
        ("python", 11, "slow"),
        ("bash", 15, None),
        ("python", 18, None),
    ]
    assert blocks[0].source == "x = 1\n" and blocks[3].source == "z = '```'\n"
