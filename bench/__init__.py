"""Benchmarks of a source checkout (not installed with the package). Run them from the repository root,
as modules (``python -m bench.<script>``) or through ``gatewatch bench gateway|scorers|pipeline_lag``;
figures and how to read them: docs/benchmarks.md.

- harness.py: what the scripts share (processes on free ports, pinning, load, percentiles, tables,
  machine description, results JSON under bench/results/);
- proxy.py (``gatewatch bench gateway``) + proxy_report.py + pyspy.py: the gateway vs the LiteLLM proxy;
  gateway_ab.py: a git revision of the gateway against the working tree, interleaved;
- pipeline_lag.py (``gatewatch bench pipeline_lag``): request end to its row in ClickHouse;
- loadgen.py: the open-loop load generator the others run as a process;
- redaction_ttft.py, pii_latency.py, pii_quality.py: governance and PII redaction;
- scorers.py (``gatewatch bench scorers``), gpu/, toxicity_quality.py: the worker's scorers.
"""
