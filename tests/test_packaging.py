"""The installed package: every console command of pyproject.toml answers ``--help`` from any
folder, and the modules run with ``python -m`` from ``/`` (``make`` installs the project
editable into .venv)."""
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPTS = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
BIN = Path(sys.executable).parent


@pytest.mark.parametrize("name", sorted(SCRIPTS))
def test_each_console_command_answers_help_from_the_root_folder(name):
    script = BIN / name
    assert script.exists(), f"{script} is not installed: make test installs the project (pip install -e .)"
    proc = subprocess.run([str(script), "--help"], capture_output=True, text=True, cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "usage:" in proc.stdout


@pytest.mark.parametrize("module", ["mmgnn.featurize", "mmgnn.inference", "mmgnn.tracking.sync"])
def test_modules_run_from_the_root_folder(module):
    proc = subprocess.run([sys.executable, "-m", module, "--help"], capture_output=True, text=True,
                          cwd="/", timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


def test_the_runtime_list_holds_no_test_tools_and_the_lock_pins_every_listed_package():
    runtime = (ROOT / "requirements.txt").read_text()
    assert "pytest" not in runtime and "playwright" not in runtime and "mkdocs" not in runtime
    locked = {line.split("==")[0].lower().replace("_", "-")
              for line in (ROOT / "requirements.lock").read_text().splitlines() if "==" in line}
    for path in ("requirements.txt", "requirements-test.txt", "requirements-ray.txt"):
        for line in (ROOT / path).read_text().splitlines():
            line = line.split("#")[0].strip()
            if line:
                name = line.split("[")[0].split("=")[0].split("<")[0].split(">")[0].strip().lower()
                assert name.replace("_", "-") in locked, f"{path}: {name} is not in requirements.lock"
