# The two commands of the README. Both create .venv at the repo root and install everything first.
.PHONY: run test lint setup docs

setup:
	@bash scripts/bootstrap.sh

run: setup
	.venv/bin/sparselearning train

# pytest exits 5 when it collected no test: that fails here, as it must.
test: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m pytest

lint: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m ruff format --check .

# The documentation site (MkDocs + mkdocstrings), built strictly: any warning fails.
docs: setup
	.venv/bin/mkdocs build --strict -d site
