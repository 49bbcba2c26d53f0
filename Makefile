# The two README commands. Each sets everything up first (idempotent, scripts/setup_env.sh).
PY := .venv/bin/python

.PHONY: setup demo test table1 serve

setup:
	@scripts/setup_env.sh

demo: setup
	@$(PY) -m mmf_pe.cli demo

test: setup
	@$(PY) -m ruff check mmf_pe tests scripts
	@$(PY) -m pytest -q tests

table1: setup
	@$(PY) -m mmf_pe.cli table1

serve: setup
	@$(PY) -m mmf_pe.cli serve --demo
