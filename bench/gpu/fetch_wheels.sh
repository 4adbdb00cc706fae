#!/usr/bin/env bash
# Download the few pure-Python/cp312 wheels the GPU machine lacks (it has torch, transformers,
# sentence-transformers, tokenizers but not pydantic/orjson) into bench/gpu/wheels/ (git-ignored),
# to be carried to the GPU machine with the working tree. Wheels are never committed.
set -euo pipefail
cd "$(dirname "$0")"
../../.venv/bin/python -m pip download -q --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 -d wheels \
  pydantic==2.14.3 orjson==3.13.0
ls wheels
