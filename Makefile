# Two commands on a fresh machine with Python >= 3.10 and make:
#   make demo   -- create .venv, install, run the main job on the embedded default data
#   make test   -- create/update .venv with the dev extra and run the whole suite
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
PIP     = $(PY) -m pip -q --disable-pip-version-check
DEMO_DIR ?= runs/demo

.PHONY: demo test venv dev embed bench-hopa bench-bindc clean

$(VENV)/.core: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -e .
	touch $@

$(VENV)/.dev: $(VENV)/.core
	$(PIP) install -e '.[dev]'
	touch $@

# The PyTorch embedding stage (torch CPU wheel first, ImageBind without its deps, espeak-ng
# for the tests); idempotent. See docs/embedding.md.
$(VENV)/.embed: $(VENV)/.dev scripts/install_embed.sh
	bash scripts/install_embed.sh $(PY)
	touch $@

venv: $(VENV)/.core
dev: $(VENV)/.dev
embed: $(VENV)/.embed

demo: $(VENV)/.core
	$(PY) -m experiments.demo --workdir $(DEMO_DIR)

# --dist loadscope: a module's tests share one worker, so a module-scoped fixture (a
# tiny run, a 2-process launch) is built once, not once per worker.
test: $(VENV)/.embed
	$(PY) -m pytest -q -n 2 --dist loadscope tests

bench-hopa: $(VENV)/.core
	$(PY) benchmarks/hopa_bench.py --quick

bench-bindc: $(VENV)/.core
	$(PY) benchmarks/bindc_bench.py --quick

clean:
	rm -rf $(VENV) runs
