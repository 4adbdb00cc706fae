"""A configuration file rendered from pydantic models: every field's default, with its description
(``Field(description=...)``), choices (``Literal``) and examples (``Field(examples=...)``) as comments, so the
models stay the one source of defaults (``gatewatch.config.default_config_yaml`` renders the root one).

Everything is commented out, so the file means exactly the models' defaults; removing the leading ``# `` of a
block gives valid YAML. A field whose default depends on the installation says so with
``json_schema_extra={"shown_default": "<text>"}``.
"""

from __future__ import annotations

import textwrap
import typing
from typing import Any, Literal

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo

WIDTH = 118
_INDENT = "  "


def _flow(value: Any) -> str:
    """``value`` as one line of YAML (flow style)."""
    text = yaml.safe_dump([value], default_flow_style=True, width=10**6, sort_keys=False, allow_unicode=True)
    return text.strip()[1:-1]


def _choices(field: FieldInfo) -> str:
    if typing.get_origin(field.annotation) is Literal:
        return " | ".join(str(c) for c in typing.get_args(field.annotation))
    return ""


def _comment(field: FieldInfo) -> str:
    choices = _choices(field)
    desc = (field.description or "").strip()
    if choices and desc:
        return f"{choices}. {desc}"
    return choices or desc


def _above(out: list[str], pad: str, text: str) -> None:
    for line in textwrap.wrap(text, WIDTH - len(pad) - 4, break_on_hyphens=False):
        out.append(f"# {pad}# {line}")


def _example(out: list[str], pad: str, name: str, example: Any) -> None:
    out.append(f"# {pad}# for example:")
    block = yaml.safe_dump({name: example}, sort_keys=False, allow_unicode=True)
    out.extend(f"# {pad}{line}" for line in block.splitlines())


def _field(out: list[str], depth: int, name: str, field: FieldInfo, owner: BaseModel, examples: bool) -> None:
    pad = _INDENT * depth
    value = getattr(owner, name)
    comment = _comment(field)
    if isinstance(value, BaseModel):
        if comment:
            _above(out, pad, comment)
        out.append(f"# {pad}{name}:")
        _fields(out, depth + 1, value, examples)
        return
    extra = field.json_schema_extra if isinstance(field.json_schema_extra, dict) else {}
    shown = str(extra["shown_default"]) if "shown_default" in extra else \
        _flow(owner.model_dump(mode="json", include={name})[name])
    line = f"# {pad}{name}: {shown}"
    if comment and len(line) + 4 + len(comment) <= WIDTH:
        out.append(f"{line}  # {comment}")
    else:
        if comment:
            _above(out, pad, comment)
        out.append(line)
    for example in field.examples or () if examples else ():
        _example(out, pad, name, example)


def _fields(out: list[str], depth: int, model: BaseModel, examples: bool) -> None:
    for name, field in type(model).model_fields.items():
        if depth == 0:
            out.append("")
        _field(out, depth, name, field, model, examples)


def render_defaults(model: type[BaseModel], header: str, *, examples: bool = True) -> str:
    """``header``, then every field of ``model`` (a blank line between top-level ones), commented out, with
    the fields' examples unless ``examples`` is false."""
    out = [header.rstrip("\n")]
    _fields(out, 0, model.model_construct(), examples)  # the fields' own defaults: no cross-section validator
    return "\n".join(out) + "\n"
