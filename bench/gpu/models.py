"""Random-weight models of the real scorer architectures, built offline from configs written here.

Speed depends on the architecture, not the weights. The tokenizer is a WordPiece tokenizer over a
generated vocabulary (30,522 entries, the size of bert-base-uncased's), saved at run time.
"""

from __future__ import annotations

import itertools
import json
import random
from pathlib import Path

import torch

CONSONANTS = "bcdfghklmnprstvz"
VOWELS = "aeiou"
SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
DETOXIFY_CLASSES = ["toxic", "severe_toxic", "obscene", "threat", "insult", "identity_hate"]
BERT_BASE = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
             "intermediate_size": 3072, "max_position_embeddings": 512, "type_vocab_size": 2}
MINILM_L6 = {"vocab_size": 30522, "hidden_size": 384, "num_hidden_layers": 6, "num_attention_heads": 12,
             "intermediate_size": 1536, "max_position_embeddings": 512, "type_vocab_size": 2}
DEBERTA_V3_XSMALL = {"vocab_size": 128100, "hidden_size": 384, "num_hidden_layers": 12, "num_attention_heads": 6,
                     "intermediate_size": 1536, "max_position_embeddings": 512, "relative_attention": True,
                     "position_buckets": 256, "norm_rel_ebd": "layer_norm", "share_att_key": True,
                     "pos_att_type": ["p2c", "c2p"], "layer_norm_eps": 1e-7, "max_relative_positions": -1,
                     "position_biased_input": False, "type_vocab_size": 0}
# --tiny: the same architectures with negligible compute, so a CPU profile shows the scorer overhead
TINY = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 64}


def vocabulary(size: int = 30522) -> tuple[list[str], list[str]]:
    """(vocab, words): syllable words so that one word is one token."""
    syll = [c + v for c in CONSONANTS for v in VOWELS]
    words = syll + ["".join(p) for p in itertools.product(syll, repeat=2)]
    words += ["".join(p) for p in itertools.product(syll, repeat=3)]
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'-")
    head = SPECIALS + chars + [f"##{c}" for c in chars]
    words = words[: size - len(head)]
    return head + words, words


def write_tokenizer(directory: Path, vocab: list[str]) -> None:
    from transformers import BertTokenizer

    directory.mkdir(parents=True, exist_ok=True)
    (directory / "vocab.txt").write_text("\n".join(vocab) + "\n")
    BertTokenizer(vocab_file=str(directory / "vocab.txt")).save_pretrained(directory)


def build_all(workdir: Path, vocab: list[str], tiny: bool = False) -> dict[str, Path]:
    """Detoxify-original checkpoint + base dir, a MiniLM-L6 sentence-transformers dir, a DeBERTa-v3-xsmall NLI dir.

    ``tiny``: same classes, tokenizers and vocabularies with ``TINY`` dims (built under ``workdir/tiny``).
    """
    from transformers import (
        BertConfig,
        BertForSequenceClassification,
        BertModel,
        DebertaV2Config,
        DebertaV2ForSequenceClassification,
    )

    torch.manual_seed(0)
    dims = TINY if tiny else {}
    bert_base, minilm, deberta = ({**c, **dims} for c in (BERT_BASE, MINILM_L6, DEBERTA_V3_XSMALL))
    workdir = workdir / "tiny" if tiny else workdir
    out = {"base": workdir / "bert-base-uncased", "ckpt": workdir / "toxic_original-random.ckpt",
           "minilm": workdir / "all-MiniLM-L6-random", "nli": workdir / "nli-deberta-v3-xsmall-random"}
    if all(p.exists() for p in out.values()):
        return out
    write_tokenizer(out["base"], vocab)
    BertConfig(**bert_base, num_labels=6).save_pretrained(out["base"])
    model = BertForSequenceClassification(BertConfig(**bert_base, num_labels=6))
    args = {"model_type": "bert-base-uncased", "model_name": "BertForSequenceClassification",
            "tokenizer_name": "BertTokenizer", "num_classes": 6}
    torch.save({"config": {"arch": {"args": args}, "dataset": {"args": {"classes": DETOXIFY_CLASSES}}},
                "state_dict": model.state_dict()}, out["ckpt"])

    st = out["minilm"]
    write_tokenizer(st, vocab)
    BertModel(BertConfig(**minilm)).save_pretrained(st)
    (st / "1_Pooling").mkdir(exist_ok=True)
    (st / "1_Pooling" / "config.json").write_text(json.dumps(
        {"word_embedding_dimension": minilm["hidden_size"], "pooling_mode_mean_tokens": True}))
    (st / "2_Normalize").mkdir(exist_ok=True)
    (st / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 256, "do_lower_case": False}))
    (st / "modules.json").write_text(json.dumps([
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]))

    labels = {0: "contradiction", 1: "entailment", 2: "neutral"}
    nli_cfg = DebertaV2Config(**deberta, num_labels=3, id2label=labels,
                              label2id={v: k for k, v in labels.items()})
    write_tokenizer(out["nli"], vocab)
    DebertaV2ForSequenceClassification(nli_cfg).save_pretrained(out["nli"])
    return out


def sentence(words: list[str], rnd: random.Random, n_words: int) -> str:
    """~n_words tokens of text, split into sentences of 10-25 words."""
    parts, left = [], n_words
    while left > 0:
        k = min(left, rnd.randint(10, 25))
        parts.append(" ".join(rnd.choice(words) for _ in range(k)) + ".")
        left -= k + 1
    return " ".join(parts)
