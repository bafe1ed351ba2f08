# The two commands of the README. Both create .venv at the repo root and install everything first.
.PHONY: run test lint typecheck setup docs dist

setup:
	@bash scripts/bootstrap.sh

run: setup
	.venv/bin/sparselearning train

# pytest exits 5 when it collected no test: that fails here, as it must.
# mypy checks the public API strictly and the rest with its defaults ([tool.mypy] in pyproject.toml); a type
# error fails the target too, but only after pytest has run, so the test results are always shown.
test: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m mypy; typed=$$?; .venv/bin/python -m pytest && exit $$typed

typecheck: setup
	.venv/bin/python -m mypy

lint: setup
	.venv/bin/python -m ruff check .
	.venv/bin/python -m ruff format --check .

# The documentation site (MkDocs + mkdocstrings), built strictly: any warning fails.
docs: setup
	.venv/bin/mkdocs build --strict -d site

# The sdist and wheel a release would upload, built with .venv's setuptools (no download), into .venv/dist.
dist: setup
	.venv/bin/python -m build --no-isolation --outdir .venv/dist
