"""Drift baselines in the warehouse (``gatewatch.drift_baselines``, migration 0008).

- Identity: what makes two baselines comparable. A hash of the embedding model's name and a fingerprint
  of its files, the embedding dimension, ``max_length`` (truncation changes embeddings) and the baseline's
  definition (``baseline_events`` or the pinned range, ``max_baseline``). Window and test settings
  (``window_events``, ``min_window``, ``permutations``, thresholds) are not part of it: tuning them keeps
  the baseline. Device and dtype are not either (bf16 and fp32 embeddings of one model agree closely).
- Write: the scorer emits one ``drift_baselines`` row when a baseline completes, with the batch's other
  rows, so it goes through the pipeline's sink (the worker's, or forwarded by the scorer child) and the
  batch's offsets are committed only after it is written. Rows carry their ``updated_at`` from the freeze,
  so a late retry of that write never revives a baseline reset since.
- Read: ``BaselineStore`` over ``WarehouseReads`` (the worker's warehouse, or the worker asked over the
  child's channel): ``load`` the current baselines of keys the scorer has not in memory, ``current`` the
  ids of every active baseline of an identity (to drop what was reset or replaced).
- Reset: ``reset_baselines`` (the console's ``POST /api/drift/reset``) writes each active row again as
  ``reset`` with empty arrays and a larger ``updated_at``.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from consumers.contracts import Row
from consumers.scorers.config import ScorersConfig
from consumers.scorers.reads import WarehouseReads
from consumers.warehouse import DATABASE

if TYPE_CHECKING:
    from clickhouse_connect.driver.client import Client

FORMAT = 1  # of the stored baseline (part of the identity)
TABLE = "drift_baselines"
LOAD_CHUNK = 16  # keys per read: a baseline is ~1.5 MB (1,000 x 384 float32), keep each answer bounded
Key = tuple[str, str, str]  # tenant, request model, field
_SKIP_DIRS = frozenset({".git", "onnx", "openvino"})  # other runtimes' copies: not what is loaded
_INFO = ("tenant", "model", "field", "identity", "baseline_id", "state", "embed_model", "embed_version", "config",
         "baseline_size", "dim", "sample_size", "collected_from", "collected_to", "created_at", "updated_at")


@dataclass(frozen=True, slots=True)
class Identity:
    id: str
    config: str  # JSON of what ``id`` hashes
    embed_model: str
    embed_version: str
    dim: int


@dataclass(frozen=True, slots=True)
class StoredBaseline:
    baseline_id: str
    size: int  # events in the baseline
    centroid: np.ndarray  # (dim,) unit vector, float32
    sample: np.ndarray  # (<= max_baseline, dim) float32
    created_at: datetime
    collected_from: datetime
    collected_to: datetime


@functools.lru_cache(maxsize=16)
def dir_fingerprint(path: str) -> str:
    """sha256 over the relative names and bytes of a model directory's files (docs and other runtimes'
    exports left out): a fine-tuned model of the same architecture gets a new fingerprint."""
    root, h = Path(path), hashlib.sha256()
    for p in sorted(root.rglob("*")):
        rel = p.relative_to(root)
        if not p.is_file() or rel.parts[0] in _SKIP_DIRS or p.suffix == ".md" or p.name == ".gitattributes":
            continue
        h.update(rel.as_posix().encode() + b"\0")
        with p.open("rb") as f:
            while chunk := f.read(1 << 20):
                h.update(chunk)
    return "sha256:" + h.hexdigest()[:16]


def embed_version(embedder: Any) -> str:
    """The embedder's ``version`` if it has one, else the fingerprint of its model directory ('' if none)."""
    version = getattr(embedder, "version", None)
    if version:
        return str(version)
    path = getattr(embedder, "path", None)
    return dir_fingerprint(str(path)) if path and Path(path).is_dir() else ""


def baseline_identity(cfg: ScorersConfig, embedder: Any) -> Identity:
    """Blocking (hashes the model files once per process): call it off the event loop."""
    d = cfg.drift
    if d.baseline_start is not None and d.baseline_end is not None:
        definition: dict[str, Any] = {"start": d.baseline_start.isoformat(), "end": d.baseline_end.isoformat()}
    else:
        definition = {"events": d.baseline_events}
    name, version, dim = str(embedder.name), embed_version(embedder), int(embedder.dim)
    spec = {"format": FORMAT, "embed_model": name, "embed_version": version, "dim": dim,
            "max_length": cfg.max_length, "baseline": definition, "max_baseline": d.max_baseline}
    text = json.dumps(spec, sort_keys=True, separators=(",", ":"))
    return Identity(f"v{FORMAT}-" + hashlib.sha256(text.encode()).hexdigest()[:20], text, name, version, dim)


def baseline_row(key: Key, ident: Identity, b: StoredBaseline) -> Row:
    """The ``drift_baselines`` row of a baseline that just completed."""
    tenant, model, field = key
    return {
        "tenant": tenant, "model": model, "field": field, "identity": ident.id, "baseline_id": b.baseline_id,
        "state": "active", "embed_model": ident.embed_model, "embed_version": ident.embed_version,
        "config": ident.config, "baseline_size": b.size, "dim": int(b.sample.shape[1]),
        "sample_size": int(b.sample.shape[0]), "centroid": b.centroid.astype(np.float32).tolist(),
        "sample": b.sample.astype(np.float32).ravel().tolist(), "collected_from": b.collected_from,
        "collected_to": b.collected_to, "created_at": b.created_at, "updated_at": b.created_at,
    }


# ---------------------------------------------------------------------------------------------- reads
def _utc(ts: datetime) -> datetime:
    return ts.replace(tzinfo=UTC) if ts.tzinfo is None else ts  # chdb gives DateTime64 back naive (UTC)


def _f32(values: Sequence[float]) -> str:
    return base64.b64encode(np.asarray(values, dtype="<f4").tobytes()).decode()


def _keys(args: dict[str, Any]) -> list[Key]:
    keys = args.get("keys")
    if not isinstance(keys, list) or not all(
            isinstance(k, list | tuple) and len(k) == 3 and all(isinstance(x, str) for x in k) for k in keys):
        raise TypeError("keys must be a list of [tenant, model, field]")
    return [(k[0], k[1], k[2]) for k in keys]


def _identity(args: dict[str, Any]) -> str:
    identity = args.get("identity")
    if not isinstance(identity, str):
        raise TypeError("identity must be a string")
    return identity


def read_baselines(client: Client, args: dict[str, Any]) -> dict[str, Any]:
    """``drift.baselines`` {identity, keys}: the current baseline of each key that has one."""
    identity, keys = _identity(args), _keys(args)
    if not keys:
        return {"baselines": []}
    rows = client.query(
        "SELECT tenant, model, field, baseline_id, baseline_size, dim, sample_size, centroid, sample, created_at, "
        f"collected_from, collected_to FROM {DATABASE}.{TABLE} FINAL "
        "WHERE identity = {identity:String} AND state = 'active' "
        "AND (tenant, model, field) IN {keys:Array(Tuple(String, String, String))} "
        "ORDER BY created_at DESC, baseline_id DESC LIMIT 1 BY tenant, model, field",
        parameters={"identity": identity, "keys": keys}).result_rows
    return {"baselines": [
        {"key": [t, m, f], "baseline_id": bid, "size": int(size), "dim": int(dim), "sample_size": int(n),
         "centroid": _f32(centroid), "sample": _f32(sample), "created_at": _utc(created).isoformat(),
         "collected_from": _utc(start).isoformat(), "collected_to": _utc(end).isoformat()}
        for t, m, f, bid, size, dim, n, centroid, sample, created, start, end in rows]}


def read_current(client: Client, args: dict[str, Any]) -> dict[str, Any]:
    """``drift.current`` {identity}: [tenant, model, field, baseline_id] of every current baseline."""
    rows = client.query(
        f"SELECT tenant, model, field, argMax(baseline_id, (created_at, baseline_id)) FROM {DATABASE}.{TABLE} "
        "FINAL WHERE identity = {identity:String} AND state = 'active' GROUP BY tenant, model, field",
        parameters={"identity": _identity(args)}).result_rows
    return {"ids": [[str(v) for v in row] for row in rows]}


READS = {"drift.baselines": read_baselines, "drift.current": read_current}


def _decode(b: dict[str, Any]) -> tuple[Key, StoredBaseline]:
    dim, n = int(b["dim"]), int(b["sample_size"])
    vec = lambda s: np.frombuffer(base64.b64decode(s), dtype="<f4").astype(np.float32)  # noqa: E731
    t, m, f = b["key"]
    return (str(t), str(m), str(f)), StoredBaseline(
        baseline_id=str(b["baseline_id"]), size=int(b["size"]), centroid=vec(b["centroid"]),
        sample=vec(b["sample"]).reshape(n, dim), created_at=datetime.fromisoformat(b["created_at"]),
        collected_from=datetime.fromisoformat(b["collected_from"]),
        collected_to=datetime.fromisoformat(b["collected_to"]))


class BaselineStore:
    """The drift scorer's view of ``drift_baselines`` (raises ``TransientError`` when it cannot read)."""

    def __init__(self, reads: WarehouseReads) -> None:
        self.reads = reads

    async def load(self, identity: str, keys: Sequence[Key]) -> dict[Key, StoredBaseline]:
        out: dict[Key, StoredBaseline] = {}
        for start in range(0, len(keys), LOAD_CHUNK):
            chunk = [list(k) for k in keys[start:start + LOAD_CHUNK]]
            answer = await self.reads.read("drift.baselines", {"identity": identity, "keys": chunk})
            out.update(_decode(b) for b in answer["baselines"])
        return out

    async def current(self, identity: str) -> dict[Key, str]:
        answer = await self.reads.read("drift.current", {"identity": identity})
        return {(t, m, f): bid for t, m, f, bid in answer["ids"]}


# ---------------------------------------------------------------------------------------------- operator
def list_baselines(client: Client, *, tenants: Sequence[str] | None = None, model: str | None = None,
                   field: str | None = None, states: Sequence[str] = ("active",)) -> list[dict[str, Any]]:
    """Baselines (without their vectors), newest first; ``tenants`` None = every tenant."""
    where = ["state IN {states:Array(String)}"]
    params: dict[str, Any] = {"states": list(states)}
    if tenants is not None:
        where.append("tenant IN {tenants:Array(String)}")
        params["tenants"] = list(tenants)
    for name, value in (("model", model), ("field", field)):
        if value is not None:
            where.append(f"{name} = {{{name}:String}}")
            params[name] = value
    rows = client.query(f"SELECT {', '.join(_INFO)} FROM {DATABASE}.{TABLE} FINAL WHERE {' AND '.join(where)} "
                        "ORDER BY tenant, model, field, created_at DESC", parameters=params).result_rows
    return [{k: (_utc(v) if isinstance(v, datetime) else v) for k, v in zip(_INFO, row, strict=True)}
            for row in rows]


def reset_baselines(client: Client, *, tenant: str, model: str | None = None,
                    field: str | None = None) -> list[dict[str, Any]]:
    """Mark the active baselines of ``tenant`` (and ``model``, ``field``) reset; the rows so marked."""
    rows = list_baselines(client, tenants=[tenant], model=model, field=field)
    if not rows:
        return []
    now = datetime.now(UTC)
    for r in rows:
        r["state"], r["sample_size"] = "reset", 0
        r["updated_at"] = max(now, r["updated_at"] + timedelta(milliseconds=1))  # always the newer version
    client.insert(f"{DATABASE}.{TABLE}", [[r[c] for c in _INFO] for r in rows], column_names=list(_INFO))
    return rows
