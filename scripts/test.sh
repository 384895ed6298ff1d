#!/usr/bin/env bash
# Build a fresh virtual environment from scratch, install unstatic with its test extras, run the tests.
# Extra arguments go to pytest (e.g. `-m slow` for the slow tests).
set -euo pipefail
cd "$(dirname "$0")/.."
rm -rf .venv-test
python3 -m venv .venv-test
.venv-test/bin/pip install --quiet --upgrade pip
.venv-test/bin/pip install --quiet -c constraints.txt -e '.[test]'
# k-diffusion (a parity reference) declares torchvision, which has no CPU build: install it without deps.
.venv-test/bin/pip install --quiet --no-deps -c constraints.txt 'k-diffusion==0.1.1.post1'
.venv-test/bin/python -c "import torch; assert '+cu' not in torch.__version__ and not torch.version.cuda, torch.__version__"
.venv-test/bin/python -m pytest -n 2 -q "$@"
