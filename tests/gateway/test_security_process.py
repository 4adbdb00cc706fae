"""The real `gatewatch gateway` process under attack, its log read as an operator would: no credential in
any line (DEBUG included), and one event handed to the emitter per answered exchange."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import aiohttp
import orjson
import pytest
import yaml

from gatewatch.procs import free_port
from mock_upstream import MockUpstream
from schemas.logsafe import REDACTED, SecretsFilter, scrub

from .test_security import raw_request

pytestmark = pytest.mark.timeout(120)
CHAT = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hello"}]}
UPSTREAM_KEY = "sk-proj-upstreamSecretValue0123456789"


def _emitted(metrics: str) -> float:
    m = re.search(r"^gatewatch_emitter_events_emitted_total (\S+)$", metrics, re.M)
    return float(m[1]) if m else 0.0


async def test_gateway_process_logs_no_secret_and_audits_every_answer(tmp_path: Path, mock: MockUpstream) -> None:
    port = free_port()
    home = tmp_path / "home"
    (tmp_path / "key").write_text(UPSTREAM_KEY)
    cfg = {"kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}"},  # no broker: events spool
           "gateway": {"port": port},
           "models": {"gpt-4o-mini": {"deployments": [{"name": "mock", "base_url": mock.base_url,
                                                       "api_key_file": str(tmp_path / "key")}]},
                      "*": {"deployments": [{"name": "any", "base_url": mock.base_url}]}}}
    (tmp_path / "g.yaml").write_text(yaml.safe_dump(cfg))
    env = {**os.environ, "GATEWATCH_HOME": str(home), "PYTHONUNBUFFERED": "1"}
    base = [sys.executable, "-m", "gatewatch", "-c", str(tmp_path / "g.yaml")]
    made = await asyncio.create_subprocess_exec(*base, "keys", "create", "--tenant", "acme", env=env,
                                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, _ = await asyncio.wait_for(made.communicate(), 60)
    assert made.returncode == 0
    key = out.decode().strip()
    log_path = tmp_path / "gateway.log"
    with log_path.open("w") as log_file:
        proc = await asyncio.create_subprocess_exec(*base, "--log-level", "DEBUG", "gateway", stdout=log_file,
                                                    stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        async with aiohttp.ClientSession() as s:
            for _ in range(300):
                try:
                    async with s.get(url + "/readyz") as r:
                        if r.status == 200:
                            break
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
            else:
                raise AssertionError(log_path.read_text()[-3000:])
            auth = (b"Authorization", b"Bearer " + key.encode())
            attacks = [
                [auth, (b"x-gatewatch-end-user", b"caf\xe9")],
                [auth, (b"x-gatewatch-meta-team", b"\xff")],
                [(b"Authorization", b"Bearer " + key.encode() + b"\xff")],
                [(b"api-key", key.encode()[:-2] + b"zz")],  # a wrong key
                [auth],
            ]
            answered = 0
            for stream in (False, True):
                for headers in attacks:
                    status, _ = await raw_request(url, "/v1/chat/completions", headers,
                                                  orjson.dumps({**CHAT, "stream": stream}))
                    assert status in (200, 400, 401)
                    answered += 1
            many = [f"model-{i}-" + "x" * 2000 for i in range(5)]  # the catch-all route takes any name
            for name in many:
                status, _ = await raw_request(url, "/v1/chat/completions", [auth],
                                              orjson.dumps({**CHAT, "model": name}))
                assert status == 200
                answered += 1
            for _ in range(50):
                async with s.get(url + "/metrics") as r:
                    metrics = await r.text()
                if _emitted(metrics) >= answered:
                    break
                await asyncio.sleep(0.1)
            assert _emitted(metrics) == answered, "every answered exchange hands its event to the emitter"
            assert not any(name in metrics for name in many), "client model names became metric labels"
            assert 'model="other"' in metrics
    finally:
        proc.terminate()
        await asyncio.wait_for(proc.wait(), 30)
    text = log_path.read_text()
    assert "gateway ready" in text  # the log was written at all
    for secret in (key, key[3:], UPSTREAM_KEY):
        assert secret not in text


@pytest.mark.parametrize("line", [
    "headers=<CIMultiDictProxy('Host': 'x', 'Authorization': 'Bearer gw-AbCdEf0123456789xyzXYZ', 'A': 'b')>",
    "{'authorization': 'Bearer gw-AbCdEf0123456789xyzXYZ'}",
    "Authorization: Basic dXNlcjpwYXNzd29yZA==",
    "api-key=gw-AbCdEf0123456789xyzXYZ&x=1",
    "'api-key': 'not-prefixed-secret'",
    "upstream said: invalid key sk-proj-AbCdEf0123456789xyzXYZ",
    "Cookie: session=abcdef0123456789",
    "token gwc-AbCdEf0123456789xyzXYZ in a sentence",
])
def test_scrub_removes_credentials(line: str) -> None:
    out = scrub(line)
    assert REDACTED in out
    for secret in ("gw-AbCdEf0123456789xyzXYZ", "dXNlcjpwYXNzd29yZA==", "not-prefixed-secret",
                   "sk-proj-AbCdEf0123456789xyzXYZ", "session=abcdef0123456789", "gwc-AbCdEf0123456789xyzXYZ"):
        assert secret not in out


def test_scrub_keeps_ordinary_text() -> None:
    line = "policy reloaded (file change): default=builtin, acme=v2; 3 events spooled"
    assert scrub(line) == line


def _fail(secret: str) -> None:
    raise ValueError(f"bad key {secret}")


def test_filter_scrubs_message_arguments_and_tracebacks() -> None:
    secret = "gw-" + "Q" * 40
    record_holder: list[str] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            record_holder.append(self.format(record))

    handler = Keep()
    handler.addFilter(SecretsFilter())
    logger = logging.getLogger("tests.logsafe")
    logger.addHandler(handler)
    logger.propagate = False
    try:
        logger.error("request %r", {"authorization": f"Bearer {secret}"})
        try:
            _fail(secret)
        except ValueError:
            logger.exception("step failed")
    finally:
        logger.removeHandler(handler)
        logger.propagate = True
    assert len(record_holder) == 2
    assert "Traceback" in record_holder[1] and "ValueError" in record_holder[1]
    for line in record_holder:
        assert secret not in line
