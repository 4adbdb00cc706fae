"""The report of the gateway proxy benchmark (bench/proxy.py): Markdown tables and the targets' verdicts
from its results dict (also for a results JSON read back: ``report(json.load(f))``)."""

from __future__ import annotations

from typing import Any

from bench.harness import md_table

PROXIES = ("gatewatch", "gatewatch-nopii", "litellm")


def _row(rows: list[dict[str, Any]], rate: float) -> dict[str, Any] | None:
    return next((r for r in rows if r["rate"] == rate), None)


def verdicts(res: dict[str, Any]) -> list[tuple[str, bool | None, str]]:
    gw, ll, out = res.get("gatewatch", {}), res.get("litellm", {}), []
    r500 = _row(gw.get("fixed", []), 500)
    if r500:
        a = r500["added"]
        out.append(("added p50 <= 1 ms at 500 rps", a["p50"] is not None and a["p50"] <= 1, f"{a['p50']} ms"))
        out.append(("added p99 <= 5 ms at 500 rps", a["p99"] is not None and a["p99"] <= 5, f"{a['p99']} ms"))
    if gw.get("fixed") and ll.get("fixed"):
        both = [r for r in ll["fixed"] if "proxy" in r and _row(gw["fixed"], r["rate"])]
        clean = [r["rate"] for r in both if not r["proxy"]["errors"]]  # LiteLLM answered all (maybe late)
        rate = max(clean) if clean else min((r["rate"] for r in both), default=0)
        g, lt = _row(gw["fixed"], rate), _row(ll["fixed"], rate)
        if g and lt and g["added"]["p99"] is not None and lt["added"]["p99"] is not None:
            ratio = lt["added"]["p99"] / max(g["added"]["p99"], 0.1)
            out.append((f"added p99 >= 5x lower than LiteLLM (at {rate:g} rps)", ratio >= 5,
                        f"{g['added']['p99']} vs {lt['added']['p99']} ms = {ratio:.1f}x"))
    bounds = res["args"]
    for key, bound in (("sustained_rps", "p99_bound_ms"), ("sustained_loose_rps", "loose_bound_ms")):
        gl, lt = gw.get("ladder", {}), ll.get("ladder", {})
        gs, ls = gl.get(key), lt.get(key)
        if gl and lt:
            detail = f"{gs} vs {ls} rps" + (f" = {gs / ls:.1f}x" if gs and ls else "")
            out.append((f"sustained rate >= 2x LiteLLM (open loop, p99 <= {bounds[bound]:g} ms)",
                        bool(gs) and (not ls or gs >= 2 * ls), detail))
    gwk, lwk = gw.get("wrk", {}).get("rps"), ll.get("wrk", {}).get("rps")
    if gwk and lwk:
        out.append(("peak rate >= 2x LiteLLM (wrk)", gwk >= 2 * lwk, f"{gwk:.0f} vs {lwk:.0f} rps = {gwk / lwk:.1f}x"))
    gc, lc = _cpu_by_rate(gw), _cpu_by_rate(ll)
    both = sorted(set(gc) & set(lc))
    if both:
        rate = both[-1]
        out.append((f"(info) proxy CPU per request at {rate:g} rps (both error-free)", None,
                    f"{gc[rate]:.2f} vs {lc[rate]:.2f} ms = {lc[rate] / gc[rate]:.1f}x less"))
    mem = gw.get("memory")
    if mem:
        g = mem["growth_after_first_chunk_mb"]
        out.append(("flat memory (growth after the first 10% <= 5 MiB)", g <= 5,
                    f"{mem['rss_before_mb']} -> {mem['rss_after_mb']} MiB over {mem['requests']} requests "
                    f"({g:+} MiB after the first 10%), {mem['rss_idle_mb']} MiB after {res['args']['idle_s']:g}s idle "
                    f"(idle CPU {mem.get('idle_cpu_pct')}% of a core)"))
    return out


def _cpu_by_rate(proxy: dict[str, Any]) -> dict[float, float]:
    return {r["rate"]: r["proxy"]["proxy_cpu_ms_per_req"] for r in proxy.get("fixed", [])
            if "proxy" in r and not r["proxy"]["errors"] and "proxy_cpu_ms_per_req" in r["proxy"]}


def _p(d: dict[str, Any] | None) -> str:
    if not d or d.get("p50") is None:
        return "-"
    return f"{d['p50']:.2f} / {d['p95']:.2f} / {d['p99']:.2f}"


def _err(r: dict[str, Any]) -> str:
    return "0" if not r["errors"] else f"{r['errors']} {r['error_kinds']}"


def fixed_table(title: str, rows_by_proxy: dict[str, list[dict[str, Any]]], key: str) -> list[str]:
    rows: list[list[object]] = []
    for name, runs in rows_by_proxy.items():
        for r in runs:
            if "skipped" in r:
                rows.append([name, f"{r['rate']:g}", "-", f"skipped: {r['skipped']}", "", "", "", ""])
                continue
            p = r["proxy"]
            cpu = p.get("proxy_cpu_ms_per_req", "-") if not p["errors"] else "-"
            rows.append([name, f"{r['rate']:g}", f"{p['achieved_rps']:g}", _err(p), _p(r["direct"][key]), _p(p[key]),
                         _p(r["added"]), cpu])
    columns = ["proxy", "rate", "achieved", "errors", "direct p50 / p95 / p99", "proxy p50 / p95 / p99",
               "added p50 / p95 / p99", "proxy CPU ms/req"]
    return [f"### {title}", "", *md_table(columns, rows, right=(1, 2, 7)), ""]


def memory_table(proxies: dict[str, dict[str, Any]], a: dict[str, Any]) -> list[str]:
    rows: list[list[object]] = []
    for name, v in proxies.items():
        mem = v.get("memory") or {}
        ba = (f"{mem['rss_before_mb']} / {mem['rss_after_mb']} ({mem['requests']} req)" if mem
              else f"- / {v.get('rss_end_mb')} (end of run)")
        lad = v["ladder"]
        rows.append([name, f"{lad['sustained_rps']} / {lad.get('sustained_loose_rps')}",
                     v.get("wrk", {}).get("rps", "-"), f"{v.get('rss_start_mb')} MiB", ba, mem.get("rss_idle_mb", "-")])
    columns = ["proxy", f"sustained rps, p99 <= {a['p99_bound_ms']:g} / {a['loose_bound_ms']:g} ms (open loop)",
               "wrk peak rps (32 conns)", "RSS start", "RSS before / after load", "RSS after idle"]
    return ["### Throughput and memory", "", *md_table(columns, rows, right=(1, 2, 3, 5)), ""]


def report(res: dict[str, Any]) -> str:
    m, a = res["machine"], res["args"]
    proxies = {k: res[k] for k in PROXIES if isinstance(res.get(k), dict) and "fixed" in res[k]}
    lines = ["## Gateway proxy benchmark", "",
             f"- date: {res['date']}; machine: {m['cpu']}, {m['cores']} cores, {m['mem_gib']} GiB, {m['os']}, "
             f"Python {m['python']}, aiohttp {m['aiohttp']}",
             f"- code: {res['code']['tree']} at {res['code']['commit']}"
             + (f" with uncommitted changes in {len(res['code']['dirty'])} gateway/gatewatch paths"
                if res["code"]["dirty"] else ""),
             f"- load average at start {m['load_start']}, at end {m.get('load_end')}",
             f"- pinning: proxy on core {a['proxy_cpu']}; mocks + Tansu broker + load generator (+ wrk) on core "
             f"{a['client_cpu']} (the mock answers on the same core as the generator)",
             f"- litellm {res.get('litellm_version', '-')}; mode {'quick' if a['quick'] else 'full'}; "
             "latencies in ms from the scheduled send time (open loop); added = proxy percentile - direct "
             "percentile, measured back to back at the same rate", ""]
    for k in PROXIES:
        if isinstance(res.get(k), dict) and res[k].get("failed"):
            lines += [f"- **{k} failed**: {res[k]['failed'].strip().splitlines()[-1]}", ""]
    gen = res.get("generator", {})
    if gen:
        lines.append(f"- generator ceiling vs the mock (p99 <= {a['p99_bound_ms']:g} ms, no errors): "
                     f"{gen['ladder']['sustained_rps']} rps open loop; wrk vs the mock: "
                     f"{gen.get('wrk', {}).get('rps', '-')} rps")
        lines.append("")
    lines += fixed_table("Fixed rates, non-streaming chat completions", {k: v["fixed"] for k, v in proxies.items()},
                         "latency_ms")
    lines += fixed_table("Streaming: time to first content chunk", {k: v["stream"] for k, v in proxies.items()},
                         "ttft_ms")
    lines += memory_table(proxies, a)
    k = res.get("kafka")
    if k:
        answered = {n.split('code="')[1].split('"')[0]: int(v) for n, v in k.items() if n.startswith("gatewatch_req")}
        dropped = sum(v for n, v in k.items() if n.startswith("events_dropped"))
        lines += [f"- Kafka (gateway /metrics at the end): answered {answered} (499 = client gave up, i.e. the "
                  f"generator's timeouts); events emitted {k.get('events_emitted', 0):.0f}, delivered "
                  f"{k.get('events_delivered', 0):.0f}, spooled {k.get('events_spooled', 0):.0f}, "
                  f"dropped {dropped:.0f}", ""]
    marks = {True: "[x]", False: "[ ]", None: "-"}
    lines += ["### Targets", ""] + [f"- {marks[ok]} {name}: {detail}" for name, ok, detail in verdicts(res)]
    prof = res.get("profile")
    if prof and prof.get("samples"):
        lines += ["", f"### py-spy profile of gatewatch at {prof['rate']:g} rps ({prof['samples']} samples)", "",
                  "by module (own samples):"] + [f"  {pct:5.1f}%  {f}" for f, pct in prof["by_module_pct"]]
        lines += ["top frames (own samples):"] + [f"  {pct:5.1f}%  {f}" for f, pct in prof["top_self_pct"]]
    return "\n".join(lines) + "\n"
