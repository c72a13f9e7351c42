"""(c) REST latency of skydriver's read routes with many scans in the database, at a fixed request rate.

    python bench/rest_latency.py [--scans 10000] [--rate 50] [--seconds 20]

The services run as processes (as `skydriver local-scan` starts them), on the dev services' MongoDB
(see the machine table for which server that is). The database is filled like this: one real scan
(`dummy` reco, nsides 8:0,64:4, two pilots) is POSTed and run to its final skymap; then its
stored documents — request, manifest and result — are copied through skydriver's database layer
(`skydriver.database.Database`, its collections' `insert_many`, batches of 500) until the database
holds the wanted number of finished scans, each under a fresh `scan_id` with its own timestamp.

Load: an open-loop client (requests are sent on a fixed schedule, whatever the answers do, so a
slow answer cannot hide the ones queued behind it) sends `GET /scan/{id}` (manifest + result) at the
given rate for the given time, each for a random one of the scans, with a user token; then the same
for `GET /scan/{id}/manifest`. A latency runs from the request's scheduled send time to the end of
its answer (a new connection per request, tornado's simple client). A warm-up of 2 s at the same
rate comes first and is not counted. Every answer must be 200.

Target (issue 10): p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
import uuid
from typing import Any

from common import MONGODB_URL, Part, percentile, print_part, say
from local_system import BenchSystem
from tornado.httpclient import AsyncHTTPClient, HTTPClientError, HTTPRequest

from skydriver.database import Database
from skydriver.event import random_track, simulate_track

TARGET_P99_MS = 50.0
BATCH = 500
WARMUP_SECONDS = 2.0
SEED_NSIDES = {"8": 0, "64": 4}


async def seed_scan(system: BenchSystem) -> str:
    event = simulate_track(random_track(11), 11)
    request = system.request(event, "dummy", SEED_NSIDES, 2)
    run = await system.run_scan(request)
    return run.scan_id


async def fill(system: BenchSystem, template_id: str, total: int) -> dict[str, int]:
    """Copies of the template scan's documents until `total` scans exist; sizes of the template's documents."""
    db = Database(MONGODB_URL, system.skydriver_database)
    try:
        request = await db.requests.collection.find_one({"scan_id": template_id}, {"_id": False})
        manifest = await db.manifests.collection.find_one({"scan_id": template_id}, {"_id": False})
        result = await db.results.collection.find_one({"scan_id": template_id}, {"_id": False})
        assert request and manifest and result, "the template scan's documents"
        base = time.time() - 365 * 86400
        remaining = total - await db.manifests.collection.count_documents({})
        made = 0
        while made < remaining:
            n = min(BATCH, remaining - made)
            ids = [uuid.uuid4().hex for _ in range(n)]
            stamps = [base + (made + i) * 3000.0 for i in range(n)]
            await db.requests.collection.insert_many([{**request, "scan_id": s} for s in ids])
            await db.results.collection.insert_many([{**result, "scan_id": s} for s in ids])
            await db.manifests.collection.insert_many(
                [
                    {**manifest, "scan_id": s, "timestamp": t, "last_updated": t}
                    for s, t in zip(ids, stamps, strict=True)
                ]
            )
            made += n
            if made % 2000 < BATCH:
                say(f"  {made + total - remaining}/{total} scans in the database")
        return {"manifests": await db.manifests.collection.count_documents({})}
    finally:
        await db.close()


async def scan_ids(system: BenchSystem) -> list[str]:
    db = Database(MONGODB_URL, system.skydriver_database)
    try:
        return [d["scan_id"] async for d in db.manifests.collection.find({}, {"scan_id": True, "_id": False})]
    finally:
        await db.close()


async def open_loop(url: str, token: str, ids: list[str], route: str, rate: float, seconds: float) -> dict[str, Any]:
    """Requests on a fixed schedule; latencies in ms from the scheduled send to the end of the answer."""
    client = AsyncHTTPClient(force_instance=True, max_clients=1000)
    headers = {"Authorization": f"Bearer {token}"}
    latencies: list[float] = []
    errors: list[str] = []
    sizes: list[int] = []
    rng = random.Random(1)

    async def one(at: float, record: bool) -> None:
        path = route.format(scan_id=rng.choice(ids))
        try:
            answer = await client.fetch(HTTPRequest(url + path, headers=headers, request_timeout=30))
        except (HTTPClientError, OSError) as exc:
            errors.append(f"{path}: {exc}")
            return
        if record:
            latencies.append((time.monotonic() - at) * 1000)
            sizes.append(len(answer.body))

    try:
        for phase_seconds, record in ((WARMUP_SECONDS, False), (seconds, True)):
            n = int(phase_seconds * rate)
            start = time.monotonic() + 0.05
            pending = []
            for i in range(n):
                at = start + i / rate
                delay = at - time.monotonic()
                if delay > 0:
                    await asyncio.sleep(delay)
                pending.append(asyncio.create_task(one(at, record)))
            await asyncio.gather(*pending)
    finally:
        client.close()
    return {"latencies": latencies, "errors": errors, "bytes": statistics.median(sizes) if sizes else 0}


async def measure(scans: int, rate: float, seconds: float) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    async with BenchSystem("rest") as system:
        say("  a real scan to copy (dummy reco, 2 pilots) ...")
        template = await seed_scan(system)
        started = time.monotonic()
        await fill(system, template, scans)
        info: dict[str, Any] = {"fill_seconds": time.monotonic() - started}
        ids = await scan_ids(system)
        info["scans"] = len(ids)
        say(f"  {len(ids)} scans in the database ({info['fill_seconds']:.0f}s to copy)")
        results = {}
        for route in ("/scan/{scan_id}", "/scan/{scan_id}/manifest"):
            say(f"  GET {route}: {rate:g} req/s for {seconds:g}s (+{WARMUP_SECONDS:g}s warm-up) ...")
            results[route] = await open_loop(system.url, system.token, ids, route, rate, seconds)
            lat = results[route]["latencies"]
            say(f"  GET {route}: p50 {percentile(lat, 50):.1f} ms, p99 {percentile(lat, 99):.1f} ms")
    return results, info


def run(scans: int, rate: float, seconds: float) -> Part:
    part = Part("(c) REST latency: GET /scan/{id} and /scan/{id}/manifest with many scans stored")
    results, info = asyncio.run(measure(scans, rate, seconds))
    rows = []
    for route, found in results.items():
        lat = found["latencies"]
        rows.append(
            [
                f"GET {route}",
                str(len(lat)),
                f"{percentile(lat, 50):.1f}",
                f"{percentile(lat, 90):.1f}",
                f"{percentile(lat, 99):.1f}",
                f"{max(lat):.1f}" if lat else "-",
                f"{found['bytes'] / 1024:.1f}",
                str(len(found["errors"])),
            ]
        )
    part.table(
        f"{info['scans']} scans in the database; {rate:g} req/s for {seconds:g} s per route, open loop; ms",
        ["route", "requests", "p50", "p90", "p99", "max", "answer KiB", "errors"],
        rows,
    )
    for route, found in results.items():
        p99 = percentile(found["latencies"], 99)
        ok = p99 < TARGET_P99_MS and not found["errors"]
        part.add(f"GET {route}: p99 latency", f"{p99:.1f} ms", f"< {TARGET_P99_MS:.0f} ms", ok)
        part.add(f"GET {route}: p50 latency", f"{percentile(found['latencies'], 50):.1f} ms")
        if found["errors"]:
            part.add(f"GET {route}: failed requests", f"{len(found['errors'])} (first: {found['errors'][0]})")
    part.method = [
        __doc__.split("\n\n", 2)[2].strip(),
        f"Copying {info['scans']} scans took {info['fill_seconds']:.0f} s.",
    ]
    return part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scans", type=int, default=10_000)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--seconds", type=float, default=20.0)
    args = parser.parse_args()
    print_part(run(args.scans, args.rate, args.seconds))


if __name__ == "__main__":
    main()
