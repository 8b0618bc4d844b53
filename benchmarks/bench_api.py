"""Review API under load: 10,000 cases in PostgreSQL, 20 concurrent clients.

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
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).parent))
from bench_triage import free_port, synth, vacuum
from loadgen import Conn, run_clients

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "api.json")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes (triage serve --workers)")
    parser.add_argument("--keep", type=Path, help="keep the seeded database and data directory; record them here")
    parser.add_argument("--reuse", type=Path, help="skip seeding: use what an earlier --keep recorded")
    parser.add_argument("--only", help="comma-separated phases to run (default: all)")
    args = parser.parse_args()
    rng = random.Random(7)

    admin_engine = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    if args.reuse:
        kept = json.loads(args.reuse.read_text())
        name, tmp, key = kept["database"], Path(kept["dir"]), kept["key"]
    else:
        name = f"triage_bench_{uuid.uuid4().hex[:8]}"
        with admin_engine.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
        tmp = Path(tempfile.mkdtemp(prefix="bench-api-"))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "TRIAGE_DATA_DIR": str(tmp / "ws"),
        "TRIAGE_DATABASE_URL": url,
        "TRIAGE_API_PORT": str(port),
    }
    triage = [sys.executable, "-m", "triage"]
    proc: subprocess.Popen[bytes] | None = None
    chroma: subprocess.Popen[bytes] | None = None
    if args.workers > 1:  # several API processes share a Chroma server (over the same directory)
        chroma_port = free_port()
        (tmp / "ws").mkdir(parents=True, exist_ok=True)
        chroma_cmd = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(tmp / "ws" / "chroma")]
        chroma_log = (tmp / "chroma.log").open("a")
        chroma = subprocess.Popen(
            [*chroma_cmd, "--host", "127.0.0.1", "--port", str(chroma_port)], stdout=chroma_log, stderr=chroma_log
        )
        env["TRIAGE_CHROMA_URL"] = f"http://127.0.0.1:{chroma_port}"
    keep = bool(args.keep or args.reuse)
    try:
        if not args.reuse:
            subprocess.run([*triage, "kb", "reindex"], env=env, check=True, capture_output=True)  # build once
            key = subprocess.run(
                [*triage, "users", "add", "bench", "--role", "admin"],
                env=env,
                check=True,
                capture_output=True,
                text=True,
            ).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        log = (tmp / "serve.log").open("a")
        workers = ["--workers", str(args.workers)] if args.workers > 1 else []
        proc = subprocess.Popen([*triage, "serve", *workers], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        while True:
            try:
                if httpx.get(f"{base}/readyz", headers=headers).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None:
                raise SystemExit(f"triage serve exited with {proc.returncode}; see {tmp / 'serve.log'}")
            time.sleep(0.3)
        http = httpx.Client(base_url=base, headers=headers, timeout=120)
        results: dict[str, object] = {}

        if not args.reuse:
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
            print(f"seeded {args.cases} cases: stored in {ingest_s:.1f} s, all drafted after {drafted_s:.1f} s")
            results.update(seed_store_s=round(ingest_s, 1), seed_drafted_s=round(drafted_s, 1))

        ids = [
            c["id"]
            for p in range(1, 51)
            for c in http.get("/cases", params={"page": p, "page_size": 200, "sort": "received_at"}).json()["items"]
        ]
        rng.shuffle(ids)
        if not args.reuse:
            decide = ids[: int(0.15 * len(ids))]

            async def decision(conn: Conn, i: int) -> int:
                case_id = decide[i]
                v = (await conn.json("GET", f"/cases/{case_id}"))["version"]
                if i % 3 == 0:
                    body = {"version": v, "reason": "答复不具体"}
                    return (await conn.request("POST", f"/cases/{case_id}/reject", body=body))[0]
                return (await conn.request("POST", f"/cases/{case_id}/approve", body={"version": v}))[0]

            per = len(decide) // args.clients
            results["decisions"] = run_clients(("127.0.0.1", port), headers, args.clients, per, decision) if per else {}
            vacuum(url)
        departments = [d["name"] for d in http.get("/departments").json()]
        stats = http.get("/stats").json()
        print(f"queue: {stats['by_status']}", flush=True)
        sorts = ["-received_at", "received_at", "-confidence"]

        async def list_call(conn: Conn, i: int) -> int:
            params = {
                "department": departments[i % len(departments)],
                "status": "drafted",
                "page": 1 + i % 5,
                "sort": sorts[i % 3],
            }
            return (await conn.request("GET", "/cases", params))[0]

        new_texts = [t for t, _, _ in synth(random.Random(11), args.clients * 40)]

        async def ingest_call(conn: Conn, i: int) -> int:
            return (await conn.request("POST", "/cases", body={"text": new_texts[i], "channel": "12345"}))[0]

        async def detail_call(conn: Conn, i: int) -> int:
            return (await conn.request("GET", f"/cases/{ids[i % len(ids)]}"))[0]

        phases = (
            # label, call, requests per client, requests per second per client (None: saturate)
            ("list_queue", list_call, 200, None),
            ("list_queue_at_50rps", list_call, 25, 2.5),
            ("list_queue_at_100rps", list_call, 50, 5.0),
            ("ingest_offline", ingest_call, 20, None),
            ("ingest_offline_at_20rps", ingest_call, 20, 1.0),
            ("case_detail", detail_call, 100, None),
            ("case_detail_at_100rps", detail_call, 50, 5.0),
        )
        only = set(args.only.split(",")) if args.only else None
        offset = 0
        for label, call, per_client, rate in phases:
            if only and label not in only:
                continue

            async def shifted(conn: Conn, i: int, call: Any = call, offset: int = offset) -> int:
                return int(await call(conn, i + offset))

            results[label] = run_clients(("127.0.0.1", port), headers, args.clients, per_client, shifted, rate)
            offset += args.clients * per_client if call is ingest_call else 0
            print(label, results[label], flush=True)
        results.update(
            {
                "cases": len(ids),
                "clients": args.clients,
                "server_workers": args.workers,
                "queue_by_status": stats["by_status"],
                "cpus": os.cpu_count(),
                "database": "PostgreSQL 127.0.0.1:5432",
                "load_generator": "benchmarks/loadgen.py (asyncio, one keep-alive connection per client)",
                "command": " ".join(["python benchmarks/bench_api.py", *workers]),
            }
        )
        if not args.only and not args.reuse:
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
            print(f"wrote {args.out}")
        if args.keep:
            args.keep.write_text(json.dumps({"database": name, "dir": str(tmp), "key": key}))
            print(f"kept {name} and {tmp}; rerun with --reuse {args.keep}")
    finally:
        for child in (proc, chroma):
            if child is not None:
                child.terminate()
                child.wait(30)
        if not keep:
            with admin_engine.connect() as conn:
                conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
            shutil.rmtree(tmp, ignore_errors=True)
        admin_engine.dispose()


if __name__ == "__main__":
    main()
