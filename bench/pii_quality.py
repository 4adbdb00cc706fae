"""PII redaction quality: per-entity recall and precision of both engines on presidio's synthetic set.

    .venv/bin/python bench/pii_quality.py [--engine regex|ner|both] [--limit N] [--every K]

Matching: a gold span counts as found (recall) when a predicted span of the same type overlaps it;
a predicted span counts as correct (precision) when it overlaps a gold span of the same type.
Only the entity types an engine is configured for are scored. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gateway.redaction import RedactionConfig, Redactor  # noqa: E402

DATASET = ROOT / ".." / "shared" / "data" / "pii" / "presidio_synth_dataset_v2.json"
REGEX_ENTITIES = ("EMAIL_ADDRESS", "PHONE_NUMBER", "CREDIT_CARD", "US_SSN", "IBAN_CODE", "IP_ADDRESS")
NER_ENTITIES = ("PERSON", *REGEX_ENTITIES)
# dataset label -> presidio entity type (the set already uses presidio's names; aliases for other sets)
LABELS = {"SSN": "US_SSN", "IBAN": "IBAN_CODE", "EMAIL": "EMAIL_ADDRESS", "PHONE": "PHONE_NUMBER",
          "IP": "IP_ADDRESS", "PER": "PERSON"}
BATCH = 32


@dataclass
class Tally:
    gold: int = 0
    gold_found: int = 0
    pred: int = 0
    pred_correct: int = 0

    @property
    def recall(self) -> float:
        return self.gold_found / self.gold if self.gold else float("nan")

    @property
    def precision(self) -> float:
        return self.pred_correct / self.pred if self.pred else float("nan")


@dataclass
class Report:
    tallies: dict[str, Tally] = field(default_factory=dict)
    seconds: float = 0.0
    texts: int = 0


def load(path: Path = DATASET, *, limit: int | None = None, every: int = 1) -> list[dict]:
    records = json.loads(path.read_text())[::every]
    return records[:limit] if limit else records


def gold_spans(record: dict) -> list[tuple[str, int, int]]:
    return [(LABELS.get(s["entity_type"], s["entity_type"]), s["start_position"], s["end_position"])
            for s in record["spans"]]


def _overlaps(a: tuple[str, int, int], b: tuple[str, int, int]) -> bool:
    return a[0] == b[0] and a[1] < b[2] and b[1] < a[2]


def evaluate(redactor: Redactor, records: Sequence[dict], *, progress: bool = False) -> Report:
    entities = redactor.cfg.detected_entities()
    report = Report(tallies={e: Tally() for e in entities}, texts=len(records))
    started = time.perf_counter()
    for i in range(0, len(records), BATCH):
        batch = records[i:i + BATCH]
        found = redactor.detect_sync([r["full_text"] for r in batch], redactor.cfg.entities)
        for record, spans in zip(batch, found, strict=True):
            gold = [g for g in gold_spans(record) if g[0] in report.tallies]
            pred = [(s.entity_type, s.start, s.end) for s in spans]
            for g in gold:
                t = report.tallies[g[0]]
                t.gold += 1
                t.gold_found += any(_overlaps(g, p) for p in pred)
            for p in pred:
                t = report.tallies[p[0]]
                t.pred += 1
                t.pred_correct += any(_overlaps(p, g) for g in gold)
        if progress:
            print(f"\r  {min(i + BATCH, len(records))}/{len(records)}", end="", file=sys.stderr, flush=True)
    if progress:
        print(file=sys.stderr)
    report.seconds = time.perf_counter() - started
    return report


def build(engine: str) -> Redactor:
    entities = REGEX_ENTITIES if engine == "regex" else NER_ENTITIES
    return Redactor(RedactionConfig(engine=engine, entities=dict.fromkeys(entities, "redact")))  # type: ignore[arg-type]


def print_report(engine: str, report: Report) -> None:
    print(f"\n{engine} engine: {report.texts} texts in {report.seconds:.1f} s "
          f"({1000 * report.seconds / max(report.texts, 1):.1f} ms/text)")
    print(f"{'entity':<15}{'gold':>6}{'recall':>9}{'pred':>6}{'precision':>11}")
    for entity, t in sorted(report.tallies.items()):
        print(f"{entity:<15}{t.gold:>6}{t.recall:>9.3f}{t.pred:>6}{t.precision:>11.3f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", choices=["regex", "ner", "both"], default="both")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--every", type=int, default=1, help="take every K-th record")
    args = parser.parse_args()
    records = load(limit=args.limit, every=args.every)
    for engine in ("regex", "ner") if args.engine == "both" else (args.engine,):
        print(f"building the {engine} engine ...", file=sys.stderr)
        redactor = build(engine)
        print_report(engine, evaluate(redactor, records, progress=True))


if __name__ == "__main__":
    main()
