# Two commands do all the set-up on a fresh machine with Python 3.11:
#   make run    install, migrate, create partitions, run the collector and the
#               API (and, without Kalshi credentials, the exchange simulator)
#   make test   install and run the whole test suite
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# The embedded PostgreSQL is for development only: it is used when
# DATABASE_URL is unset, which settings allow only with DEBUG on.
export DEBUG ?= 1

.PHONY: install run test migrate bench

$(BIN)/.installed: requirements.txt requirements-dev.txt requirements-system.txt
	bin/install-system-packages
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -r requirements-dev.txt
	touch $@

install: $(BIN)/.installed

migrate: install
	$(BIN)/python manage.py migrate --no-input
	$(BIN)/python manage.py pgpartition --yes

# bin/run-dev starts the processes and stops them all on Ctrl-C.
# RUN_DEV_DEBUG_ORIGIN tells bin/run-dev whether DEBUG is this file's default
# (then it is turned off when recording from Kalshi) or the user's choice.
run: migrate
	RUN_DEV_DEBUG_ORIGIN=$(origin DEBUG) $(BIN)/python bin/run-dev

test: install
	$(BIN)/pytest

bench: migrate
	$(BIN)/python bench/ingest_bench.py
	$(BIN)/python bench/ws_feed_bench.py --markets 2000 --steps 100000
	$(BIN)/python bench/api_bench.py
	$(BIN)/python bench/bulk_bench.py
	$(BIN)/python bench/explore_bench.py
	$(BIN)/python bench/late_trades_bench.py
	$(BIN)/python bench/abuse_bench.py
