# The two commands of the README: `make demo` and `make test`. Both set everything up by themselves.
SHELL := /bin/bash
ENV := . .venv/hsnn-env.sh
ARGS ?=

.PHONY: setup demo test lint bench clean

setup:
	@bash scripts/setup.sh

demo: setup
	@$(ENV) && python -m hsnn_perception.tools.demo $(ARGS)

test: setup
	@$(ENV) && python -m pytest test $(ARGS)

lint: setup
	@$(ENV) && ruff check . && ruff format --check . && mypy

bench: setup
	@$(ENV) && python bench/snn_runtime.py && python bench/events.py && python bench/classifier_backends.py && python bench/replay_flow.py --samples 20

clean:
	rm -rf build install log
