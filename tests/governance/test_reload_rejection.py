"""A policy file rejected at reload never fails open: its tenant keeps its last good policy or is refused,
every other file's change applies, and the rejection is a metric, a log line and a status detail.
Real files, real loader and real (regex-engine) redactors; the NER case uses a model that is not installed."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml

from gateway.errors import PolicyUnavailable
from gateway.governance.loader import PolicyError
from gateway.governance.metrics import POLICY_REJECTED_FILES, POLICY_RELOAD_FAILURES
from gateway.governance.store import PolicyStore

pytestmark = pytest.mark.timeout(60)

NER_MISSING = {"version": "ner", "pii": {"engine": "ner", "ner_model": "gatewatch_missing_model",
                                         "input": {"PERSON": "redact"}}}
BAD_RULE = {"version": "bad", "patterns": [{"id": "x", "regex": "(unclosed"}]}
REFUSED = "refused"
Files = dict[str, Any]  # file name -> policy mapping, raw YAML text, or None (delete the file)


def block(version: str, word: str) -> dict[str, Any]:
    return {"version": version, "patterns": [{"id": f"no-{word}", "keywords": [word]}]}


def put(d: Path, files: Files) -> None:
    for name, content in files.items():
        path = d / (name if "." in name else f"{name}.yaml")
        if content is None:
            path.unlink()
        else:
            path.write_text(content if isinstance(content, str) else yaml.safe_dump(content))


def served(store: PolicyStore, tenant: str) -> str:
    assert store.current is not None
    try:
        return store.current.for_tenant(tenant).version
    except PolicyUnavailable:
        return REFUSED


@pytest.fixture
async def policy_dir(tmp_path: Path) -> AsyncIterator[tuple[PolicyStore, Path]]:
    d = tmp_path / "policies"
    d.mkdir()
    store = PolicyStore(d, poll_s=3600)
    yield store, d
    await store.stop()


CASES = [  # (id, files at start, files at reload, version served per tenant, effect per rejected file)
    ("new tenant file needs a NER model that is not installed",
     {"default": {"version": "d1"}, "beta": {"version": "b1"}},
     {"acme": NER_MISSING, "beta": block("b2", "apollo")},
     {"acme": REFUSED, "beta": "b2", "nobody": "d1"}, {"acme.yaml": "refused"}),
    ("broken edit (invalid regex) keeps the last good policy",
     {"default": {"version": "d1"}, "acme": block("a1", "apollo"), "beta": {"version": "b1"}},
     {"acme": BAD_RULE, "beta": {"version": "b2"}},
     {"acme": "a1", "beta": "b2"}, {"acme.yaml": "kept_last_good"}),
    ("broken edit (NER model not installed) keeps the last good policy",
     {"default": {"version": "d1"}, "acme": block("a1", "apollo")},
     {"acme": NER_MISSING, "default": {"version": "d2"}},
     {"acme": "a1", "nobody": "d2"}, {"acme.yaml": "kept_last_good"}),
    ("unreadable YAML keeps the last good policy",
     {"acme": {"version": "a1"}}, {"acme": "version: [unclosed\n"},
     {"acme": "a1"}, {"acme.yaml": "kept_last_good"}),
    ("unknown entity type in a new file is refused",
     {"default": {"version": "d1"}}, {"acme": {"pii": {"input": {"NOT_AN_ENTITY": "redact"}}}},
     {"acme": REFUSED}, {"acme.yaml": "refused"}),
    ("default.yaml rejected: the whole last good set stays, a new tenant file waits (refused)",
     {"default": {"version": "d1"}, "acme": {"version": "a1"}, "beta": {"version": "b1"}},
     {"default": {"version": "d2", "bogus": 1}, "acme": {"version": "a2"}, "beta": None,
      "gamma": {"version": "g1"}},
     {"acme": "a1", "beta": "b1", "gamma": REFUSED, "nobody": "d1"},
     {"default.yaml": "kept_last_good_set", "gamma.yaml": "refused"}),
    ("a deleted tenant file puts the tenant on the default",
     {"default": {"version": "d1"}, "acme": block("a1", "apollo")}, {"acme": None},
     {"acme": "d1"}, {}),
    ("two files for one tenant: rejected, the last good policy stays",
     {"acme": {"version": "a1"}}, {"acme.yml": {"version": "a2"}},
     {"acme": "a1"}, {"acme.yaml": "kept_last_good"}),
]


@pytest.mark.parametrize(("before", "after", "want", "rejected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
async def test_reload_table(policy_dir: tuple[PolicyStore, Path], before: Files, after: Files,
                            want: dict[str, str], rejected: dict[str, str]) -> None:
    store, d = policy_dir
    put(d, before)
    store.load()
    put(d, after)
    assert await store.reload() is (not rejected)
    assert {t: served(store, t) for t in want} == want
    assert {name: r.effect for name, r in store.rejected.items()} == rejected
    assert all(r.errors for r in store.rejected.values())
    assert POLICY_REJECTED_FILES._value.get() == len(rejected)


async def test_never_valid_tenant_stays_refused(policy_dir: tuple[PolicyStore, Path]) -> None:
    """A refused tenant is not put on the default by a later, unrelated change."""
    store, d = policy_dir
    put(d, {"default": {"version": "d1"}})
    store.load()
    put(d, {"acme": NER_MISSING})
    await store.reload()
    put(d, {"default": {"version": "d2"}, "beta": {"version": "b1"}})
    await store.reload()
    assert (served(store, "acme"), served(store, "beta"), served(store, "nobody")) == (REFUSED, "b1", "d2")
    assert store.current is not None and store.current.capture("acme") == "none"  # events store no text


async def test_rejection_is_counted_logged_reported_and_cleared(policy_dir: tuple[PolicyStore, Path],
                                                                caplog: pytest.LogCaptureFixture) -> None:
    store, d = policy_dir
    put(d, {"default": {"version": "d1"}, "beta": block("b1", "apollo")})
    store.load()
    failures = POLICY_RELOAD_FAILURES._value.get()
    put(d, {"acme": NER_MISSING, "beta": BAD_RULE})
    with caplog.at_level(logging.INFO, logger="gateway.governance.store"):
        assert await store.reload() is False
    assert POLICY_RELOAD_FAILURES._value.get() == failures + 1
    assert POLICY_REJECTED_FILES._value.get() == 2
    lines = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(lines) == 2  # one line per rejected file, naming it and its errors
    acme = next(m for m in lines if "acme.yaml" in m)
    assert "refused" in acme and "gatewatch_missing_model" in acme and "not installed" in acme
    beta = next(m for m in lines if "beta.yaml" in m)
    assert "keeps its last good policy b1" in beta and "invalid regex" in beta

    status = store.status()
    assert status["rejected_files"] == 2 and status["default_version"] == "d1"
    assert status["rejected"]["acme.yaml"] | {"since": None} == {
        "tenant": "acme", "effect": "refused", "version": None, "errors": 1, "since": None}
    assert status["rejected"]["beta.yaml"]["effect"] == "kept_last_good"
    assert status["rejected"]["beta.yaml"]["version"] == "b1"
    shown = orjson.dumps(status).decode()
    assert "unclosed" not in shown and "gatewatch_missing_model" not in shown  # counts, never error text
    since = status["rejected"]["acme.yaml"]["since"]

    put(d, {"beta": BAD_RULE | {"version": "bad2"}})  # another reload while acme is still broken
    await store.reload()
    assert store.status()["rejected"]["acme.yaml"]["since"] == since

    caplog.clear()
    put(d, {"acme": {"version": "a1"}, "beta": block("b2", "apollo")})
    with caplog.at_level(logging.INFO, logger="gateway.governance.store"):
        assert await store.reload() is True
    assert (served(store, "acme"), served(store, "beta")) == ("a1", "b2")
    assert store.status()["rejected"] == {} and store.rejected == {} and store.last_error is None
    assert POLICY_REJECTED_FILES._value.get() == 0
    assert any("acme.yaml accepted again" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("files", [{"acme": NER_MISSING}, {"default": {"bogus": 1}}, {"acme": BAD_RULE}])
async def test_startup_stays_strict(policy_dir: tuple[PolicyStore, Path], files: Files) -> None:
    """At start-up any invalid file raises (so `gatewatch up` exits 1); nothing is served half-loaded."""
    store, d = policy_dir
    put(d, {"default": {"version": "d1"}, **files})
    with pytest.raises(PolicyError) as err:
        await store.start()
    assert err.value.errors and store.current is None
    with pytest.raises(PolicyError):
        store.load()
