#!/usr/bin/env bash
# Set up .venv with everything Gatewatch needs (gateway, consumers, NER model, test tools).
# Idempotent: re-runs only when pyproject.toml or constraints.txt changed.
# torch goes in first, pinned, so no other package pulls a multi-GB CUDA build by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
stamp="$VENV/.gatewatch-setup"
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && [ -x "$VENV/bin/gatewatch" ]; then
  exit 0
fi
echo "setting up $VENV (first run takes a few minutes) ..." >&2
[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
echo "  [1/2] torch 2.13.0 (CPU build where available)" >&2
"$VENV/bin/python" -m pip install -q "torch==2.13.0"
echo "  [2/2] gatewatch with extras ner, consumers, dev" >&2
"$VENV/bin/python" -m pip install -q -c constraints.txt -e ".[ner,consumers,dev]"
echo "$want" > "$stamp"
echo "ready: $VENV/bin/gatewatch" >&2
