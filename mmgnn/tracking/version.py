"""The code version: a short hash of the code that determines a run's numbers.

It covers every ``*.py`` file of the ``mmgnn`` package (its path and bytes, so an uncommitted
edit counts as much as a commit) and the installed versions of the libraries whose kernels
change the numbers (:data:`LIBRARIES`). The config hash includes it, so a sweep never reuses a
run that older code produced (:mod:`mmgnn.tracking.job_run`).
"""
from __future__ import annotations

import functools
import hashlib
from importlib import metadata
from pathlib import Path

PACKAGE_ROOT = Path(__file__).resolve().parents[1]  # the mmgnn package
LIBRARIES = ("torch", "dgl")


def source_files(root: Path) -> list[Path]:
    """Every ``*.py`` file under ``root`` (``__pycache__`` skipped), sorted by relative path."""
    files = (p for p in root.rglob("*.py") if "__pycache__" not in p.relative_to(root).parts)
    return sorted(files, key=lambda p: p.relative_to(root).as_posix())


def library_versions() -> dict[str, str]:
    """The installed version of each of :data:`LIBRARIES` (``none`` when not installed)."""
    versions = {}
    for name in LIBRARIES:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "none"
    return versions


@functools.cache
def code_version(root: Path = PACKAGE_ROOT) -> str:
    """A 12-character hash of the sources under ``root`` and :func:`library_versions`."""
    digest = hashlib.sha1()
    for path in source_files(root):
        data = path.read_bytes()
        digest.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode() + data)
    for name, version in library_versions().items():
        digest.update(f"{name}=={version}\n".encode())
    return digest.hexdigest()[:12]
