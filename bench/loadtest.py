"""Load test for a running ``collectguard serve``: throughput and latency percentiles.

Usage::

    collectguard serve --port 8000 &
    python bench/loadtest.py --url http://127.0.0.1:8000 --concurrency 16 --requests 300

For each request size (default 1 and 32 segments) it sends ``--requests`` POST /v1/score calls
from ``--concurrency`` concurrent clients and reports requests/s, segments/s and p50/p95/p99
latency. Texts are real transcript lines (``text`` fields of JSONL files, default the authored
data), so window counts and tokenisation cost match production rather than a repeated string.
Not a pytest test: its numbers depend on the machine and on what else runs on it.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import json
import math
import os
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = str(REPO_ROOT / "data" / "authored" / "*.jsonl")
SPEAKERS = {"agent", "customer"}
LISTENERS = {"debtor", "third_party", "unknown"}


@dataclass
class Result:
    segments_per_request: int
    requests: int
    ok: int
    errors: dict[str, int]
    wall_s: float
    requests_per_s: float
    segments_per_s: float
    p50_ms: float
    p95_ms: float
    p99_ms: float
    mean_ms: float
    max_ms: float
    latencies_ms: list[float] = field(default_factory=list, repr=False)


def load_segments(pattern: str) -> list[dict[str, str]]:
    """Segments from JSONL files: ``text`` plus ``speaker``/``listener`` when they are valid."""
    files = sorted(glob.glob(pattern))
    if not files:
        raise SystemExit(f"no files match {pattern!r}")
    out = []
    for path in files:
        for line in Path(path).read_text(encoding="utf-8").splitlines():
            try:
                row = json.loads(line)
            except json.JSONDecodeError:
                continue
            text = row.get("text") if isinstance(row, dict) else None
            if not isinstance(text, str) or not text.strip():
                continue
            seg = {"text": text}
            if row.get("speaker") in SPEAKERS:
                seg["speaker"] = row["speaker"]
            if row.get("listener") in LISTENERS:
                seg["listener"] = row["listener"]
            out.append(seg)
    if not out:
        raise SystemExit(f"no usable text fields in {pattern!r}")
    return out


def percentile(sorted_values: list[float], q: float) -> float:
    """Linear-interpolated percentile (``q`` in [0, 100]) of an already sorted list."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo, hi = math.floor(pos), math.ceil(pos)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


async def run_scenario(
    client: httpx.AsyncClient, pool: list[dict[str, str]], size: int, n_requests: int, concurrency: int, seed: int
) -> Result:
    """Fire ``n_requests`` requests of ``size`` segments, at most ``concurrency`` in flight."""
    rng = random.Random(seed + size)
    payloads = [{"segments": rng.sample(pool, size) if size <= len(pool) else rng.choices(pool, k=size)}
                for _ in range(n_requests)]  # fmt: skip
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    for p in payloads:
        queue.put_nowait(p)
    latencies: list[float] = []
    errors: Counter[str] = Counter()

    async def worker() -> None:
        while True:
            try:
                payload = queue.get_nowait()
            except asyncio.QueueEmpty:
                return
            t0 = time.perf_counter()
            try:
                resp = await client.post("/v1/score", json=payload)
            except httpx.HTTPError as e:
                errors[type(e).__name__] += 1
                continue
            elapsed = (time.perf_counter() - t0) * 1000
            if resp.status_code == 200:
                latencies.append(elapsed)
            else:
                errors[str(resp.status_code)] += 1

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    wall = time.perf_counter() - t0
    lat = sorted(latencies)
    return Result(
        segments_per_request=size,
        requests=n_requests,
        ok=len(lat),
        errors=dict(errors),
        wall_s=round(wall, 3),
        requests_per_s=round(len(lat) / wall, 2) if wall else math.nan,
        segments_per_s=round(len(lat) * size / wall, 2) if wall else math.nan,
        p50_ms=round(percentile(lat, 50), 2),
        p95_ms=round(percentile(lat, 95), 2),
        p99_ms=round(percentile(lat, 99), 2),
        mean_ms=round(sum(lat) / len(lat), 2) if lat else math.nan,
        max_ms=round(lat[-1], 2) if lat else math.nan,
        latencies_ms=lat,
    )


async def main_async(args: argparse.Namespace) -> dict[str, Any]:
    pool = load_segments(args.data)
    headers = {"X-API-Key": args.api_key} if args.api_key else {}
    limits = httpx.Limits(max_connections=args.concurrency, max_keepalive_connections=args.concurrency)
    async with httpx.AsyncClient(base_url=args.url, headers=headers, timeout=args.timeout, limits=limits) as client:
        try:
            ready = await client.get("/readyz")
            model = (await client.get("/v1/model")).json()
        except httpx.HTTPError as e:
            raise SystemExit(f"cannot reach {args.url}: {e}") from None
        if ready.status_code != 200:
            raise SystemExit(f"{args.url} is not ready (/readyz → {ready.status_code})")
        if args.warmup:  # first requests pay for lazy allocations; keep them out of the numbers
            await run_scenario(client, pool, 1, args.warmup, min(args.concurrency, args.warmup), args.seed)
        results = [
            await run_scenario(client, pool, size, args.requests, args.concurrency, args.seed) for size in args.sizes
        ]
    return {
        "url": args.url,
        "model": {k: model.get(k) for k in ("name", "version")},
        "concurrency": args.concurrency,
        "texts": len(pool),
        "results": results,
    }


def print_table(report: dict[str, Any]) -> None:
    model = report["model"]
    print(f"{report['url']}  model {model['name']} {model['version']}  concurrency {report['concurrency']}")
    head = f"{'segs/req':>8} {'requests':>8} {'ok':>6} {'req/s':>9} {'seg/s':>10} {'p50 ms':>9} {'p95 ms':>9} "
    print(head + f"{'p99 ms':>9} {'max ms':>9}  errors")
    for r in report["results"]:
        errors = ", ".join(f"{k}×{v}" for k, v in sorted(r.errors.items())) or "-"
        print(
            f"{r.segments_per_request:>8} {r.requests:>8} {r.ok:>6} {r.requests_per_s:>9.2f} {r.segments_per_s:>10.1f} "
            f"{r.p50_ms:>9.1f} {r.p95_ms:>9.1f} {r.p99_ms:>9.1f} {r.max_ms:>9.1f}  {errors}"
        )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--url", default="http://127.0.0.1:8000", help="base URL of a running server")
    p.add_argument("--concurrency", type=int, default=8, help="requests in flight at once")
    p.add_argument("--requests", type=int, default=200, help="requests per request size")
    p.add_argument("--sizes", type=lambda s: [int(x) for x in s.split(",")], default=[1, 32],
                   help="segments per request, comma-separated (default 1,32)")  # fmt: skip
    p.add_argument("--data", default=DEFAULT_DATA, help="glob of JSONL files whose text fields are sent")
    p.add_argument("--api-key", default=os.environ.get("COLLECTGUARD_SERVE__API_KEY"), help="X-API-Key, if needed")
    p.add_argument("--warmup", type=int, default=10, help="untimed requests sent first")
    p.add_argument("--timeout", type=float, default=120.0, help="seconds per request")
    p.add_argument("--seed", type=int, default=13)
    p.add_argument("--json", action="store_true", help="print a JSON report (with every latency) instead of a table")
    args = p.parse_args(argv)
    if args.concurrency < 1 or args.requests < 1 or any(s < 1 for s in args.sizes):
        p.error("--concurrency, --requests and --sizes must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    report = asyncio.run(main_async(args))
    if args.json:
        print(json.dumps({**report, "results": [asdict(r) for r in report["results"]]}, ensure_ascii=False, indent=2))
    else:
        print_table(report)
    return 1 if any(r.ok < r.requests for r in report["results"]) else 0


if __name__ == "__main__":
    sys.exit(main())
