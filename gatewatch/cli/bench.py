"""``gatewatch bench <what>``: run a benchmark of a source checkout (the ``bench`` package next to this one)."""

from __future__ import annotations

import argparse
import runpy
import sys
from pathlib import Path

from gatewatch.cli.common import CliError

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = {"gateway": "bench.proxy", "scorers": "bench.scorers", "pipeline_lag": "bench.pipeline_lag"}


def cmd_bench(args: argparse.Namespace) -> int:
    module = SCRIPTS[args.what]
    if not (ROOT / "bench" / "__init__.py").exists():
        raise CliError(f"benchmark package {ROOT / 'bench'} not found (run from a source checkout)")
    if str(ROOT) not in sys.path:  # bench/ is not installed: import it (and the project) from the checkout
        sys.path.insert(0, str(ROOT))
    sys.argv = [module, *args.rest]
    runpy.run_module(module, run_name="__main__", alter_sys=True)
    return 0


def add_parser(sub) -> None:  # type: ignore[no-untyped-def]
    bench = sub.add_parser("bench", help="run a benchmark of the source checkout (python -m bench.<script>)")
    bench.add_argument("what", choices=list(SCRIPTS))
    bench.add_argument("rest", nargs=argparse.REMAINDER)
    bench.set_defaults(func=cmd_bench)
