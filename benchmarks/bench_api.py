"""Review API under load: 10,000 cases in PostgreSQL, 20 concurrent clients, one uvicorn process.

    .venv/bin/python benchmarks/bench_api.py [--cases 10000] [--clients 20] [--out FILE]

Creates a scratch database on the local PostgreSQL (127.0.0.1:5432), a user with `triage users
add`, and starts `triage serve` as a child process. The 10,000 cases go in through the batch
endpoint (1,000 a request) and are drafted by the server's background drafter; 10 % are then
approved and 5 % rejected through the API by the same 20 clients, so the queue has every status. Then 20 client threads:
  1. list the queue (a department's cases by status, page 1-5, three sort orders);
  2. ingest single complaints (offline drafting, in-request);
  3. open one case (complaint, drafts, decisions, evidence).
Each twice: saturated (every client sends its next request when the last one answers: the most the
server does, and the latency at that point) and paced (each client on a fixed schedule: 100 list or
detail requests/s, 20 ingests/s in all, and listing also at 50/s; latency counted from the scheduled send
time). The database is VACUUM ANALYZEd after seeding, as after any bulk load.
Client latency percentiles and requests per second go to stdout and to the JSON result file.
Complaints are synthesised from the built-in knowledge base with a fixed seed (see bench_triage).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from bench_triage import percentile, synth

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def run_clients(
    clients: int,
    per_client: int,
    call: Callable[[httpx.Client, int], httpx.Response],
    base: str,
    rate_per_client: float | None = None,
) -> dict[str, float]:
    """`clients` threads, each making `per_client` calls. Without a rate each sends its next request as
    soon as the last one answers (saturation). With one, each sends on a fixed schedule and latency is
    counted from the scheduled time, so a slow server is not excused by requests it delayed."""
    latencies: list[float] = []
    errors: list[int] = []
    lock = threading.Lock()
    start = threading.Barrier(clients + 1)

    def worker(k: int) -> None:
        with httpx.Client(base_url=base, timeout=60) as http:
            http.get("/healthz")  # connect before the clock starts
            start.wait()
            t0 = time.perf_counter() + (k / clients / rate_per_client if rate_per_client else 0)
            for i in range(per_client):
                due = t0 + i / rate_per_client if rate_per_client else time.perf_counter()
                time.sleep(max(0.0, due - time.perf_counter()))
                r = call(http, k * per_client + i)
                dt = time.perf_counter() - due
                with lock:
                    latencies.append(dt)
                    if r.status_code >= 400:
                        errors.append(r.status_code)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(clients)]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    wall = time.perf_counter() - t0
    ms = [x * 1000 for x in latencies]
    return {
        "requests": len(ms),
        "errors": len(errors),
        "offered_rps": round(clients * rate_per_client, 1) if rate_per_client else None,
        "p50_ms": round(percentile(ms, 0.50), 1),
        "p95_ms": round(percentile(ms, 0.95), 1),
        "p99_ms": round(percentile(ms, 0.99), 1),
        "mean_ms": round(statistics.fmean(ms), 1),
        "rps": round(len(ms) / wall, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "api.json")
    args = parser.parse_args()
    rng = random.Random(7)

    name = f"triage_bench_{uuid.uuid4().hex[:8]}"
    admin_engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin_engine.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "TRIAGE_DATA_DIR": str(tmp / "ws"),
        "TRIAGE_DATABASE_URL": url,
        "TRIAGE_API_PORT": str(port),
    }
    triage = [sys.executable, "-m", "triage"]
    proc: subprocess.Popen[bytes] | None = None
    try:
        key = subprocess.run(
            [*triage, "users", "add", "bench", "--role", "admin"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        log = (tmp / "serve.log").open("w")
        proc = subprocess.Popen([*triage, "serve"], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{base}/healthz").status_code == 200:
                    break
            except httpx.TransportError:
                time.sleep(0.3)
        http = httpx.Client(base_url=base, headers=headers, timeout=120)

        t0 = time.perf_counter()
        texts = [t for t, _, _ in synth(rng, args.cases)]
        batches = []
        for start in range(0, len(texts), 1000):
            chunk = [
                {"text": t, "channel": rng.choice(["好差评", "12345", "小红书", "办不成事"])}
                for t in texts[start : start + 1000]
            ]
            batches.append(http.post("/cases/batch", json={"complaints": chunk}).json()["batch_id"])
        ingest_s = time.perf_counter() - t0
        while not all(http.get(f"/batches/{b}").json()["done"] for b in batches):
            time.sleep(1)
        drafted_s = time.perf_counter() - t0
        print(f"seeded {args.cases} cases: stored in {ingest_s:.1f} s, all drafted after {drafted_s:.1f} s", flush=True)

        ids = [
            c["id"]
            for p in range(1, 51)
            for c in http.get("/cases", params={"page": p, "page_size": 200, "sort": "received_at"}).json()["items"]
        ]
        rng.shuffle(ids)
        decide = ids[: int(0.15 * len(ids))]

        def decision(client: httpx.Client, i: int) -> httpx.Response:
            case_id = decide[i]
            v = client.get(f"/cases/{case_id}").json()["version"]
            if i % 3 == 0:
                return client.post(f"/cases/{case_id}/reject", json={"version": v, "reason": "答复不具体"})
            return client.post(f"/cases/{case_id}/approve", json={"version": v})

        per = len(decide) // args.clients
        decisions = run_clients(args.clients, per, _with_headers(decision, headers), base) if per else {}
        # As after any bulk load (PostgreSQL's own advice): refresh planner statistics and the visibility
        # map, which autovacuum would otherwise do some minutes later.
        with sa.create_engine(url, isolation_level="AUTOCOMMIT").connect() as conn:
            conn.execute(sa.text("VACUUM ANALYZE"))
        departments = [d["name"] for d in http.get("/departments").json()]
        stats = http.get("/stats").json()
        print(f"decided {decisions.get('requests', 0)} cases; queue: {stats['by_status']}", flush=True)
        sorts = ["-received_at", "received_at", "-confidence"]

        def list_call(client: httpx.Client, i: int) -> httpx.Response:
            params = {
                "department": departments[i % len(departments)],
                "status": "drafted",
                "page": 1 + i % 5,
                "sort": sorts[i % 3],
            }
            return client.get("/cases", params=params)

        new_texts = [t for t, _, _ in synth(random.Random(11), args.clients * 20)]  # 10 + 10 per client

        def ingest_call(client: httpx.Client, i: int) -> httpx.Response:
            return client.post("/cases", json={"text": new_texts[i], "channel": "12345"})

        def detail_call(client: httpx.Client, i: int) -> httpx.Response:
            return client.get(f"/cases/{ids[i % len(ids)]}")

        results: dict[str, object] = {}
        phases = (
            # label, call, requests per client, requests per second per client (None: saturate)
            ("list_queue", list_call, 100, None),
            ("list_queue_at_50rps", list_call, 25, 2.5),
            ("list_queue_at_100rps", list_call, 50, 5.0),
            ("ingest_offline", ingest_call, 10, None),
            ("ingest_offline_at_20rps", ingest_call, 10, 1.0),
            ("case_detail", detail_call, 50, None),
            ("case_detail_at_100rps", detail_call, 50, 5.0),
        )
        for label, call, per_client, rate in phases:
            results[label] = run_clients(args.clients, per_client, _with_headers(call, headers), base, rate)
            print(label, results[label], flush=True)
        results.update(
            {
                "cases": args.cases,
                "clients": args.clients,
                "seed_store_s": round(ingest_s, 1),
                "seed_drafted_s": round(drafted_s, 1),
                "decisions": decisions,
                "queue_by_status": stats["by_status"],
                "cpus": os.cpu_count(),
                "database": "PostgreSQL 127.0.0.1:5432",
                "command": "python benchmarks/bench_api.py",
            }
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin_engine.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


def _with_headers(
    call: Callable[[httpx.Client, int], httpx.Response], headers: dict[str, str]
) -> Callable[[httpx.Client, int], httpx.Response]:
    def wrapped(client: httpx.Client, i: int) -> httpx.Response:
        client.headers.update(headers)
        return call(client, i)

    return wrapped


if __name__ == "__main__":
    main()
