# Two commands set everything up: `make run` and `make test`.
# Both create .venv with python3.11 when it is missing and (re)install only when the files that
# name the packages changed (each stamp file is named by their hash). Every package is installed
# at the version in requirements.lock, the versions the test suite passed with; the project
# itself is installed editable (console commands mmgnn-*, `python -m mmgnn...` from any folder).
#   make run   runtime packages (requirements.txt)
#   make test  runtime + tests and docs (requirements-test.txt) + Ray (requirements-ray.txt)
#   make lock  rewrite requirements.lock from .venv after a change of the lists (then run make test)
PYTHON ?= python3.11
VENV := .venv
PIP := $(VENV)/bin/python -m pip
RUNTIME := requirements.txt requirements.lock pyproject.toml
EXTRAS := requirements-test.txt requirements-ray.txt
RUN_STAMP := $(VENV)/.run-$(shell cat $(RUNTIME) | sha256sum | cut -c1-16)
TEST_STAMP := $(VENV)/.test-$(shell cat $(RUNTIME) $(EXTRAS) | sha256sum | cut -c1-16)
export DGLBACKEND := pytorch
# Extra arguments: `make run ARGS="gnn=sage fusion=gated"`, `make test ARGS="-k fusion"`.
ARGS ?=

.PHONY: run test docs bench lock suite-data screenshots clean-venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --upgrade "pip>=24,<27"

$(RUN_STAMP): $(RUNTIME) | $(VENV)/bin/python
	$(PIP) install -r requirements.txt -c requirements.lock
	$(PIP) install --no-deps -e .
	rm -f $(VENV)/.run-*
	touch $@

$(TEST_STAMP): $(RUN_STAMP) $(EXTRAS)
	$(PIP) install -r requirements-test.txt -r requirements-ray.txt -c requirements.lock
	rm -f $(VENV)/.test-*
	touch $@

run: $(RUN_STAMP)
	$(VENV)/bin/python run.py $(ARGS)

# Two pytest-xdist workers (the suite waits on many commands and servers; each worker and what it
# starts runs one OpenMP thread, tests/conftest.py); `make test TEST_WORKERS=0` runs in one process.
# loadgroup keeps the tests of one expensive shared fixture on one worker (tests/conftest.py).
TEST_WORKERS ?= 2

test: $(TEST_STAMP)
	$(VENV)/bin/python -m pytest tests -n $(TEST_WORKERS) --dist loadgroup $(ARGS)

docs: $(TEST_STAMP)
	$(VENV)/bin/python -m mkdocs build --strict

bench: $(RUN_STAMP)
	$(VENV)/bin/python -m experiments.bench_graphs
	$(VENV)/bin/python -m experiments.bench_models
	$(VENV)/bin/python -m experiments.benchmark

lock: | $(VENV)/bin/python
	$(PIP) freeze --exclude-editable | grep -v "^-e " > requirements.lock

# The Debian packages the suite's real recordings are built from (data=ktuberling, data=klettres;
# docs/datasets.md).
suite-data:
	apt-get install -y ktuberling-data klettres-data librsvg2-bin fonts-dejavu-core || \
	  { apt-get update -q && apt-get install -y ktuberling-data klettres-data librsvg2-bin fonts-dejavu-core; }

# docs/img/mlflow_sweep_*.png from a real 4-run sweep of the default model (needs chromium).
screenshots: $(TEST_STAMP)
	rm -rf /tmp/mmgnn-shots && mkdir -p /tmp/mmgnn-shots
	MMGNN_HOME=/tmp/mmgnn-shots $(VENV)/bin/python run.py -m seed=0,1 skip=none,sum \
	    tracking.experiment=default_model hydra/launcher=local_parallel > /tmp/mmgnn-shots/sweep.log 2>&1
	$(VENV)/bin/python -m experiments.ui_check --backend-store-uri sqlite:////tmp/mmgnn-shots/mlflow.db \
	    --parent $$(sed -n 's/.*: parent run \([0-9a-f]\{32\}\);.*/\1/p' /tmp/mmgnn-shots/sweep.log) --out docs/img

clean-venv:
	rm -rf $(VENV)
