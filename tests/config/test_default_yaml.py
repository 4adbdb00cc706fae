"""The default gatewatch.yaml (written where none exists; committed as docs/gatewatch.default.yaml) is
rendered from the configuration models: one source of defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from gatewatch.config import DEFAULT_HEADER, Settings, default_config_yaml, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_committed_default_file_is_the_rendered_one() -> None:
    assert (ROOT / "docs" / "gatewatch.default.yaml").read_text() == default_config_yaml(), \
        "docs/gatewatch.default.yaml is stale: run python scripts/default_config.py"


def test_default_file_means_the_models_defaults(tmp_path: Path) -> None:
    path = tmp_path / "gatewatch.yaml"
    path.write_text(default_config_yaml())
    assert load_settings(path, {}) == Settings()


def _uncommented(text: str) -> Any:
    """The rendered file with every ``# `` prefix removed (header skipped): the defaults written out."""
    body = [line[2:] for line in text.splitlines() if line.startswith("# ")]
    header = len(DEFAULT_HEADER.splitlines())
    return yaml.safe_load("\n".join(body[header:]))


def _leaves(tree: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(tree, dict) and tree:
        return {k: v for key, sub in tree.items() for k, v in _leaves(sub, f"{prefix}{key}.").items()}
    return {prefix.rstrip("."): tree}


def test_every_field_is_shown_with_its_default() -> None:
    raw = _uncommented(default_config_yaml(examples=False))
    shown = Settings.model_validate(raw).model_dump(mode="json")
    defaults = Settings().model_dump(mode="json")
    assert _leaves(shown).keys() == _leaves(defaults).keys()
    differ = {k for k, v in _leaves(shown).items() if _leaves(defaults)[k] != v}
    # an explicit retain_group (null) keeps the embedded broker's retention off; install paths are shown as text
    assert differ <= {"gateway.emitter.retain_group", "worker.scorers.factuality.embed_model",
                      "worker.scorers.drift.embed_model"}, differ


def test_descriptions_and_examples_are_kept() -> None:
    text = default_config_yaml()
    for fragment in ("deeper is a 400", "400 too_many_items above", "full | hashes | none",
                     "`gatewatch up` starts an embedded Tansu", "built-in mock upstream",
                     "default.yaml + <tenant>.yaml), hot-reloaded", "regex PII redaction of requests and events",
                     "base_url: https://api.openai.com/v1", "api_key_env: VLLM_API_KEY"):
        assert fragment in text, fragment
    assert max(len(line) for line in text.splitlines()) <= 120
