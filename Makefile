# Two commands do all set-up on a fresh machine:
#   make demo   - install, train (500 episodes), evaluate best_entropy.pt, open the dashboard
#   make test   - install (dev extras, Chromium for browser tests), run the test suite (not the tests marked slow)
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
TORCH ?= torch==2.13.0
EPISODES ?= 500
STREAMLIT_FLAGS ?=

.PHONY: setup setup-dev browser demo train evaluate dashboard test test-all test-fast lint bench clean

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q "$(TORCH)" || $(PY) -m pip install -q torch
	$(PY) -c "import torch; print('torch==' + torch.__version__.split('+')[0])" > $(VENV)/constraints.txt
	$(PY) -m pip install -q -e ".[dev,ray,carla,rl,av2,mlflow]" -c $(VENV)/constraints.txt
	touch $@

setup: $(VENV)/.installed

# Debian's Chromium for the end-to-end browser tests (Playwright's own download is not used).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  { if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; \
	    else echo "note: install Chromium (e.g. sudo apt-get install chromium) to run the browser tests"; fi; }

train: setup
	$(PY) -m training.train --episodes $(EPISODES)

evaluate: setup
	$(PY) -m sim.evaluate --ckpt best_entropy.pt

dashboard: setup
	$(VENV)/bin/streamlit run dashboard/app.py $(STREAMLIT_FLAGS)

demo: train evaluate dashboard

test: setup browser
	$(PY) -m pytest -q -m "not slow"

test-all: setup browser
	$(PY) -m pytest -q

test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

lint: setup
	$(VENV)/bin/ruff check .

bench: setup
	$(PY) -m benchmarks.sim_throughput
	$(PY) -m benchmarks.train_speed
	$(PY) -m benchmarks.eval_sweep
	$(PY) -m benchmarks.import_speed
	$(PY) -m benchmarks.dashboard_paint

clean:
	rm -rf $(VENV) out .pytest_cache .hypothesis
