"""Keep torch and transformers out of the gateway process (call before importing the gateway).

The gateway never runs them, but presidio imports transformers when it is installed (for an NER
pipeline we do not use), which drags in torch: seconds of start-up and ~400 MB of RSS. Where the
consumer stack shares the environment (the embedded default, dev venvs), block them.
"""

from __future__ import annotations

import sys


def slim_gateway_imports() -> None:
    for name in ("torch", "transformers"):
        sys.modules.setdefault(name, None)  # type: ignore[arg-type]  # `import torch` -> ImportError
