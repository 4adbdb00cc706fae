"""Warehouse reads of the scorer child with an embedded (chdb) warehouse, answered by the worker.

The child cannot open the chdb directory the worker owns, so a scorer's read (``consumers/scorers/reads.py``:
a name and JSON-ready arguments, e.g. the drift baselines of a few keys) travels as a ``read`` message
(``id``, ``name``, ``args``) and comes back as an ``ack`` with ``result`` (or ``ok`` false, ``kind`` and
``error``). The worker runs it with ``LocalReads`` on its own warehouse (``answer_read``).
"""

from __future__ import annotations

from typing import Any

from consumers.contracts import TransientError
from consumers.scorers.reads import WarehouseReads
from consumers.sinks.forward import ParentLink


class ParentReads:
    """The child's ``WarehouseReads``: every failure (the worker lost, no answer in time, a failed read)
    is a ``TransientError``, as with a warehouse read in the worker itself."""

    def __init__(self, link: ParentLink, *, timeout_s: float = 120.0) -> None:
        self.link = link
        self.timeout_s = timeout_s

    async def read(self, name: str, args: dict[str, Any]) -> Any:
        reply = await self.link.request({"t": "read", "name": name, "args": args}, self.timeout_s)
        if not reply.get("ok"):
            raise TransientError(str(reply.get("error", "read failed in the worker process")))
        return reply.get("result")


async def answer_read(reads: WarehouseReads | None, msg: dict[str, Any]) -> dict[str, Any]:
    """The worker's answer (without ``t``/``id``) to one ``read`` message of the child."""
    name, args = msg.get("name"), msg.get("args")
    if reads is None:
        return {"ok": False, "kind": "permanent", "error": "no warehouse reads here (the child has its own client)"}
    if not isinstance(name, str) or not isinstance(args, dict):
        return {"ok": False, "kind": "permanent", "error": "malformed read: needs a name and an args object"}
    try:
        result = await reads.read(name, args)
    except TransientError as exc:
        return {"ok": False, "kind": "transient", "error": str(exc)}
    return {"ok": True, "result": result}
