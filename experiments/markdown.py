"""Results pages that say where they come from: the ``--markdown PATH`` option of the commands.

Every results table in ``docs/`` is a page written by the command that measured or computed it.
:func:`write_page` writes one: a title, then the provenance (the command line that wrote it,
the date, the code version, the git commit and the machine), then the body. Re-running the
printed command rewrites the page.

>>> "python -m experiments.x --a 1" in provenance("python -m experiments.x --a 1")
True
"""
from __future__ import annotations

import datetime as _dt
import os
import platform
import shlex
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def command_line(module: str, argv: Sequence[str] | None = None) -> str:
    """``python -m <module> <args>``: the command as a user types it (``argv``: the arguments,
    default ``sys.argv[1:]``)."""
    args = list(sys.argv[1:] if argv is None else argv)
    return shlex.join(["python", "-m", module, *args])


def git_state() -> str:
    """The short git commit, with ``+ uncommitted changes`` when the tree differs from it."""
    try:
        commit = subprocess.run(["git", "rev-parse", "--short=12", "HEAD"], cwd=ROOT,
                                capture_output=True, text=True, timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", "mmgnn"],
                               cwd=ROOT, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    if not commit:
        return "unknown"
    return f"{commit} + uncommitted changes in mmgnn/" if dirty else commit


def current_code_version() -> str:
    """:func:`mmgnn.tracking.version.code_version` of this process's ``mmgnn`` package."""
    try:
        from mmgnn.tracking.version import code_version
    except ImportError:  # pragma: no cover - an mmgnn without code versions
        return "unknown"
    return code_version()


def machine() -> str:
    """The machine in one line: platform, processor, cores, Python and torch."""
    try:
        import torch

        torch_version = f", torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:  # pragma: no cover
        torch_version = ""
    try:
        load = ", load average %.1f / %.1f / %.1f" % os.getloadavg()
    except OSError:  # pragma: no cover - no load average on this platform
        load = ""
    return (f"{platform.platform()}, {platform.machine()} {platform.processor() or ''}".rstrip()
            + f", {os.cpu_count()} cores{load}, Python {platform.python_version()}{torch_version}")


def provenance(command: str, code_version: str | None = None, notes: Sequence[str] = ()) -> str:
    """The lines above a table: command, date, code version, commit, machine, then ``notes``."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    lines = [
        f"- Written by: `{command}` (run it again from the repository root to rewrite this page)",
        f"- Date: {now}",
        f"- Code version: `{code_version or current_code_version()}` "
        "(`mmgnn.tracking.version.code_version()`), git " + f"`{git_state()}`",
        f"- Machine: {machine()}",
        *[f"- {note}" for note in notes],
    ]
    return "\n".join(lines)


def write_page(path: str | Path, title: str, body: str, command: str,
               code_version: str | None = None, notes: Sequence[str] = ()) -> Path:
    """Write ``# title``, the provenance and ``body`` to ``path`` (folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    text = (f"# {title}\n\n<!-- Written by a command (see below): edit the command, not this "
            f"file. -->\n\n{provenance(command, code_version, notes)}\n\n{body.strip()}\n")
    path.write_text(text)
    return path


def add_markdown_option(parser) -> None:
    """``--markdown PATH`` on a command's argument parser."""
    parser.add_argument("--markdown", metavar="PATH",
                        help="also write the table as a markdown page, with the command, date, "
                        "code version and machine above it (e.g. docs/results/NAME.md)")


def write_if_asked(args, argv: Sequence[str] | None, module: str, title: str, body: str) -> None:
    """Write the page when ``args.markdown`` is set (``argv``: the command's arguments, default
    ``sys.argv[1:]``), and print its path."""
    if getattr(args, "markdown", None):
        print(write_page(args.markdown, title, body, command_line(module, argv)))


def frame_table(frame, float_format=lambda v: f"{v:.3f}") -> str:
    """A pandas frame as a markdown table, its index as the first columns."""
    import pandas as pd

    frame = frame.reset_index()
    def cell(value) -> str:
        if isinstance(value, float):
            return "" if pd.isna(value) else float_format(value)
        return str(value).replace("|", "\\|")

    numeric = [pd.api.types.is_numeric_dtype(frame[c]) and not pd.api.types.is_bool_dtype(frame[c])
               for c in frame.columns]
    lines = ["| " + " | ".join(str(c) for c in frame.columns) + " |",
             "|" + "|".join("---:" if n else "---" for n in numeric) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join(lines)
