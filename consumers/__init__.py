"""Gatewatch consumers: Kafka source -> scorers -> ClickHouse sink pipelines (the worker process)."""
