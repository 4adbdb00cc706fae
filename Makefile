# The two fresh-machine commands (see README):
#   make up    - set up .venv and run the embedded default (broker, mock upstream, worker, gateway)
#   make test  - set up .venv and run the test-suite
.PHONY: setup up test lint bench-gateway bench-scorers

setup:
	./scripts/setup.sh

up: setup
	.venv/bin/gatewatch up

test: setup
	.venv/bin/ruff check .
	.venv/bin/python -m pytest -q

lint: setup
	.venv/bin/ruff check .

bench-gateway: setup
	.venv/bin/gatewatch bench gateway

bench-scorers: setup
	.venv/bin/gatewatch bench scorers
