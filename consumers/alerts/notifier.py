"""Webhook notifications: generic JSON or Slack-compatible, aiohttp POST with a bounded timeout and a few
retries with backoff. Failures are counted and logged, never raised: the evaluator must keep going.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Mapping, Sequence
from typing import Any

import aiohttp

from consumers.alerts.metrics import AlertMetrics
from consumers.alerts.rules import WebhookConfig
from consumers.alerts.state import Transition

log = logging.getLogger(__name__)
_EMOJI = {"critical": ":red_circle:", "warning": ":large_orange_circle:", "info": ":large_blue_circle:"}


def _iso(ts: Any) -> str | None:
    return None if ts is None else ts.isoformat()


def json_payload(t: Transition) -> dict[str, Any]:
    return {"status": t.state, "alert_id": t.alert_id, "rule": t.rule.id, "metric": t.rule.metric,
            "group": dict(t.group), "value": t.value, "op": t.rule.op, "threshold": t.rule.threshold,
            "severity": t.rule.severity, "started_at": _iso(t.started_at), "resolved_at": _iso(t.resolved_at),
            "summary": t.summary, "labels": dict(t.rule.labels)}


def slack_payload(t: Transition) -> dict[str, Any]:
    icon = ":white_check_mark:" if t.state == "resolved" else _EMOJI.get(t.rule.severity, "")
    text = f"{icon} [{t.state.upper()}] {t.summary}".strip()
    facts = [("Rule", t.rule.id), ("Severity", t.rule.severity), ("Group", t.group_key or "all"),
             ("Value", "n/a" if t.value is None else f"{t.value:.4g}"),
             ("Threshold", f"{t.rule.op} {t.rule.threshold:g}"), ("Started", _iso(t.started_at))]
    if t.resolved_at is not None:
        facts.append(("Resolved", _iso(t.resolved_at)))
    facts += sorted(t.rule.labels.items())
    return {"text": text, "blocks": [
        {"type": "section", "text": {"type": "mrkdwn", "text": text}},
        {"type": "section", "fields": [{"type": "mrkdwn", "text": f"*{k}*\n{v}"} for k, v in facts[:10]]},
    ]}


class WebhookNotifier:
    """POSTs transitions to the named webhooks. ``start()``/``stop()`` own one aiohttp session."""

    def __init__(self, webhooks: Mapping[str, WebhookConfig], metrics: AlertMetrics, *, attempts: int = 3,
                 backoff_s: float = 0.5, max_concurrency: int = 8) -> None:
        self._webhooks = dict(webhooks)
        self.metrics = metrics
        self._attempts = max(1, attempts)
        self._backoff_s = backoff_s
        self._session: aiohttp.ClientSession | None = None
        self._concurrency = asyncio.Semaphore(max_concurrency)  # a burst of transitions is sent a few at a time

    async def start(self) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()

    async def stop(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def send(self, transition: Transition, names: Sequence[str]) -> bool:
        """Notify every named webhook concurrently; True when at least one accepted (or none is named)."""
        if not names:
            return False
        results = await asyncio.gather(*(self._post_bounded(name, transition) for name in names))
        return any(results)

    async def _post_bounded(self, name: str, t: Transition) -> bool:
        async with self._concurrency:
            return await self._post(name, t)

    async def _post(self, name: str, t: Transition) -> bool:
        hook = self._webhooks[name]
        await self.start()
        session = self._session
        if session is None:  # stop() ran meanwhile
            return False
        body = slack_payload(t) if hook.kind == "slack" else json_payload(t)
        timeout = aiohttp.ClientTimeout(total=hook.timeout_s)
        error = ""
        for attempt in range(self._attempts):
            if attempt:
                await asyncio.sleep(self._backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
            try:
                async with session.post(hook.url, json=body, headers=hook.headers, timeout=timeout) as resp:
                    if resp.status < 300:
                        self.metrics.notifications.labels(name, "sent").inc()
                        return True
                    error = f"HTTP {resp.status}"
                    if 400 <= resp.status < 500 and resp.status != 429:
                        break  # the receiver refuses this payload: retrying will not help
            except (aiohttp.ClientError, TimeoutError) as exc:
                error = f"{type(exc).__name__}: {exc}"
        self.metrics.notifications.labels(name, "failed").inc()
        log.warning("alert %s (%s) not delivered to webhook %s: %s", t.rule.id, t.state, name, error)
        return False
