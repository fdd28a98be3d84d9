"""Every tag and run-folder file name has one home: :mod:`mmgnn.tracking.names` (MLflow tags and
what tracking records) and :mod:`mmgnn.paths` (the output root and what training writes).

A grep over the string literals of ``mmgnn/`` (docstrings aside: they may name a tag for the
reader) finds none of those names outside their home: code spells them by their constant.
A name with a dot, a slash or brackets (``mmgnn.role``, ``metrics.csv``, ``(defaults)``) is
found inside any literal (``f"tags.`mmgnn.role` = ..."`` counts); a plain word (``jobs``,
``plots``) where it names a path or an artifact folder: as an operand of ``/`` or an argument
of a call whose name has ``artifact`` (a word in a message is no name).
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

from mmgnn import paths
from mmgnn.tracking import names

PACKAGE = Path(__file__).resolve().parents[1] / "mmgnn"
HOMES = {PACKAGE / "tracking" / "names.py", PACKAGE / "paths.py"}


def home_names() -> dict[str, str]:
    """literal -> the constant that names it."""
    found = {}
    for module in (names, paths):
        for key, value in vars(module).items():
            if key.isupper() and isinstance(value, (str, Path)):
                found[str(value)] = f"{module.__name__}.{key}"
    return found


def is_distinctive(name: str) -> bool:
    return any(c in name for c in "./()")


def literals(path: Path) -> list[tuple[int, str, bool]]:
    """(line, text, names a path) of every string literal of ``path`` but its docstrings (an
    f-string gives its constant parts); "names a path": an operand of ``/`` or an argument of
    a call whose function name has ``artifact``."""
    tree = ast.parse(path.read_text())
    docstrings, pathlike = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)):
            body = node.body
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant):
                docstrings.add(id(body[0].value))
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.Div):
            pathlike.update({id(node.left), id(node.right)})
        if isinstance(node, ast.Call) and "artifact" in ast.unparse(node.func):
            pathlike.update(id(a) for a in [*node.args, *(k.value for k in node.keywords)])
    return [(node.lineno, node.value, id(node) in pathlike) for node in ast.walk(tree)
            if isinstance(node, ast.Constant) and isinstance(node.value, str)
            and id(node) not in docstrings]


def stray_names(root: Path = PACKAGE, homes=HOMES) -> list[str]:
    wanted = home_names()
    out = []
    for path in sorted(root.rglob("*.py")):
        if path in homes or "__pycache__" in path.parts:
            continue
        for line, text, names_a_path in literals(path):
            for name, constant in wanted.items():
                if (name in text) if is_distinctive(name) else (text == name and names_a_path):
                    out.append(f"{path.relative_to(root.parent)}:{line}: {text!r} spells {constant}")
    return out


def test_tag_and_file_names_are_spelled_only_in_their_home():
    assert stray_names() == []


def test_the_names_are_unique():
    values = [str(v) for m in (names, paths) for k, v in vars(m).items()
              if k.isupper() and isinstance(v, (str, Path))]
    assert len(values) == len(set(values))
    assert "mmgnn.role" in values and "mlflow.parentRunId" in values and "metrics.csv" in values
    assert "model_meta.json" in values and "failed_jobs.json" in values and "mlflow_parent.json" in values


@pytest.mark.parametrize("source", [
    'ROLE = "mmgnn.role"\n',
    "query = f\"tags.`mmgnn.monitor` = '{x}'\"\n",
    'open(run_dir / "metrics.csv")\n',
    'folder = sweep_dir / "jobs"\n',
])
def test_the_check_finds_a_stray_name(tmp_path, source):
    module = tmp_path / "mmgnn" / "bad.py"
    module.parent.mkdir()
    module.write_text('"""A docstring may name mmgnn.role and metrics.csv."""\n' + source)
    assert len(stray_names(tmp_path / "mmgnn", set())) == 1
