"""presidio AnalyzerEngines, built once per process per distinct (engine kind, model, recognizers).

- regex engine: presidio's ``no_op`` NLP engine, pattern + checksum recognizers only (no PERSON).
- ner engine: spaCy (``ner_model``, loaded from an installed package, never downloaded) + the same
  pattern recognizers + presidio's SpacyRecognizer for PERSON (and LOCATION, NRP, DATE_TIME).
The NLP engine (the expensive part: a spaCy model) is shared by every analyzer that uses the model.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from presidio_analyzer import AnalyzerEngine, PatternRecognizer, RecognizerRegistry
from presidio_analyzer.nlp_engine import NlpEngine, NlpEngineProvider
from presidio_analyzer.predefined_recognizers import EmailRecognizer, PhoneRecognizer

from gateway.redaction.config import EngineKind, RedactionConfig
from gateway.redaction.phone import WindowedPhoneRecognizer
from gateway.redaction.predefined import adopt
from gateway.redaction.prefilter import prefilterable
from gateway.redaction.recognizers import OfflineEmailRecognizer, build_custom_recognizer, guard_patterns

log = logging.getLogger(__name__)

LANGUAGE = "en"
_WARM_UP = "Ann Lee <ann.lee@example.com>, +1 212-555-0199, 10.0.0.1"


@dataclass(frozen=True, slots=True)
class EngineKey:
    kind: EngineKind
    model: str  # "no_op" for the regex engine
    labels_to_ignore: tuple[str, ...]
    custom: str  # canonical JSON of the custom recognizers ("" when none)
    phone_regions: tuple[str, ...] = PhoneRecognizer.DEFAULT_SUPPORTED_REGIONS

    @classmethod
    def from_config(cls, cfg: RedactionConfig) -> EngineKey:
        custom = "" if not cfg.custom_recognizers else "[" + ",".join(
            r.model_dump_json() for r in cfg.custom_recognizers) + "]"
        if cfg.engine == "regex":
            return cls("regex", "no_op", (), custom, cfg.phone_regions)
        return cls("ner", cfg.ner_model, tuple(sorted(cfg.ner_labels_to_ignore)), custom, cfg.phone_regions)


@dataclass(frozen=True, slots=True)
class Engine:
    """A built analyzer and what it can detect."""

    key: EngineKey
    analyzer: AnalyzerEngine
    supported: frozenset[str]
    # entities reported only by a built-in recognizer that declares its precondition (prefilter.py)
    prefiltered: frozenset[str] = frozenset()


def _nlp_configuration(key: EngineKey) -> dict[str, object]:
    if key.kind == "regex":
        return {"nlp_engine_name": "no_op", "models": [{"lang_code": LANGUAGE, "model_name": "no_op"}]}
    return {
        "nlp_engine_name": "spacy",
        "models": [{"lang_code": LANGUAGE, "model_name": key.model}],
        "ner_model_configuration": {"labels_to_ignore": list(key.labels_to_ignore)},
    }


def build_nlp_engine(key: EngineKey) -> NlpEngine:
    if key.kind == "ner":
        _require_installed_model(key.model)
    return NlpEngineProvider(nlp_configuration=_nlp_configuration(key)).create_engine()


def _require_installed_model(model: str) -> None:
    # presidio's SpacyNlpEngine calls spacy.cli.download for a model it cannot find: refuse first.
    import spacy.util

    if not spacy.util.is_package(model) and not Path(model).exists():
        raise ValueError(f"spaCy model {model!r} is not installed (install its wheel; nothing is downloaded)")


def build_analyzer(key: EngineKey, nlp_engine: NlpEngine, cfg: RedactionConfig) -> Engine:
    registry = RecognizerRegistry(supported_languages=[LANGUAGE])
    registry.load_predefined_recognizers(languages=[LANGUAGE], nlp_engine=nlp_engine)
    replaced = (EmailRecognizer, PhoneRecognizer)
    # adopt: presidio's recognizers the prefilter knows get their declared preconditions (predefined.py)
    registry.recognizers = [adopt(r) for r in registry.recognizers if not isinstance(r, replaced)]
    registry.add_recognizer(OfflineEmailRecognizer())
    registry.add_recognizer(WindowedPhoneRecognizer(supported_regions=key.phone_regions))
    for custom in cfg.custom_recognizers:
        registry.add_recognizer(build_custom_recognizer(custom))
    for recognizer in registry.recognizers:
        if isinstance(recognizer, PatternRecognizer):
            guard_patterns(recognizer)
    analyzer = AnalyzerEngine(registry=registry, nlp_engine=nlp_engine, supported_languages=[LANGUAGE])
    supported = frozenset(analyzer.get_supported_entities(language=LANGUAGE))
    analyzer.analyze(_WARM_UP, language=LANGUAGE)  # loads lazy parts (public-suffix snapshot) now
    return Engine(key=key, analyzer=analyzer, supported=supported,
                  prefiltered=prefilterable(list(registry.recognizers)))


class EngineRegistry:
    """Builds each distinct engine once; thread-safe; meant to be filled at start (``get`` is slow
    the first time for a NER model: seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._nlp: dict[tuple[str, str, tuple[str, ...]], NlpEngine] = {}
        self._engines: dict[EngineKey, Engine] = {}

    def get(self, cfg: RedactionConfig) -> Engine:
        key = EngineKey.from_config(cfg)
        with self._lock:
            engine = self._engines.get(key)
            if engine is None:
                nlp_key = (key.kind, key.model, key.labels_to_ignore)
                nlp = self._nlp.get(nlp_key)
                if nlp is None:
                    nlp = self._nlp[nlp_key] = build_nlp_engine(key)
                    log.info("PII NLP engine loaded: %s %s", key.kind, key.model)
                engine = self._engines[key] = build_analyzer(key, nlp, cfg)
            return engine

    def __len__(self) -> int:
        return len(self._engines)


_default_registry = EngineRegistry()


def default_registry() -> EngineRegistry:
    """The process-wide registry (one per process so a spaCy model is loaded once)."""
    return _default_registry
