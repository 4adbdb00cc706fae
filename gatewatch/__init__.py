"""Gatewatch composition root: the CLI, the configuration (all sections), the embedded default supervisor."""

__version__ = "0.1.0"
