# Two commands set everything up: `make run` and `make test`.
# Both create .venv with python3.11 when it is missing and (re)install requirements.txt only
# when its content changed (the stamp file is named by the file's hash).
PYTHON ?= python3.11
VENV := .venv
REQ_HASH := $(shell sha256sum requirements.txt | cut -c1-16)
STAMP := $(VENV)/.installed-$(REQ_HASH)
export DGLBACKEND := pytorch
# Extra arguments: `make run ARGS="gnn=sage fusion=gated"`, `make test ARGS="-k fusion"`.
ARGS ?=

.PHONY: run test bench clean-venv

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): requirements.txt | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install --upgrade "pip>=24,<27"
	$(VENV)/bin/python -m pip install -r requirements.txt
	rm -f $(VENV)/.installed-*
	touch $@

run: $(STAMP)
	$(VENV)/bin/python run.py $(ARGS)

test: $(STAMP)
	$(VENV)/bin/python -m pytest tests $(ARGS)

bench: $(STAMP)
	$(VENV)/bin/python -m experiments.bench_graphs
	$(VENV)/bin/python -m experiments.bench_models
	$(VENV)/bin/python -m experiments.benchmark

clean-venv:
	rm -rf $(VENV)
