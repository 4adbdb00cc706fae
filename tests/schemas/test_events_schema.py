from __future__ import annotations

from pathlib import Path

import jsonschema
import orjson

from schemas.events import OTEL_GENAI_ATTRIBUTES, Event, json_schema, to_otel_attributes

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "schemas" / "events.v1.json"

SAMPLE = {
    "event_id": "e1", "request_id": "r1", "gateway_instance": "gw-1", "sequence": 0,
    "ts_start": "2026-11-27T07:00:00.000Z", "ts_end": "2026-11-27T07:00:00.120Z", "tenant": "acme",
    "endpoint": "chat.completions", "operation": "chat", "request_model": "gpt-4o-mini", "status": 200,
    "outcome": "completed", "latency_ms": 120.0, "usage": {"input_tokens": 5, "output_tokens": 7},
    "response": {"text": "hi", "finish_reasons": ["stop"]},
}


def test_committed_schema_is_current() -> None:
    committed = orjson.loads(SCHEMA_FILE.read_bytes())
    assert committed == orjson.loads(orjson.dumps(json_schema())), "run: python -m schemas.events"


def test_sample_validates_both_ways() -> None:
    jsonschema.validate(SAMPLE, orjson.loads(SCHEMA_FILE.read_bytes()))
    ev = Event.model_validate(SAMPLE)
    assert ev.schema_version == 1
    assert Event.model_validate_json(ev.to_json()) == ev


def test_schema_rejects_unknown_and_missing() -> None:
    schema = orjson.loads(SCHEMA_FILE.read_bytes())
    bad = {**SAMPLE, "surprise": 1}
    errors = list(jsonschema.Draft202012Validator(schema).iter_errors(bad))
    assert errors
    missing = {k: v for k, v in SAMPLE.items() if k != "tenant"}
    assert list(jsonschema.Draft202012Validator(schema).iter_errors(missing))


def test_otel_mapping() -> None:
    attrs = to_otel_attributes(Event.model_validate(SAMPLE))
    assert attrs["gen_ai.request.model"] == "gpt-4o-mini"
    assert attrs["gen_ai.usage.input_tokens"] == 5 and attrs["gen_ai.usage.output_tokens"] == 7
    assert attrs["gen_ai.operation.name"] == "chat"
    assert attrs["gen_ai.response.finish_reasons"] == ["stop"]
    assert set(OTEL_GENAI_ATTRIBUTES.values()) >= {"gen_ai.request.model", "gen_ai.response.model"}
