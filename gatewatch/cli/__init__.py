"""The `gatewatch` command: the one composition root (up, gateway, worker, mock-upstream, migrate, keys, ...).

One module per command group (``up``, ``gateway``, ``worker``, ``keys``, ``config``, ``bench``, ``audit``,
``console``, ``drift``), each with its ``cmd_*`` functions and the parsers it registers; ``main`` builds the
parser and maps errors to exits.
"""

from gatewatch.cli.common import CliError
from gatewatch.cli.drift import cmd_drift
from gatewatch.cli.main import SERVICES, build_parser, main, quiet_presidio

__all__ = ["SERVICES", "CliError", "build_parser", "cmd_drift", "main", "quiet_presidio"]
