"""py-spy for the gateway proxy benchmark's ``--profile``: the tool in its own venv (bench/.venvs/tools,
git-ignored) and a summary of its raw stacks (own samples by frame and by module)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from bench.harness import HERE, log


def ensure_pyspy() -> Path:
    venv = HERE / ".venvs" / "tools"
    exe = venv / "bin" / "py-spy"
    if not exe.exists():
        log("installing py-spy into bench/.venvs/tools")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(venv / "bin" / "pip"), "install", "--quiet", "py-spy"], check=True)
    return exe


def _module(frame: str) -> str:
    """'f (aiohttp/client.py:12)' -> 'aiohttp'; 'f (gateway/chain/emit.py:3)' -> 'gateway/chain/emit.py'."""
    m = re.search(r"\(([^)]*?)(?::\d+)?\)$", frame)
    path = m.group(1) if m else frame
    path = path.split("site-packages/", 1)[-1]
    for root in ("gateway/", "gatewatch/", "schemas/"):
        if path.startswith(root) or f"/{root}" in path:
            return root + path.split(root, 1)[1]
    return path.lstrip("/").split("/")[0].removesuffix(".py")


IDLE_FRAMES = ("_worker (concurrent/futures/thread.py:81)", "wait (threading.py:", "get (queue.py:")


def top_frames(path: Path, n: int = 15) -> dict[str, Any]:
    """Summarise py-spy raw stacks (idle excluded by py-spy): own samples by innermost frame and by module.
    Own time in ``Runner.run`` is the event loop's C code (uvloop: socket syscalls, transports, timers) plus
    the cyclic GC, which py-spy without --native cannot see into."""
    own: dict[str, int] = {}
    mods: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        c = int(count)
        frame = stack.split(";")[-1]
        if any(w in frame for w in IDLE_FRAMES):  # a pool thread waiting for work (py-spy --nonblocking
            continue                               # cannot always tell it is idle)
        total += c
        leaf = re.sub(r"\((?:/[^)]*/site-packages/|/[^)]*/(?=(?:gateway|gatewatch|schemas)/))", "(", frame)
        own[leaf] = own.get(leaf, 0) + c
        mod = "event loop (C) + GC" if "Runner.run" in leaf else _module(frame)
        mods[mod] = mods.get(mod, 0) + c

    def top(d: dict[str, int]) -> list[tuple[str, float]]:
        return [(f, round(100 * c / total, 1)) for f, c in sorted(d.items(), key=lambda kv: -kv[1])[:n]]

    return {"samples": total, "top_self_pct": top(own), "by_module_pct": top(mods)} if total else {"samples": 0}
