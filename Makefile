# inferq: `make run` starts the whole stack locally; `make test` runs the test suite.
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: install run test train-demo clean

install:
	@scripts/install.sh

run: install
	@scripts/run.sh

test: install
	$(PY) -m pytest -q

# Retrain the demo model (the trained file is committed; this takes a few minutes on a CPU).
train-demo: install
	$(PY) -m demo.train_shapes

clean:
	rm -rf .run .pytest_cache
