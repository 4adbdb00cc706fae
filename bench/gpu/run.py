"""GPU run of ``bench/scorers.py``: one command, no network.

The GPU machine has torch, transformers, sentence-transformers and tokenizers but not pydantic/orjson
(used by the event schema and the scorer config). Their cp312 wheels ride along in bench/gpu/wheels and
are installed into a temporary directory (not the system) when missing. Everything else is built here.

    python3 bench/gpu/run.py --events 50000
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def ensure_deps() -> None:
    missing = [m for m in ("pydantic", "orjson") if importlib.util.find_spec(m) is None]
    if not missing:
        return
    target = Path(tempfile.gettempdir()) / "gatewatch-bench-deps"
    if not (target / "pydantic").exists():
        subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-index", "--find-links",
                        str(HERE / "wheels"), "--target", str(target), "pydantic", "orjson"], check=True)
    sys.path.insert(0, str(target))


if __name__ == "__main__":
    ensure_deps()
    sys.path.insert(0, str(HERE.parent))
    from scorers import main  # bench/scorers.py

    sys.exit(main(sys.argv[1:]))
