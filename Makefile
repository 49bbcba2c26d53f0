# The two README commands. Each sets everything up first (idempotent, scripts/setup_env.sh).
PY := .venv/bin/python
# pytest-xdist workers: one per core of the 2-core reference machine (override: make test TEST_WORKERS=4)
TEST_WORKERS ?= 2

.PHONY: setup demo test table1 serve

setup:
	@scripts/setup_env.sh

demo: setup
	@$(PY) -m mmf_pe.cli demo

test: setup
	@$(PY) -m ruff check mmf_pe tests scripts
	@$(PY) -m pytest -q -n $(TEST_WORKERS) --dist worksteal --durations=20 tests

table1: setup
	@$(PY) -m mmf_pe.cli table1

serve: setup
	@$(PY) -m mmf_pe.cli serve --demo
