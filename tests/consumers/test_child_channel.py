"""The scorer child's channel without processes: the column codec round-trips every value the sink can
insert, frames and the forwarding sink's error mapping (a fake worker on a real socketpair), metric
families merged by name, and where ``scorer_process`` puts the pipelines."""

from __future__ import annotations

import asyncio
import math
import socket
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

import numpy as np
import orjson
import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from consumers.archiver import event_to_row
from consumers.child.channel import Channel, ChannelError
from consumers.child.codec import decode_table, encode_table
from consumers.child.snapshot import MergedRegistry, families, snapshot
from consumers.config import WorkerConfig
from consumers.contracts import PermanentError, TransientError
from consumers.metrics import ConsumerMetrics
from consumers.scorers.common import RowMaker
from consumers.sinks.clickhouse import to_columns
from consumers.sinks.forward import ForwardingSink, ParentLink
from tests.consumers.conftest import make_event

pytestmark = pytest.mark.timeout(30)

TS = datetime(2026, 3, 14, 15, 9, 26, 535123, tzinfo=UTC)
VALUES: list[tuple[str, list[Any]]] = [
    ("plain", ["a", "", None, True, False, 0, -(2**63), 2**64 - 1, 1.5, -0.0, 1e-300, "ünï"]),
    ("aware datetimes", [TS, None, TS.astimezone(timezone(timedelta(hours=5, minutes=30)))]),
    ("naive datetimes", [datetime(2026, 1, 2, 3, 4, 5, 6), None]),
    ("zoneinfo", [datetime(2026, 7, 1, 12, tzinfo=ZoneInfo("Europe/Paris"))]),
    ("uuid", [UUID("12345678-1234-5678-1234-567812345678"), None]),
    ("non-finite floats", [math.inf, -math.inf, 1.0, None]),
    ("big ints", [2**64, -(2**63) - 1, 3]),
    ("tuples in arrays", [[("user", "hi", None, None), ("system", "x", "ab" * 32, "n")], []]),
    ("maps", [{"EMAIL_ADDRESS": 1, "PHONE": 2}, {}, {"k": [1.0, 2.0]}]),
    ("dates, decimals, bytes", [date(2026, 1, 2), Decimal("1.10"), b"\x00\xff"]),
    ("mixed", [1, "1", 1.0, None, TS, [TS, (1, "a")]]),
]


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and math.isnan(a):
        return isinstance(b, float) and math.isnan(b)
    if isinstance(a, datetime):
        return type(b) is datetime and a == b and a.utcoffset() == b.utcoffset() and a.microsecond == b.microsecond
    if isinstance(a, list | tuple):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict):
        return type(b) is dict and list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _round_trip(rows: list[dict[str, Any]]) -> tuple[str, list[str], list[list[Any]]]:
    return decode_table(orjson.loads(orjson.dumps(encode_table("t", rows))))


@pytest.mark.parametrize(("case", "values"), VALUES, ids=[c for c, _ in VALUES])
def test_columns_round_trip_exactly(case: str, values: list[Any]) -> None:
    rows = [{"v": v, "n": i} for i, v in enumerate(values)]
    table, columns, data = _round_trip(rows)
    assert (table, columns) == ("t", ["v", "n"])
    assert _same(data, to_columns(rows)[1]), case


def test_nan_and_missing_keys_round_trip() -> None:
    rows = [{"a": math.nan}, {"b": TS}, {"a": 2.0, "b": None}]
    _, columns, data = _round_trip(rows)
    assert columns == ["a", "b"]  # first appearance; a missing key is None, as the sink inserts it
    assert math.isnan(data[0][0]) and data[0][1:] == [None, 2.0] and data[1] == [None, TS, None]


def test_real_rows_round_trip(make_event_rows: list[dict[str, Any]]) -> None:
    for rows in (make_event_rows, [event_to_row(make_event(i)) for i in range(3)]):
        _, columns, data = _round_trip(rows)
        assert (columns, data) == to_columns(rows) and _same(data, to_columns(rows)[1])


@pytest.fixture
def make_event_rows() -> list[dict[str, Any]]:
    mk = RowMaker("toxicity", "profanity-check", "m", "v1")
    return [r for i in range(3) for r in mk.rows(make_event(i), "prompt", ["toxicity"], [0.25 * i], ["ok"])]


def test_numpy_values_and_unknown_types() -> None:
    _, _, data = _round_trip([{"v": np.float32(0.5)}, {"v": np.int64(7)}, {"v": np.array([1.0, 2.0])}])
    assert _same(data[0], [0.5, 7, [1.0, 2.0]])
    with pytest.raises(TypeError):
        encode_table("t", [{"v": object()}])


@pytest.fixture
async def pair() -> Any:
    a, b = socket.socketpair()
    parent, child = await Channel.open(a), await Channel.open(b)
    yield parent, child
    await parent.close()
    await child.close()


async def test_forwarding_sink_maps_the_answers(pair: tuple[Channel, Channel]) -> None:
    parent, child = pair
    link = ParentLink(child)
    reader = asyncio.create_task(link.run())
    sink = ForwardingSink(link, "toxicity", max_rows_per_insert=2, timeout_s=2)
    answers = iter([{"ok": True}, {"ok": False, "kind": "transient", "error": "busy"},
                    {"ok": False, "kind": "permanent", "error": "bad type"}, None])
    seen: list[dict[str, Any]] = []

    async def fake_worker() -> None:
        while (msg := await parent.recv()) is not None:
            seen.append(msg)
            answer = next(answers)
            if answer is not None:  # the last one is never answered: the sink times out
                await parent.send({"t": "ack", "id": msg["id"], **answer})

    worker = asyncio.create_task(fake_worker())
    rows = {"scores": [{"event_id": f"e{i}", "ts": TS} for i in range(5)], "drift": [{"x": 1}]}
    await sink.write(rows)
    assert [m["t"] for m in seen] == ["write"] and seen[0]["pipeline"] == "toxicity"
    tables = [decode_table(t) for t in seen[0]["tables"]]  # one message, chunked at max_rows_per_insert
    assert [(t, len(d[0])) for t, _, d in tables] == [("scores", 2), ("scores", 2), ("scores", 1), ("drift", 1)]
    with pytest.raises(TransientError, match="busy"):
        await sink.write(rows)
    with pytest.raises(PermanentError, match="bad type"):
        await sink.write(rows)
    with pytest.raises(TransientError, match="no answer"):
        await sink.write(rows)
    await sink.write({"scores": []})  # nothing to send
    assert len(seen) == 4
    await parent.close()  # the worker goes away: a failing sink, not a crash
    await asyncio.wait_for(reader, 5)
    assert link.lost.is_set()
    with pytest.raises(TransientError, match="lost the worker"):
        await sink.write(rows)
    worker.cancel()


async def test_a_frame_that_is_not_json_breaks_the_channel(pair: tuple[Channel, Channel]) -> None:
    parent, child = pair
    parent._writer.write(b"\x00\x00\x00\x03abc")
    with pytest.raises(ChannelError):
        await child.recv()


def test_metrics_merged_by_family_name() -> None:
    mine, theirs = ConsumerMetrics(CollectorRegistry()), ConsumerMetrics(CollectorRegistry())
    mine.rows_written.labels("archiver", "events").inc(40)
    mine.batch_seconds.labels("archiver").observe(0.1)
    theirs.rows_written.labels("toxicity", "scores").inc(80)
    theirs.batch_seconds.labels("toxicity").observe(2.0)
    theirs.lag.labels("toxicity").set(math.nan)
    remote = families(orjson.loads(orjson.dumps(snapshot(theirs.registry))))
    text = generate_latest(MergedRegistry(mine.registry, lambda: remote)).decode()  # type: ignore[arg-type]
    headers = [line for line in text.splitlines() if line.startswith("# ")]
    assert len(headers) == len(set(headers))  # every HELP/TYPE once
    assert 'gatewatch_consumer_rows_written_total{pipeline="archiver",table="events"} 40.0' in text
    assert 'gatewatch_consumer_rows_written_total{pipeline="toxicity",table="scores"} 80.0' in text
    assert 'gatewatch_consumer_batch_seconds_bucket{le="2.5",pipeline="toxicity"} 1.0' in text
    assert 'gatewatch_consumer_lag{pipeline="toxicity"} NaN' in text
    parsed = {f.name: f for f in text_string_to_metric_families(text)}
    assert {s.labels["pipeline"] for s in parsed["gatewatch_consumer_batch_seconds"].samples} == {
        "archiver", "toxicity"}


@pytest.mark.parametrize(("mode", "pipelines", "child"), [
    ("auto", ["archiver", "toxicity", "drift"], ("toxicity", "drift")),
    ("auto", ["toxicity", "drift"], ()),  # no archiver to protect: one process
    ("auto", ["archiver"], ()),
    ("inline", ["archiver", "toxicity"], ()),
    ("child", ["archiver", "toxicity"], ("toxicity",)),
    ("child", ["factuality"], ("factuality",)),
])
def test_scorer_process_placement(mode: str, pipelines: list[str], child: tuple[str, ...]) -> None:
    assert WorkerConfig(scorer_process=mode, pipelines=pipelines).child_pipelines() == child  # type: ignore[arg-type]


def test_scorer_process_config_validated() -> None:
    assert WorkerConfig().scorer_process == "auto" and WorkerConfig().scorer_nice == 10
    with pytest.raises(ValueError, match="scorer_process") as exc:
        WorkerConfig(scorer_process="thread", scorer_nice=20)  # type: ignore[arg-type]
    assert "scorer_nice" in str(exc.value)
