.PHONY: check lint typecheck test bench

check: lint typecheck test

lint:
	ruff check src tests bench
	ruff format --check src tests bench

typecheck:
	mypy

test:
	pytest

bench:
	python -m bench
