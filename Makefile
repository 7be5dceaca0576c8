# The two commands of the README: `make demo` and `make test`. Each creates .venv when missing.
PYTHON ?= python3
VENV   ?= .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# Test workers: two cores on the reference machine.
JOBS   ?= 2

.PHONY: demo test lint venv bench clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch==2.13.0 is the CPU build on local disk; an unpinned torch would pull a CUDA build.
	$(PY) -m pip install -q torch==2.13.0
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The main job: certify a bundled reference image (MNIST 0-1, paper network) with the embedded
# oracle, re-check the certificate, and draw it.
DEMO_OUT ?= out/cert-mnist-0-1
demo: $(STAMP)
	$(VENV)/bin/vnnbridge certify --onnx tests/data/paper/mnist_784_32_10.onnx \
	    --input tests/data/paper/mnist_0-1.csv --out $(DEMO_OUT)
	$(VENV)/bin/vnnbridge check $(DEMO_OUT)
	$(VENV)/bin/vnnbridge show $(DEMO_OUT) -o $(DEMO_OUT).png
	@echo "certificate: $(DEMO_OUT)/certificate.json  picture: $(DEMO_OUT).png"

# ruff (defects, not style) and mypy on the package; configured in pyproject.toml.
lint: $(STAMP)
	$(VENV)/bin/ruff check vnnbridge tests benchmarks
	$(VENV)/bin/mypy

test: $(STAMP)
	$(PY) -m pytest -q -n $(JOBS) -p no:cacheprovider

bench: $(STAMP)
	$(PY) benchmarks/parse_speed.py

clean:
	rm -rf $(VENV) build *.egg-info
