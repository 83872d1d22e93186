# gencsp — `make bench` and `make test` set everything up on a fresh machine.
PYTHON  ?= python3
VENV    ?= .venv
BIN     := $(VENV)/bin
STAMP   := $(VENV)/.installed-stamp

MODEL   ?= random_search
DATASET ?= mini
SPLIT   ?= test
TASK    ?= csp
LIMIT   ?=
RUNTIME ?= auto
ARGS    ?=
PYTEST_ARGS ?=

.PHONY: help install bench test e2e lint schemas image sif base clean

help:
	@echo "make bench [MODEL=random_search DATASET=mini SPLIT=test TASK=csp LIMIT=N RUNTIME=auto]"
	@echo "make test | install | lint | schemas | image MODEL=... | sif MODEL=... | base"
	@echo "make e2e MODEL=cdvae [ARGS=...]   (GENCSP_UPSTREAM_MIRROR=DIR where GitHub is unreachable)"

# The environment is (re)made when missing or when pyproject.toml changes.
$(STAMP): pyproject.toml
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev,mlip]'
	@touch $(STAMP)

install: $(STAMP)

bench: $(STAMP)
	$(BIN)/gencsp bench --model $(MODEL) --dataset $(DATASET) --split $(SPLIT) --task $(TASK) \
		$(if $(LIMIT),--limit $(LIMIT)) --runtime $(RUNTIME) --build-missing $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest $(PYTEST_ARGS)

# One upstream model end to end on CPU at smoke scale: build its CPU image if missing, train,
# bench every task of its e2e recipe (model.yaml), write the report, print rows and stage times.
e2e: $(STAMP)
	$(BIN)/gencsp e2e $(MODEL) --runtime $(RUNTIME) $(ARGS)

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/python -m schemas.export --check

schemas: $(STAMP)
	$(BIN)/python -m schemas.export

image: $(STAMP)
	$(BIN)/gencsp build $(MODEL)

sif: $(STAMP)
	$(BIN)/gencsp sif $(MODEL)

base: $(STAMP)
	$(BIN)/gencsp build-base

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache *.egg-info
