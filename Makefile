# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Test workers: two cores on the reference machine.
JOBS   ?= 2

.PHONY: demo test venv bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU build on local disk; an unpinned torch would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/vnnbridge vnnlib check tests/data/vnnlib/ok/mnist_fc_prop_0_0.03.vnnlib

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/parse_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
