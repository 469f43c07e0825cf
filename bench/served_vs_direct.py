"""Served vs direct throughput, and fairness under a hostile request, for ``collectguard serve``.

Usage (starts the server itself, on a free loopback port, and stops it afterwards)::

    python bench/served_vs_direct.py [--model DIR] [--clients 4] [--size 32] [--requests 48] [--fair]

1. Served: ``--clients`` concurrent clients send ``--requests`` POST /v1/score requests of
   ``--size`` segments (real transcript lines) to the server; segments/s over the wall time.
   The client is one asyncio process (httpx, no per-request threads); its own CPU time is
   measured (``getrusage``) and reported as a share of the machine, next to the server's (from
   ``/proc``), so a reader sees what the load generator took from the server.
2. Direct: the same requests scored one by one in this process with ``Classifier.load().score()``
   (the server is idle meanwhile); served ÷ direct is the serving efficiency.
3. ``--fair``: one client sends a maximum-size request (256 segments, 200,000 characters) while
   another sends 1-segment requests one after another; p50/p99 of the small ones while the big
   one is being scored.
Numbers depend on the machine and on what else runs on it; the printed JSON records the load.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from loadtest import DEFAULT_DATA, load_segments, percentile, run_scenario


def cpu_seconds_of(pid: int) -> float:
    """User + system CPU seconds of a process (and its reaped children), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = sum(int(x) for x in fields[11:15])  # utime stime cutime cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def own_cpu_seconds() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def start_server(model: Path | None, port: int, extra: list[str]) -> subprocess.Popen:
    cli = Path(sys.executable).with_name("collectguard")
    cmd = [str(cli) if cli.exists() else sys.executable, *([] if cli.exists() else ["-m", "collectguard"])]
    cmd += ["serve", "--port", str(port), *(["--model", str(model)] if model else []), *extra]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300  # the first start may export the ONNX model
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"collectguard serve exited with {proc.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=2).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.terminate()
    raise SystemExit("collectguard serve did not become ready")


async def served(url: str, pool: list[dict[str, str]], args: argparse.Namespace, server_pid: int) -> dict[str, Any]:
    limits = httpx.Limits(max_connections=args.clients, max_keepalive_connections=args.clients)
    async with httpx.AsyncClient(base_url=url, timeout=600, limits=limits) as client:
        await run_scenario(client, pool, args.size, args.clients, args.clients, args.seed)  # warm-up
        cpu0, srv0, t0 = own_cpu_seconds(), cpu_seconds_of(server_pid), time.perf_counter()
        res = await run_scenario(client, pool, args.size, args.requests, args.clients, args.seed)
        wall = time.perf_counter() - t0
        client_cpu, server_cpu = own_cpu_seconds() - cpu0, cpu_seconds_of(server_pid) - srv0
    cores = os.cpu_count() or 1
    return {
        "segments_per_s": res.segments_per_s, "ok": res.ok, "errors": res.errors,
        "p50_ms": res.p50_ms, "p99_ms": res.p99_ms,
        "client_cpu_share": round(client_cpu / (wall * cores), 3),
        "server_cpu_share": round(server_cpu / (wall * cores), 3),
    }  # fmt: skip


def direct(model: Path | None, pool: list[dict[str, str]], args: argparse.Namespace) -> dict[str, Any]:
    """The same payloads ``run_scenario`` sends, scored one request at a time in this process."""
    import random

    from model.classifier import Classifier

    clf = Classifier.load(model)
    rng = random.Random(args.seed + args.size)
    payloads = [rng.sample(pool, args.size) for _ in range(args.requests)]
    clf.score(payloads[0])  # warm-up
    t0 = time.perf_counter()
    for segs in payloads:
        clf.score(segs)
    wall = time.perf_counter() - t0
    return {"segments_per_s": round(args.requests * args.size / wall, 1), "backend": clf.backend}


async def fairness(url: str, pool: list[dict[str, str]], small_requests: int) -> dict[str, Any]:
    """1-segment latencies while a 256-segment, 200,000-character request is being scored."""
    text = "".join(s["text"] for s in pool)
    while len(text) < 200_000:
        text += text
    big = {"segments": [{"text": text[i * 781 : (i + 1) * 781]} for i in range(256)]}
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        t0 = time.perf_counter()
        big_task = asyncio.create_task(client.post("/v1/score", json=big))
        await asyncio.sleep(0.5)  # the big request is admitted and being scored
        for i in range(small_requests):
            if big_task.done():
                break
            t = time.perf_counter()
            resp = await client.post("/v1/score", json={"segments": [pool[i % len(pool)]]})
            if resp.status_code == 200:
                latencies.append((time.perf_counter() - t) * 1000)
        big_resp = await big_task
        big_s = time.perf_counter() - t0
    lat = sorted(latencies)
    return {
        "big_status": big_resp.status_code, "big_s": round(big_s, 2), "small_n": len(lat),
        "small_p50_ms": round(percentile(lat, 50), 1), "small_p99_ms": round(percentile(lat, 99), 1),
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", type=Path, default=None, help="artifact folder (default: the shipped model)")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--size", type=int, default=32, help="segments per request")
    ap.add_argument("--requests", type=int, default=48)
    ap.add_argument("--fair", action="store_true", help="also measure small-request latency under a maximum request")
    ap.add_argument("--small-requests", type=int, default=200)
    ap.add_argument("--data", default=DEFAULT_DATA)
    ap.add_argument("--set", dest="overrides", action="append", default=[], help="passed to collectguard serve")
    ap.add_argument("--seed", type=int, default=13)
    args = ap.parse_args(argv)

    pool = load_segments(args.data)
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    url = f"http://127.0.0.1:{port}"
    load_before = os.getloadavg()
    server = start_server(args.model, port, [x for item in args.overrides for x in ("--set", item)])
    try:
        report: dict[str, Any] = {"served": asyncio.run(served(url, pool, args, server.pid))}
        if args.fair:
            report["fair"] = asyncio.run(fairness(url, pool, args.small_requests))
    finally:
        server.terminate()
        server.wait(30)
    report["direct"] = direct(args.model, pool, args)
    report["served_over_direct"] = round(report["served"]["segments_per_s"] / report["direct"]["segments_per_s"], 2)
    report["env"] = {
        "clients": args.clients, "size": args.size, "requests": args.requests, "cpus": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before], "loadavg_after": [round(x, 2) for x in os.getloadavg()],
    }  # fmt: skip
    print(json.dumps(report, ensure_ascii=False, indent=2))
    return 0 if report["served"]["ok"] == args.requests else 1


if __name__ == "__main__":
    sys.exit(main())
