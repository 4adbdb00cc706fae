"""Gatewatch composition root: the CLI, the embedded default supervisor, the mock upstream, benchmarks."""

__version__ = "0.1.0"
