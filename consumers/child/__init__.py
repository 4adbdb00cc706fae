"""The scorer pipelines in a child process of the worker (``worker.scorer_process``).

Scoring is CPU-heavy Python/torch work; in the worker's own process it competes with the archiver for
the GIL and the event loop, and the audit log's freshness becomes hostage to it. So the worker
(the parent: warehouse owner, archiver, alerts, console) runs the scorer pipelines in one child process
at a lower CPU priority:

- ``supervisor.py`` (parent): starts ``python -m consumers.child.host`` with one end of a socketpair,
  answers its inserts and reads with the worker's warehouse client (chdb admits one process per data
  directory), keeps its latest metrics and health for ``/metrics`` and ``/healthz``, restarts it with
  backoff when it dies, stops it first on shutdown.
- ``host.py`` (child): the same pipelines (Kafka source, own consumer groups, commit after the write) with
  a sink that forwards each write to the parent (chdb) or its own ClickHouse client (server DSN); a
  scorer's warehouse reads (drift baselines) take the same way (``reads.py``).
- ``channel.py``: length-prefixed orjson frames; ``codec.py``: rows as typed columns (no pickle);
  ``snapshot.py``: the child's metric families, merged by name into the parent's exposition.
"""
