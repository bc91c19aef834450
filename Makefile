# gemini-backend: `make run` to try it, `make test` to check it.
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8000
export FLASK_APP := wsgi

.PHONY: run test test-embedded test-services install install-dev migrate worker web bench clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip

# Re-install only when a requirements file changed.
$(VENV)/.installed: requirements.txt $(BIN)/python
	$(BIN)/pip install --quiet -r requirements.txt
	touch $@

$(VENV)/.installed-dev: requirements-dev.txt $(VENV)/.installed
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(VENV)/.installed
install-dev: $(VENV)/.installed-dev

migrate: install
	$(BIN)/flask db upgrade

## run: web (gunicorn) + Huey consumer on the embedded default; Ctrl-C stops both.
run: migrate
	@echo ""
	@echo "  gemini-backend is starting: API docs at http://127.0.0.1:$(PORT)/docs"
	@echo "  (web: gunicorn on port $(PORT); worker: Huey consumer; Ctrl-C stops both)"
	@echo ""
	@trap 'kill -INT $$web $$worker 2>/dev/null; wait' INT TERM; \
	$(BIN)/flask worker & worker=$$!; \
	PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app & web=$$!; \
	wait -n $$web $$worker; kill -INT $$web $$worker 2>/dev/null; wait

web: migrate
	PORT=$(PORT) $(BIN)/gunicorn -c gunicorn.conf.py wsgi:app

worker: migrate
	$(BIN)/flask worker

## test: the whole suite on the embedded default, then again on PostgreSQL + Redis.
test: install-dev
	TEST_BACKEND=embedded $(BIN)/python -m pytest $(PYTEST_ARGS)
	TEST_BACKEND=services $(BIN)/python -m pytest $(PYTEST_ARGS)

test-embedded: install-dev
	TEST_BACKEND=embedded $(BIN)/python -m pytest $(PYTEST_ARGS)

test-services: install-dev
	TEST_BACKEND=services $(BIN)/python -m pytest $(PYTEST_ARGS)

bench: install-dev
	$(BIN)/python -m bench

clean:
	rm -rf $(VENV) instance .pytest_cache
