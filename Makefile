# Two commands on a fresh machine: `make demo` and `make test`.
# Both create .venv if missing, install the CPU build of torch 2.13.0 first, then feedgan itself.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.feedgan-installed
TORCH  := torch==2.13.0
# A local wheel directory makes the torch install fast and keeps pip away from CUDA builds.
WHEELS := $(wildcard /opt/wheels)
FIND_LINKS := $(if $(WHEELS),--find-links $(WHEELS),)

.PHONY: demo test install clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(STAMP): pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -qq --upgrade pip
	$(BIN)/python -m pip install -qq $(FIND_LINKS) "$(TORCH)"
	$(BIN)/python -c "import torch, sys; v = torch.__version__; sys.exit(0 if v.startswith('2.13.0') and torch.version.cuda is None else f'expected torch 2.13.0 CPU build, found {v} (cuda={torch.version.cuda}); remove .venv and install {\"$(TORCH)\"} from a CPU wheel')"
	$(BIN)/python -m pip install -qq $(FIND_LINKS) -e ".[dev]"
	$(BIN)/python -c "import torch; assert torch.__version__.startswith('2.13.0'), 'feedgan install replaced torch 2.13.0'"
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/feedgan demo

test: $(STAMP)
	$(BIN)/python -m pytest

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache
