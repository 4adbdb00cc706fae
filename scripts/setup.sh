#!/usr/bin/env bash
# Set up .venv with everything Gatewatch needs (gateway, consumers, NER model, test tools).
# Idempotent: re-runs only when pyproject.toml or constraints.txt changed.
# torch goes in first, pinned, so no other package pulls a multi-GB CUDA build by accident.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
VENV=${VENV:-.venv}

# Debian's Chromium for the console's end-to-end browser test (Playwright drives it; it never downloads a
# browser). Installed as root when missing; without it that one test is skipped, unless
# GATEWATCH_REQUIRE_CHROMIUM=1 (set by .ci/run), where a failed install fails the setup.
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "installing chromium (console browser test) ..." >&2
    if apt-get update -qq >/dev/null && DEBIAN_FRONTEND=noninteractive \
        apt-get install -y -qq --no-install-recommends chromium >/dev/null; then
      echo "  $(chromium --version 2>/dev/null || echo chromium installed)" >&2
    elif [ "${GATEWATCH_REQUIRE_CHROMIUM:-0}" = 1 ]; then
      echo "error: could not install chromium" >&2
      exit 1
    else
      echo "  could not install chromium; the console browser test will be skipped" >&2
    fi
  elif [ "${GATEWATCH_REQUIRE_CHROMIUM:-0}" = 1 ]; then
    echo "error: chromium is required (apt-get install chromium as root)" >&2
    exit 1
  else
    echo "note: no chromium; the console browser test will be skipped (apt-get install chromium)" >&2
  fi
fi

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
