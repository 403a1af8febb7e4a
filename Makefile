# inferq: `make run` starts the whole stack locally; `make test` runs the test suite;
# `make chaos` the chaos tests and the soak.
#
# Rough durations on a 2-core machine (CI), once `make install` has run (its first run installs
# TensorFlow and the rest: minutes, depending on the network):
#   make run          ~10-20 s until its banner (the worker loads and warms the demo models)
#   make test         ~9 min
#   make chaos        ~4.5 min
#   make bench-quick  ~2.5 min
#   make bench-scale  ~8 min (up to ~12 on a busy machine)
#   make bench        longer; up to ~20 min when it has to measure again (bench/README.md)
#   make train-demo   ~5 min
VENV ?= .venv
PY := $(VENV)/bin/python
export VENV

.PHONY: install run test chaos train-demo clean

install:
	@scripts/install.sh

# Ctrl-C (or SIGTERM to make or to scripts/run.py) stops every process it started.
run: install
	@$(PY) scripts/run.py

test: install
	$(PY) -m pytest -q -m "not chaos"

# Kills and restarts of workers, Redis and the API, a full Redis, a Redis Sentinel failover,
# and a 10,000-job soak
# (tests marked `chaos`; a few minutes).
chaos: install
	$(PY) -m pytest -q -m chaos

# Retrain the demo model (the trained file is committed; about 5 minutes on 2 CPU cores).
train-demo: install
	$(PY) -m demo.train_shapes

clean:
	rm -rf .run .pytest_cache

# Benchmark (bench/README.md): every figure in one run on this machine, as ratios.
# `bench` writes bench/results/latest.{json,md,png}; `bench-quick` is a short run of every
# measurement path (CI), bench/results/quick.json and scale-quick.json. `bench-scale`: jobs/s
# and Redis CPU at 1-8 workers and 1-4 API processes, bench/results/scale.{json,md,png}.
.PHONY: bench bench-quick bench-scale
BENCH_DEPS := $(VENV)/.bench-deps

$(BENCH_DEPS): bench/requirements.txt | install
	$(PY) -m pip install -q -r bench/requirements.txt
	@touch $@

bench: install $(BENCH_DEPS)
	$(PY) -m bench.run

bench-quick: install $(BENCH_DEPS)
	$(PY) -m bench.run --quick
	$(PY) -m bench.scale --quick

bench-scale: install $(BENCH_DEPS)
	$(PY) -m bench.scale
