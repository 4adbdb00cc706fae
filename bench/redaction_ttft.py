"""Streaming TTFT through the gateway with redaction on vs off, and the input-redaction latency.

Runs in one process: a mock upstream (no pacing), and gateways that differ only in their policy:
  off      pii.input/output/events all empty (no redaction at all)
  default  the built-in default (regex engine: request + events redaction, answer untouched)
  output   default + output redaction of the six default entities on the stream (hold-back window)
Prints p50/p99 of client-side TTFT for streamed chat, and of total latency for non-streamed small /
1 KB / 8 KB prompts (default vs off = added redaction latency). Usage: python -m bench.redaction_ttft [-n 300]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from aiohttp import web

from bench.harness import pct
from gatewatch.config import Settings
from gateway.app import create_app
from gateway.auth.keys import create_key
from mock_upstream import MockConfig, MockUpstream

ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS")
POLICIES: dict[str, dict[str, Any]] = {
    "off": {"pii": {"input": {}, "output": {}, "events": {}}},
    "default": {},
    "output": {"pii": {"output": dict.fromkeys(ENTITIES, "redact")}},
}
SENTENCE = "Please review order 1182 for jane.doe@example.com, call (212) 555-0147 if needed. "


class NullEmitter:
    async def start(self) -> None: ...
    async def stop(self, timeout: float = 10.0) -> None: ...
    def status(self) -> dict[str, Any]:
        return {}
    def send(self, key: str, payload: bytes) -> None: ...


async def start_gateway(root: Path, name: str, upstream: str) -> tuple[web.AppRunner, str, str]:
    home = root / name
    (home / "policies").mkdir(parents=True)
    (home / "policies" / "default.yaml").write_text(yaml.safe_dump(POLICIES[name]) if POLICIES[name] else "{}\n")
    settings = Settings.model_validate({"home": str(home), "models": {"m": {"deployments": [
        {"name": "mock", "base_url": upstream}]}}})
    secret, _ = create_key(settings.keys_file, "bench")
    runner = web.AppRunner(create_app(settings, NullEmitter()), access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}/v1", secret


async def one(s: aiohttp.ClientSession, url: str, key: str, body: dict[str, Any]) -> float:
    t0 = time.perf_counter()
    async with s.post(url + "/chat/completions", json=body, headers={"authorization": f"Bearer {key}"}) as r:
        if body.get("stream"):
            async for line in r.content:
                if line.startswith(b"data: ") and b'"content":"' in line and b'"content":""' not in line:
                    t = time.perf_counter() - t0
                    await r.read()
                    return t
            raise RuntimeError("no content delta in the stream")
        await r.read()
        if r.status != 200:
            raise RuntimeError(f"status {r.status}")
        return time.perf_counter() - t0


async def measure(gws: dict[str, tuple[str, str]], body: dict[str, Any], n: int) -> dict[str, list[float]]:
    out: dict[str, list[float]] = {k: [] for k in gws}
    async with aiohttp.ClientSession() as s:
        for url, key in gws.values():  # warm up
            for _ in range(20):
                await one(s, url, key, body)
        for _ in range(n):  # interleaved, so drift hits every variant alike
            for name, (url, key) in gws.items():
                out[name].append(await one(s, url, key, body))
    return out


def report(title: str, res: dict[str, list[float]], base: str = "off") -> None:
    print(f"\n{title}")
    b50 = statistics.median(res[base]) * 1000
    for name, xs in res.items():
        p50, p99 = statistics.median(xs) * 1000, pct(xs, 0.99) * 1000
        print(f"  {name:<8} p50 {p50:7.2f} ms  p99 {p99:7.2f} ms  (p50 vs {base}: {p50 - b50:+.2f} ms)")


async def main(n: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        async with MockUpstream(MockConfig(record_last=0)) as mock:
            runners, gws = [], {}
            for name in POLICIES:
                runner, url, key = await start_gateway(Path(tmp), name, mock.base_url)
                runners.append(runner)
                gws[name] = (url, key)
            no_out = {k: v for k, v in gws.items() if k != "output"}
            chat = [{"role": "user", "content": SENTENCE * 2}]
            report("streaming chat (~170-char prompt with PII), client-side TTFT (first content delta):",
                   await measure(gws, {"model": "m", "stream": True, "messages": chat}, n))
            report("non-streamed chat, small prompt ('Say hello to the team.'), total latency:",
                   await measure(no_out, {"model": "m", "max_tokens": 16,
                                          "messages": [{"role": "user", "content": "Say hello to the team."}]}, n))
            for size in (1024, 8192):
                text = (SENTENCE * (size // len(SENTENCE) + 1))[:size]
                report(f"non-streamed chat, {size // 1024} KB prompt with PII, total latency:",
                       await measure(no_out, {"model": "m", "max_tokens": 16,
                                              "messages": [{"role": "user", "content": text}]}, max(n // 3, 30)))
            for r in runners:
                await r.cleanup()


if __name__ == "__main__":
    logging.basicConfig(level=logging.ERROR)
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-n", type=int, default=300, help="requests per variant")
    asyncio.run(main(ap.parse_args().n))
