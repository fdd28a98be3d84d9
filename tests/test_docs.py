"""The documentation: the README is a front door, the site builds strictly, runnable blocks run.

- The README has at most 250 lines and keeps the two set-up commands (`make run`, `make test`).
- `mkdocs build --strict` of ``mkdocs.yml`` succeeds: a broken link or anchor, a page of
  ``docs/`` missing from ``nav`` or a ``nav`` entry without a page fails it.
- Every code block marked runnable in ``README.md`` and ``docs/**/*.md`` runs and exits 0. A block
  is runnable when the line before its opening fence is ``<!-- runnable -->``. It runs with bash
  (``set -euo pipefail``) in the repository root, with this interpreter's folder first on
  ``PATH`` (so ``python`` is the project's), ``MMGNN_HOME`` (every output: run folders, the MLflow
  store) and ``TMPDIR`` in a temporary folder, one OpenMP thread (``OMP_NUM_THREADS=1``: the
  blocks' tiny models gain nothing from intra-op threads, which on a busy machine cost them
  several times their run time in synchronisation), and a time limit. Mark few blocks, with small
  sizes (``debug=fast``): together they should stay under two minutes on two cores.
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = ROOT / "docs"
MARKER = "<!-- runnable -->"
README_MAX_LINES = 250
BLOCK_TIMEOUT_S = 480  # generous: a shared, loaded machine can be 3-4x slower than an idle one
FENCE = re.compile(r"^(`{3,})\s*(\S*)")


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    code: str

    @property
    def name(self) -> str:
        return f"{self.path.relative_to(ROOT)}:{self.line}"


def runnable_blocks(path: Path) -> list[Block]:
    """The fenced code blocks of ``path`` preceded by :data:`MARKER` (blank lines between them
    are not allowed: the marker belongs to the next line)."""
    lines = path.read_text().splitlines()
    blocks, i = [], 0
    while i < len(lines):
        if lines[i].strip() == MARKER:
            opening = FENCE.match(lines[i + 1]) if i + 1 < len(lines) else None
            if not opening:
                raise AssertionError(f"{path.relative_to(ROOT)}:{i + 1}: {MARKER} must be followed "
                                     "directly by a fenced code block")
            fence, language = opening.group(1), opening.group(2) or "bash"
            end = next((j for j in range(i + 2, len(lines)) if lines[j].strip() == fence), None)
            if end is None:
                raise AssertionError(f"{path.relative_to(ROOT)}:{i + 2}: unclosed code block")
            blocks.append(Block(path, i + 2, language, "\n".join(lines[i + 2 : end]) + "\n"))
            i = end
        i += 1
    return blocks


def doc_files() -> list[Path]:
    return [README, *sorted(DOCS.rglob("*.md"))]


BLOCKS = [block for path in doc_files() for block in runnable_blocks(path)]


def test_readme_is_a_front_door():
    lines = README.read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines (at most {README_MAX_LINES})"
    text = "\n".join(lines)
    for command in ("make run", "make test"):
        assert command in text, f"README.md lost the set-up command `{command}`"


def test_every_workflow_has_a_runnable_block():
    assert len(BLOCKS) >= 4, [b.name for b in BLOCKS]
    assert any(b.path == README for b in BLOCKS), "the README's run command is no runnable block"


def test_the_site_builds_strictly(tmp_path):
    try:
        import mkdocs  # noqa: F401
    except ImportError:
        pytest.fail("mkdocs is not installed: it is a dev requirement (make docs)")
    proc = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(tmp_path / "site"),
         "--config-file", str(ROOT / "mkdocs.yml")],
        cwd=ROOT, capture_output=True, text=True, timeout=300,
    )
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, f"mkdocs build --strict failed:\n{output}"
    assert "WARNING" not in output, output
    assert (tmp_path / "site" / "index.html").exists()


@pytest.mark.parametrize("block", BLOCKS, ids=lambda b: b.name)
def test_runnable_block_runs(block: Block, tmp_path):
    assert block.language in ("bash", "sh", "shell", "console"), (
        f"{block.name}: runnable blocks are bash, not {block.language!r}")
    home, tmp = tmp_path / "home", tmp_path / "tmp"
    home.mkdir()
    tmp.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("MMGNN_CONFIG_PATH", "MMGNN_HOME")}
    env.update(
        PATH=os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
        MMGNN_HOME=str(home), TMPDIR=str(tmp), DGLBACKEND="pytorch", PYTHONUNBUFFERED="1",
        OMP_NUM_THREADS="1",
    )
    try:
        proc = subprocess.run(["bash", "-c", "set -euo pipefail\n" + block.code], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=BLOCK_TIMEOUT_S)
    except subprocess.TimeoutExpired as error:
        pytest.fail(f"{block.name}: still running after {BLOCK_TIMEOUT_S} s:\n{block.code}\n"
                    f"{(error.stdout or b'')[-3000:]!r}")
    assert proc.returncode == 0, (
        f"{block.name} exited {proc.returncode}:\n{block.code}\n--- stdout (end)\n"
        f"{proc.stdout[-3000:]}\n--- stderr (end)\n{proc.stderr[-3000:]}")
