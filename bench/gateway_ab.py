"""A/B of the gateway: a git ref (A) against the working tree (B), interleaved rounds at one rate.

    .venv/bin/python -m bench.gateway_ab REF [--rate 900] [--seconds 8] [--rounds 4]

This VM's latency and CPU figures drift by ±30% between minutes, so two benchmark runs minutes apart can
disagree more than two versions of the code do. Here both gateways run at once (same broker, same mock,
same pinning as ``gatewatch bench gateway``: proxies on core 0, the rest on core 1) and every round runs
direct-to-mock, then A, then direct, then B, so both see the same minute. Per round it prints the added
p50/p99 (proxy - direct, ms) and the proxy's CPU per request; at the end the medians per side.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench.harness import PROMPT, Client, Procs, Target, measure, source, start_broker
from bench.proxy import bodies, start_gatewatch, start_mocks


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ref", help="git ref for side A (B is the working tree)")
    ap.add_argument("--rate", type=float, default=900.0)
    ap.add_argument("--seconds", type=float, default=8.0, help="per run")
    ap.add_argument("--rounds", type=int, default=4)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="gatewatch-ab-"))
    src_a, _ = source(args.ref, tmp)
    procs_a, procs_b = Procs(tmp, src=src_a), Procs(tmp)
    res: dict[str, list[dict[str, float]]] = {"A": [], "B": []}
    try:
        client = Client(1, 10.0)
        broker = start_broker(procs_b, 1)
        mock, paced = start_mocks(procs_b, 1)
        body = bodies(PROMPT)
        direct = Target("direct", f"http://127.0.0.1:{mock}", {}, body["mock_chat"], body["mock_stream"])
        a = start_gatewatch(procs_a, tmp, 0, broker, mock, paced, body, name="A")
        b = start_gatewatch(procs_b, tmp, 0, broker, mock, paced, body, name="B")
        for g in (a, b):
            measure(client, g, 300, 3, warmup=1)
        for i in range(args.rounds):
            for name, g in (("A", a), ("B", b)):
                d = measure(client, direct, args.rate, args.seconds)
                p = measure(client, g, args.rate, args.seconds)
                row = {"cpu_ms_per_req": p.get("proxy_cpu_ms_per_req"),
                       "added_p50": round(p["latency_ms"]["p50"] - d["latency_ms"]["p50"], 3),
                       "added_p99": round(p["latency_ms"]["p99"] - d["latency_ms"]["p99"], 3),
                       "errors": p["errors"]}
                res[name].append(row)
                print(i, name, json.dumps(row), flush=True)
        for name, rows in res.items():
            med = {k: statistics.median(r[k] for r in rows) for k in ("added_p50", "added_p99", "cpu_ms_per_req")}
            print(f"{name} ({args.ref if name == 'A' else 'working tree'}): median added p50 {med['added_p50']:.3f} "
                  f"ms, p99 {med['added_p99']:.3f} ms, CPU {med['cpu_ms_per_req']:.3f} ms/request")
    finally:
        procs_a.stop_all()
        procs_b.stop_all()  # the broker and the mocks last
    return 0


if __name__ == "__main__":
    sys.exit(main())
