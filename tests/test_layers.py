"""The layers of ``mmgnn/`` (docs: DESIGN "Layers, bottom to top"): no module imports a layer
above its own, and the packages the design calls siblings do not import each other.

Bottom to top: ``config`` and ``paths``; ``data``; ``models``, ``losses``, ``metrics``,
``featurize``; ``train``, ``tracking`` (siblings: tracking records what it is given);
``analysis`` (reads what tracking recorded), ``inference``; ``launch`` (the job entry
``run.py`` calls, the sweep callback and planner, per-run plots). Every import statement of
every module is read with :mod:`ast`, those inside functions included: an import deferred to
call time is still a dependency.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "mmgnn"

#: Each layer's packages (or top-level modules), bottom first. A package may import its own
#: layer's other packages (``featurize`` runs the ``models``' text encoder) except the siblings.
LAYERS: list[tuple[str, ...]] = [
    ("config", "paths"),
    ("data",),
    ("models", "losses", "metrics", "featurize"),
    ("train", "tracking"),
    ("analysis", "inference"),
    ("launch",),
]
#: Packages of one layer that may not import each other: ``tracking`` records what it is
#: given (by ``launch``), it neither drives nor is driven by ``train``.
SIBLINGS: set[frozenset[str]] = {frozenset({"train", "tracking"})}
LEVEL = {unit: level for level, units in enumerate(LAYERS) for unit in units}


def unit_of(module: str) -> str | None:
    """``mmgnn.tracking.job_run`` -> ``tracking``; ``mmgnn`` itself -> ``None``."""
    parts = module.split(".")
    if parts[0] != "mmgnn" or len(parts) < 2:
        return None
    return parts[1]


def module_name(path: Path, root: Path = PACKAGE) -> str:
    """``<root>/tracking/job_run.py`` -> ``mmgnn.tracking.job_run``."""
    relative = path.relative_to(root.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement of ``path``, relative ones resolved."""
    tree = ast.parse(path.read_text(), filename=str(path))
    package = module_name(path, root).split(".")
    if path.name != "__init__.py":
        package = package[:-1]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                module = ".".join(base + ([node.module] if node.module else []))
            else:
                module = node.module or ""
            found.append((node.lineno, module))
            # ``from mmgnn import tracking``: the names may be the packages themselves
            if module == "mmgnn":
                found += [(node.lineno, f"mmgnn.{alias.name}") for alias in node.names]
    return found


def violations(root: Path = PACKAGE) -> list[str]:
    """One line per import of a layer above the importer's own, or of a sibling (:data:`SIBLINGS`)."""
    out = []
    for path in sorted(root.rglob("*.py")):
        if "__pycache__" in path.parts:
            continue
        importer = unit_of(module_name(path, root))
        if importer is None:
            continue
        assert importer in LEVEL, f"{path}: package {importer!r} is in no layer of LAYERS"
        for line, module in imports_of(path, root):
            imported = unit_of(module)
            if imported is None or imported == importer:
                continue
            assert imported in LEVEL, f"{path}:{line}: imports {module}, in no layer of LAYERS"
            if LEVEL[imported] > LEVEL[importer]:
                out.append(f"{path.relative_to(root.parent)}:{line}: {importer} imports {module} "
                           "(a layer above)")
            elif frozenset({importer, imported}) in SIBLINGS:
                out.append(f"{path.relative_to(root.parent)}:{line}: {importer} imports {module} "
                           "(a sibling of its layer)")
    return out


def test_no_module_imports_a_layer_above_its_own_or_its_sibling():
    assert violations() == []


def test_every_package_of_mmgnn_is_in_a_layer():
    units = {p.stem if p.is_file() else p.name for p in PACKAGE.iterdir()
             if (p.is_dir() and (p / "__init__.py").exists()) or (p.suffix == ".py" and p.stem != "__init__")}
    assert units - set(LEVEL) == set()


@pytest.mark.parametrize("source, message", [
    ("from mmgnn.analysis import plots\n", "tracking imports mmgnn.analysis (a layer above)"),
    ("def f():\n    from mmgnn.train.job import run_job\n", "tracking imports mmgnn.train.job (a sibling"),
    ("from ..launch import job\n", "tracking imports mmgnn.launch (a layer above)"),
])
def test_the_check_finds_an_upward_or_sibling_import(tmp_path, source, message):
    fake = tmp_path / "mmgnn" / "tracking"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("")
    (fake / "bad.py").write_text(source)
    found = violations(tmp_path / "mmgnn")
    assert len(found) == 1 and message in found[0], found
