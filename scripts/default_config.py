"""Write docs/gatewatch.default.yaml: the default configuration file, rendered from the configuration models
(``gatewatch.config.default_config_yaml``, which ``load_settings`` writes where no file exists).

    python scripts/default_config.py            # rewrite docs/gatewatch.default.yaml
    python scripts/default_config.py --check    # exit 1 when it is not the rendered text
    python scripts/default_config.py -          # print the rendered text
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from gatewatch.config import default_config_yaml

TARGET = Path(__file__).resolve().parent.parent / "docs" / "gatewatch.default.yaml"


def main(argv: list[str]) -> int:
    text = default_config_yaml()
    if argv[:1] == ["-"]:
        sys.stdout.write(text)
    elif argv[:1] == ["--check"]:
        if TARGET.read_text() != text:
            print(f"{TARGET} differs from the models' defaults: run python scripts/default_config.py", file=sys.stderr)
            return 1
    else:
        TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
