"""The alert state machine per (rule, group): inactive -> pending (``for`` evaluations) -> firing -> resolved.

Pure and synchronous: ``AlertTracker.observe`` takes one evaluation's value and returns the transition
to notify and store, if any. One notification per transition (a firing alert does not fire again while
it stays breached), and no re-fire of the same rule+group within ``cooldown`` after it resolved.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from consumers.alerts.rules import DEFAULT_SUMMARY, OPS, AlertRule, format_duration

Status = Literal["inactive", "pending", "firing"]
_MS = timedelta(milliseconds=1)


@dataclass(frozen=True, slots=True)
class Transition:
    """A firing or resolved alert: what the notifier sends and the ``alerts`` table stores."""

    alert_id: str
    rule: AlertRule
    group: tuple[tuple[str, str], ...]  # (column, value) pairs in group_by order
    state: Literal["firing", "resolved"]
    value: float | None
    started_at: datetime
    resolved_at: datetime | None
    updated_at: datetime  # strictly increasing per alert (the ReplacingMergeTree version)

    @property
    def group_key(self) -> str:
        return group_key(self.group)

    @property
    def summary(self) -> str:
        value = "n/a" if self.value is None else f"{self.value:.4g}"
        fields = {"tenant": "", "model": "", **dict(self.group), "rule": self.rule.id, "metric": self.rule.metric,
                  "op": self.rule.op, "value": value, "threshold": f"{self.rule.threshold:g}",
                  "severity": self.rule.severity, "window": format_duration(self.rule.window),
                  "group": self.group_key or "all"}
        try:
            text = self.rule.summary.format_map(fields)
        except (KeyError, IndexError, ValueError, AttributeError, TypeError):  # validated, but be safe
            text = DEFAULT_SUMMARY.format_map(fields)
        return text if self.state == "firing" else f"[resolved] {text}"


def group_key(group: tuple[tuple[str, str], ...]) -> str:
    return ",".join(f"{k}={v}" for k, v in group)


@dataclass(slots=True)
class _State:
    status: Status = "inactive"
    breaches: int = 0
    alert_id: str = ""
    started_at: datetime | None = None
    resolved_at: datetime | None = None  # of the last alert, for the cooldown
    updated_at: datetime | None = None


@dataclass
class AlertTracker:
    """Holds the state of every (rule id, group) seen; ``firing()`` lists those firing now."""

    _states: dict[tuple[str, tuple[tuple[str, str], ...]], _State] = field(default_factory=dict)
    suppressed: int = 0  # breaches ignored because of a cooldown

    def groups(self, rule_id: str) -> list[tuple[tuple[str, str], ...]]:
        return [g for (r, g), st in self._states.items() if r == rule_id and st.status != "inactive"]

    def firing(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for (rule_id, _), st in self._states.items():
            out[rule_id] = out.get(rule_id, 0) + (st.status == "firing")
        return out

    def prune(self, rule: AlertRule, now: datetime) -> None:
        """Forget inactive groups whose cooldown is over (keeps the state bounded by the live groups)."""
        for key in [k for k, st in self._states.items() if k[0] == rule.id and st.status == "inactive"
                    and (st.resolved_at is None or now - st.resolved_at >= rule.cooldown)]:
            del self._states[key]

    def restore(self, rule_id: str, group: tuple[tuple[str, str], ...], *, alert_id: str, started_at: datetime,
                resolved_at: datetime | None, updated_at: datetime) -> None:
        """Seed a state from the ``alerts`` table at start-up (firing stays firing; resolved keeps cooldown)."""
        st = self._states.setdefault((rule_id, group), _State())
        if st.updated_at is not None and st.updated_at >= updated_at:
            return
        st.alert_id, st.started_at, st.updated_at = alert_id, started_at, updated_at
        st.status = "inactive" if resolved_at else "firing"
        st.resolved_at, st.breaches = resolved_at, 0

    def observe(self, rule: AlertRule, group: tuple[tuple[str, str], ...], value: float | None,
                now: datetime, wall: datetime) -> Transition | None:
        """One evaluation of ``rule`` for ``group`` (value None = no data = not breached)."""
        st = self._states.setdefault((rule.id, group), _State())
        breached = value is not None and OPS[rule.op](value, rule.threshold)
        if st.status == "firing":
            if breached:
                return None  # dedup: already notified
            st.status, st.breaches, st.resolved_at = "inactive", 0, now
            return self._transition(rule, group, st, "resolved", value, wall)
        if not breached:
            st.status, st.breaches = "inactive", 0
            return None
        if st.resolved_at is not None and now - st.resolved_at < rule.cooldown:
            self.suppressed += 1
            return None
        st.breaches += 1
        if st.breaches <= rule.for_:
            st.status = "pending"
            return None
        st.status, st.started_at, st.resolved_at = "firing", now, None
        st.alert_id = alert_id(rule.id, group, now)
        return self._transition(rule, group, st, "firing", value, wall)

    @staticmethod
    def _transition(rule: AlertRule, group: tuple[tuple[str, str], ...], st: _State,
                    state: Literal["firing", "resolved"], value: float | None, wall: datetime) -> Transition:
        updated = wall if st.updated_at is None or wall > st.updated_at else st.updated_at + _MS
        st.updated_at = updated
        started = st.started_at or wall
        return Transition(st.alert_id, rule, group, state, value, started, st.resolved_at, updated)


def alert_id(rule_id: str, group: tuple[tuple[str, str], ...], started_at: datetime) -> str:
    raw = f"{rule_id}\x1f{group_key(group)}\x1f{started_at.isoformat()}"
    return hashlib.sha256(raw.encode()).hexdigest()[:32]
