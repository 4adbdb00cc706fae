#!/usr/bin/env bash
# Create bench/.venvs/litellm (git-ignored) with the LiteLLM proxy, for the comparison in bench/proxy.py.
# Idempotent: does nothing when the venv already has the pinned version.
# Pin: 1.108.7 is the version measured in /work/shared/ENVIRONMENT.md ("Peers"); override with LITELLM_VERSION.
set -euo pipefail
VERSION="${LITELLM_VERSION:-1.108.7}"
HERE="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
VENV="${LITELLM_VENV:-$HERE/.venvs/litellm}"
PY="${PYTHON:-python3}"

if [ -x "$VENV/bin/litellm" ] && "$VENV/bin/python" - "$VERSION" <<'PYEOF' 2>/dev/null
import sys
from importlib.metadata import version
sys.exit(0 if version("litellm") == sys.argv[1] else 1)
PYEOF
then
  echo "litellm $VERSION already installed in $VENV" >&2
  exit 0
fi

echo "creating $VENV with litellm[proxy]==$VERSION (a few minutes) ..." >&2
"$PY" -m venv "$VENV"
"$VENV/bin/pip" install --quiet --upgrade pip >&2
"$VENV/bin/pip" install --quiet "litellm[proxy]==$VERSION" >&2
"$VENV/bin/litellm" --version >&2 || true
echo "litellm $VERSION installed in $VENV" >&2
