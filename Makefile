# The two commands of the README: `make demo` and `make test`.
# Both create .venv on first use and install the package into it.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
# The CPU build of torch (a plain `torch` pulls a multi-GB CUDA build). Override on GPU
# machines, e.g. `make demo TORCH_SPEC=torch`, or install torch yourself first.
TORCH_SPEC ?= torch==2.13.0
STAMP := $(VENV)/.installed

.PHONY: demo test install clean

$(STAMP): setup.cfg pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install -q "$(TORCH_SPEC)"
	$(PY) -m pip install -q -e ".[test]"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/resnet-bk demo

test: $(STAMP)
	$(PY) -m pytest tests -q

clean:
	rm -rf $(VENV) results outputs *.egg-info
