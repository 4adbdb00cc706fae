"""Redactor: detect PII with a prebuilt presidio engine in a thread pool, replace it per action.

Fail closed everywhere: oversize input, a timeout (waiting for a worker included), a regex that runs
out of budget, or any engine error raises ``RedactionFailed``; the unredacted text is never returned.
"""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from presidio_analyzer.nlp_engine import NlpArtifacts

from gateway.redaction.cache import DetectionCache
from gateway.redaction.config import Action, RedactionConfig
from gateway.redaction.engines import LANGUAGE, Engine, EngineRegistry, default_registry
from gateway.redaction.errors import PIIBlocked, RedactionFailed, RedactionInputTooLarge
from gateway.redaction.normalize import OffsetMap, map_spans, normalize
from gateway.redaction.operators import Hasher, PseudonymMap, operator_for
from gateway.redaction.pool import WorkerPool
from gateway.redaction.prefilter import possible_entities
from gateway.redaction.recognizers import RegexBudget
from gateway.redaction.spans import Span, resolve_overlaps

PHONE = "PHONE_NUMBER"


@dataclass(frozen=True, slots=True)
class RedactedSpan:
    """Where an entity was and what was done to it. Never holds the value."""

    entity_type: str
    start: int  # in the input text
    end: int
    out_start: int  # in the output text
    out_end: int
    action: Action
    score: float


@dataclass(frozen=True, slots=True)
class RedactionResult:
    text: str
    counts: dict[str, int]  # entity type -> number replaced (what events carry)
    spans: tuple[RedactedSpan, ...]
    pseudonyms: PseudonymMap | None = None  # set when an entity was pseudonymized


class Redactor:
    """One per redaction config (tenant policy). Build at start: a NER engine takes seconds to load.

    ``executor``: share one pool across redactors; when omitted the redactor owns one with
    ``max_concurrency`` threads. Use as ``async with`` or call ``close()`` (idempotent).
    """

    def __init__(
        self,
        cfg: RedactionConfig,
        *,
        engines: EngineRegistry | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.cfg = cfg
        self._entity_cache: dict[int, tuple[Mapping[str, Action], tuple[str, ...]]] = {}
        self._checked: dict[int, Mapping[str, Action]] = {}
        self._engine: Engine = (engines if engines is not None else default_registry()).get(cfg)
        self._check_supported(cfg.entities)
        secret = cfg.hash_secret.get_secret_value().encode() if cfg.hash_secret else os.urandom(32)
        self._hasher = Hasher(secret)
        self._pool = WorkerPool(cfg.max_concurrency, cfg.timeout_s, executor)
        self._cache = DetectionCache(cfg.cache_entries) if cfg.cache_entries > 0 else None

    async def __aenter__(self) -> Redactor:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        self._pool.close()

    @property
    def holdback_chars(self) -> int:
        return self.cfg.stream_holdback_chars

    # ---- async API -------------------------------------------------------------------------
    async def redact(
        self,
        text: str,
        actions: Mapping[str, Action] | None = None,
        *,
        pseudonyms: PseudonymMap | None = None,
        scope: str | None = None,
    ) -> RedactionResult:
        """Detect and replace PII in ``text``. ``actions`` replaces the config's entity map."""
        return (await self.redact_many([text], actions, pseudonyms=pseudonyms, scope=scope))[0]

    async def redact_many(
        self,
        texts: Sequence[str],
        actions: Mapping[str, Action] | None = None,
        *,
        pseudonyms: PseudonymMap | None = None,
        scope: str | None = None,
    ) -> list[RedactionResult]:
        """Several strings of one request in one worker call; pseudonyms are shared across them.
        ``scope`` (the tenant): detections are cached and reused within it; None = no cache."""
        acts = self._actions(actions)
        self._check_size(texts)
        if pseudonyms is None and "pseudonymize" in acts.values():
            pseudonyms = PseudonymMap()

        def work() -> list[RedactionResult]:
            found = self.detect_sync(texts, acts, scope)
            return [self.apply(t, s, acts, pseudonyms) for t, s in zip(texts, found, strict=True)]

        if self.cfg.engine == "regex" and sum(len(t) for t in texts) <= self.cfg.inline_max_chars:
            return self._pool.inline(work)
        return await self._pool.run(work)

    async def detect(self, text: str, actions: Mapping[str, Action] | None = None) -> list[Span]:
        """Spans (sorted, non-overlapping) of the entities to act on. For streams; no replacement."""
        acts = self._actions(actions)
        self._check_size([text])
        return (await self._pool.run(lambda: self.detect_sync([text], acts)))[0]

    # ---- sync core (runs in a worker thread) --------------------------------------------
    def detect_sync(self, texts: Sequence[str], actions: Mapping[str, Action],
                    scope: str | None = None) -> list[list[Span]]:
        """Spans per text, in the text's own offsets. Detection (prefilter, NLP, recognizers) sees each text
        normalised (``normalize.normalize``: full-width forms, other scripts' digits, Unicode spaces and
        dashes, format characters removed); the spans are mapped back to the original characters. The
        cache is keyed on the original text and holds the mapped-back spans."""
        entities = self._entities(actions)
        if not entities:
            return [[] for _ in texts]
        cache = self._cache if scope is not None else None
        out: list[list[Span]] = [[] for _ in texts]
        # (index, entities it can hold, cache key, normalised text, map back)
        todo: list[tuple[int, list[str], bytes | None, str, OffsetMap | None]] = []
        for i, text in enumerate(texts):
            seen, offsets = normalize(text)  # (text, None) for ASCII: no cost
            possible = possible_entities(seen, entities, self._engine.prefiltered)
            if not possible:
                continue  # nothing can match: no NLP pass, no analyzer, nothing worth caching
            key = None
            if cache is not None:
                key = cache.key(scope, entities, text)  # type: ignore[arg-type]
                hit = cache.get(key)
                if hit is not None:
                    out[i] = list(hit)
                    continue
            todo.append((i, possible, key, seen, offsets))
        if not todo:
            return out
        artifacts = self._nlp([seen for _, _, _, seen, _ in todo])
        with RegexBudget(self.cfg.timeout_s):  # raises on leaving when a regex ran out of time
            for (i, possible, _, seen, offsets), art in zip(todo, artifacts, strict=True):
                # overlaps are resolved after mapping: two spans can share one expanded character
                out[i] = resolve_overlaps(map_spans(self._analyze(seen, possible, art), offsets))
        if cache is not None:  # only now: presidio swallows a regex timeout, leaving partial spans
            for i, _, key, _, _ in todo:
                cache.put(key, tuple(out[i]))  # type: ignore[arg-type]
        return out

    def _nlp(self, texts: list[str]) -> list[NlpArtifacts]:
        nlp_engine = self._engine.analyzer.nlp_engine
        if self.cfg.engine == "ner" and len(texts) > 1:  # one spaCy pass over the batch
            return [a for _, a in nlp_engine.process_batch(texts, LANGUAGE, batch_size=min(len(texts), 32))]
        return [nlp_engine.process_text(t, LANGUAGE) for t in texts]

    def _analyze(self, text: str, entities: Sequence[str], nlp_artifacts: NlpArtifacts) -> list[Span]:
        """``entities``: those ``possible_entities`` left. Phone numbers last, on the text with the other
        entities blanked out: phonenumbers parses every digit run once per region (most of the regex
        engine's time), and a phone match inside a card, IBAN or IP span would merge into that span anyway."""
        analyzer = self._engine.analyzer
        first = [e for e in entities if e != PHONE]
        spans: list[Span] = []
        for batch in (first, [PHONE] if PHONE in entities else []):
            if not batch:
                continue
            seen = _blank(text, spans) if spans else text
            results = analyzer.analyze(text=seen, language=LANGUAGE, entities=batch, score_threshold=0.0,
                                       nlp_artifacts=nlp_artifacts)
            spans.extend(Span(r.entity_type, r.start, r.end, r.score) for r in results
                         if r.end > r.start and r.score >= self.cfg.threshold_for(r.entity_type))
        return spans

    def apply(
        self,
        text: str,
        spans: Sequence[Span],
        actions: Mapping[str, Action],
        pseudonyms: PseudonymMap | None = None,
    ) -> RedactionResult:
        """Replace ``spans`` (sorted, non-overlapping) in ``text``. Pure apart from ``pseudonyms``."""
        acting = [s for s in spans if actions.get(s.entity_type, "allow") != "allow"]
        blocked = {s.entity_type for s in acting if actions[s.entity_type] == "block"}
        if blocked:
            raise PIIBlocked(blocked)
        parts: list[str] = []
        done: list[RedactedSpan] = []
        pos = out_len = 0
        for s in acting:
            action = actions[s.entity_type]
            parts.append(text[pos:s.start])
            out_len += s.start - pos
            new = operator_for(action, self._hasher, pseudonyms)(s.entity_type, text[s.start:s.end])
            parts.append(new)
            done.append(RedactedSpan(s.entity_type, s.start, s.end, out_len, out_len + len(new), action, s.score))
            out_len += len(new)
            pos = s.end
        parts.append(text[pos:])
        counts = dict(Counter(s.entity_type for s in done))
        used = pseudonyms if any(s.action == "pseudonymize" for s in done) else None
        return RedactionResult("".join(parts), counts, tuple(done), used)

    # ---- helpers ----------------------------------------------------------------------------
    def actions(self, actions: Mapping[str, Action] | None = None) -> Mapping[str, Action]:
        """The entity -> action map a call would use (validated against the engine)."""
        return self._actions(actions)

    def _entities(self, actions: Mapping[str, Action]) -> tuple[str, ...]:
        """detected_entities(actions), cached per actions object (policies pass the same map each time;
        the cache keeps a reference, so an id is never reused while cached)."""
        hit = self._entity_cache.get(id(actions))
        if hit is not None and hit[0] is actions:
            return hit[1]
        entities = self.cfg.detected_entities(actions)
        if len(self._entity_cache) >= 256:
            self._entity_cache.clear()
        self._entity_cache[id(actions)] = (actions, entities)
        return entities

    def _actions(self, actions: Mapping[str, Action] | None) -> Mapping[str, Action]:
        if actions is None:
            return self.cfg.entities
        if self._checked.get(id(actions)) is actions:
            return actions  # checked when first seen
        try:
            self._check_supported(actions)
        except ValueError as exc:  # a caller's bad map must not pass text through unredacted
            raise RedactionFailed(str(exc)) from exc
        if len(self._checked) >= 256:
            self._checked.clear()
        self._checked[id(actions)] = actions  # keeps a reference: the id cannot be reused meanwhile
        return actions

    def _check_supported(self, actions: Mapping[str, Action]) -> None:
        missing = sorted(set(self.cfg.detected_entities(actions)) - self._engine.supported)
        if missing:
            raise ValueError(f"the {self.cfg.engine} PII engine cannot detect {missing}")

    def _check_size(self, texts: Sequence[str]) -> None:
        total = sum(len(t) for t in texts)
        if total > self.cfg.max_input_chars:
            raise RedactionInputTooLarge(
                f"The text to check for PII ({total:,} characters) is more than this tenant's policy allows "
                f"({self.cfg.max_input_chars:,}, pii.max_input_chars); send less text.")


def _blank(text: str, spans: Sequence[Span]) -> str:
    """``text`` with every span replaced by spaces (same length, so offsets stay valid)."""
    parts, pos = [], 0
    for s in sorted(spans, key=lambda s: s.start):
        if s.start >= pos:
            parts += [text[pos:s.start], " " * (s.end - s.start)]
            pos = s.end
        elif s.end > pos:
            parts.append(" " * (s.end - pos))
            pos = s.end
    parts.append(text[pos:])
    return "".join(parts)

