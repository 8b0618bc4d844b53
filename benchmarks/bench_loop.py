"""The loop's reads under load, and importing complaints.

    .venv/bin/python benchmarks/bench_loop.py [--cases 100000] [--clients 20] [--part all|api|import]

api: a scratch PostgreSQL database (127.0.0.1:5432) holding --cases cases spread over two years, 18
     departments and the built-in typical problems, in every state of the loop (drafted, approved, reply
     sent, followed up, reopened, rejected, closed; some supervised, reminded, overdue), written with SQL in
     bulk (seeding through the API would take most of the run) and VACUUM ANALYZEd. `triage serve` answers
     20 clients (benchmarks/loadgen.py): GET /supervision, GET /problems, GET /problems/{id}, saturated and
     paced; then the same with TRIAGE_FIGURES_CACHE_S=0 (every request counts the cases).
import: `triage cases import` of 10,000 complaints (JSONL, with times and votes) into a fresh workspace on
     the embedded defaults, drafting included; rows a second.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_triage import free_port, synth, vacuum
from loadgen import Conn, run_clients

ROOT = Path(__file__).resolve().parents[1]
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
STATUSES = [  # (status, share)
    ("drafted", 0.45),
    ("approved", 0.08),
    ("reply_sent", 0.10),
    ("closed", 0.25),
    ("reopened", 0.02),
    ("rejected", 0.05),
    ("returned", 0.01),
    ("new", 0.04),
]


def seed(url: str, n: int, rng: random.Random) -> None:
    """`n` cases in every state of the loop, inserted in bulk."""
    engine = sa.create_engine(url)
    with engine.connect() as conn:
        departments = [r[0] for r in conn.execute(sa.text("SELECT DISTINCT department FROM problems"))]
        problems = [tuple(r) for r in conn.execute(sa.text("SELECT id, department FROM problems"))]
    texts = [t for t, _, _ in synth(rng, 2000)]
    now = datetime.now(UTC)
    start = now - timedelta(days=730)
    statuses = [s for s, share in STATUSES for _ in range(int(share * 100))]
    rows = []
    for i in range(n):
        complained = start + timedelta(seconds=rng.uniform(0, 730 * 86400))
        status = rng.choice(statuses)
        problem = rng.choice(problems) if rng.random() < 0.6 else None
        department = problem[1] if problem else rng.choice(departments)
        reply_due = complained + timedelta(days=7)
        replied = status in ("reply_sent", "closed")
        sent = complained + timedelta(days=rng.uniform(1, 10)) if replied else None
        followed = status == "closed" and rng.random() < 0.7
        is_open = status in ("new", "drafted", "approved", "reopened", "returned")
        decided = status in ("approved", "reply_sent", "closed")
        rows.append(
            {
                "id": str(uuid.uuid4()),
                "external_id": f"B{i}",
                "text": texts[i % len(texts)],
                "channel": rng.choice(["好差评", "12345", "小红书", "抖音", "办不成事"]),
                "rating": rng.choice([1, 2, 3, 4, 5]),
                "region": rng.choice(["浦东新区", "黄浦区", "徐汇区", "静安区", "闵行区"]),
                "complained_at": complained,
                "received_at": complained,
                "updated_at": complained,
                "status": status,
                "department": department,
                "typical_problem_id": problem[0] if problem else None,
                "confidence": rng.random(),
                "draft_no": 0 if status == "new" else 1,
                "version": 2,
                "submitted_by": "bench",
                "submitter_type": "enterprise" if rng.random() < 0.15 else "individual",
                "contact_due_at": complained + timedelta(days=1),
                "reply_due_at": reply_due,
                "due_at": reply_due if is_open else None,
                "contacted_at": complained + timedelta(hours=12) if status != "new" else None,
                "approved_at": complained + timedelta(days=1) if decided else None,
                "reply_sent_at": sent,
                "satisfaction": rng.choice(["满意", "满意", "基本满意", "不满意"]) if followed else None,
                "supervised_at": now if is_open and rng.random() < 0.02 else None,
                "reminded_at": now if is_open and rng.random() < 0.3 else None,
                "urgent": False,
                "returns": 1 if status == "returned" else 0,
                "bounces": 0,
                "appeal_upheld": False,
            }
        )
    insert = sa.text(f"INSERT INTO cases ({', '.join(rows[0])}) VALUES ({', '.join(':' + k for k in rows[0])})")
    with engine.begin() as conn:
        for begin in range(0, len(rows), 5000):
            conn.execute(insert, rows[begin : begin + 5000])
        # a third of the problems are under rectification, some past their deadline, some done
        ids = [p[0] for p in problems]
        for k, pid in enumerate(ids):
            deadline = now + timedelta(days=rng.randint(-120, 120))
            status = ["rectifying", "rectified", "verified", "confirmed"][k % 4]
            done = deadline - timedelta(days=rng.randint(-20, 30)) if status in ("rectified", "verified") else None
            conn.execute(
                sa.text("UPDATE problems SET status=:s, deadline=:d, rectified_at=:r WHERE id=:i"),
                {"s": status, "d": deadline, "r": done, "i": pid},
            )
    engine.dispose()


def serve(env: dict[str, str], tmp: Path, port: int, headers: dict[str, str]) -> subprocess.Popen[bytes]:
    log = (tmp / "serve.log").open("a")
    proc = subprocess.Popen([sys.executable, "-m", "triage", "serve"], env=env, stdout=log, stderr=log)
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", headers=headers).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"triage serve exited with {proc.returncode}; see {tmp / 'serve.log'}")
        time.sleep(0.3)


def api_part(args: argparse.Namespace, results: dict[str, Any]) -> None:
    name = f"triage_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-loop-"))
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "TRIAGE_DATA_DIR": str(tmp / "ws"),
        "TRIAGE_DATABASE_URL": url,
        "TRIAGE_API_PORT": str(port),
        "TRIAGE_ESCALATION_EVERY_S": "0",
    }
    triage = [sys.executable, "-m", "triage"]
    try:
        subprocess.run([*triage, "kb", "reindex"], env=env, check=True, capture_output=True)
        key = subprocess.run(
            [*triage, "users", "add", "bench", "--role", "admin"], env=env, check=True, capture_output=True, text=True
        ).stdout.strip()
        headers = {"Authorization": f"Bearer {key}"}
        t0 = time.perf_counter()
        seed(url, args.cases, random.Random(5))
        vacuum(url)
        results["seed_s"] = round(time.perf_counter() - t0, 1)
        print(f"seeded {args.cases} cases in {results['seed_s']} s", flush=True)
        problem_ids = [r[0] for r in sa.create_engine(url).connect().execute(sa.text("SELECT id FROM problems"))]

        async def supervision(conn: Conn, i: int) -> int:
            return (await conn.request("GET", "/supervision"))[0]

        async def problems(conn: Conn, i: int) -> int:
            return (await conn.request("GET", "/problems"))[0]

        async def problem(conn: Conn, i: int) -> int:
            return (await conn.request("GET", f"/problems/{problem_ids[i % len(problem_ids)]}"))[0]

        for cache in ("10", "0"):
            proc = serve({**env, "TRIAGE_FIGURES_CACHE_S": cache}, tmp, port, headers)
            try:
                phases = [
                    ("supervision", supervision, 50, None),
                    ("problems", problems, 50, None),
                    ("supervision_at_20rps", supervision, 10, 1.0),
                    ("problems_at_20rps", problems, 10, 1.0),
                ]
                if cache == "10":
                    phases += [("problem_detail", problem, 25, None), ("problem_detail_at_20rps", problem, 10, 1.0)]
                for label, call, per, rate in phases:
                    key_ = f"{label}_cache_{cache}s"
                    results[key_] = run_clients(("127.0.0.1", port), headers, args.clients, per, call, rate)
                    print(key_, results[key_], flush=True)
            finally:
                proc.terminate()
                proc.wait(30)
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def import_part(args: argparse.Namespace, results: dict[str, Any]) -> None:
    tmp = Path(tempfile.mkdtemp(prefix="bench-import-cases-"))
    rng = random.Random(9)
    file = tmp / "complaints.jsonl"
    start = datetime(2019, 1, 1)
    with file.open("w", encoding="utf-8") as out:
        for i, (text, _, _) in enumerate(synth(rng, args.rows)):
            when = start + timedelta(minutes=37 * i)
            row = {"id": f"C{i}", "text": text, "created_at": when.strftime("%Y/%m/%d %H:%M:%S"), "likes": i % 9}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")}, "TRIAGE_DATA_DIR": str(tmp / "ws")}
    subprocess.run([sys.executable, "-m", "triage", "kb", "reindex"], env=env, check=True, capture_output=True)
    t0 = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "triage", "cases", "import", str(file), "--channel", "12345"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    assert done.returncode == 0, done.stderr[-2000:]
    results["import"] = {
        "rows": args.rows,
        "wall_s": round(wall, 1),
        "rows_per_s": round(args.rows / wall, 1),
        "output": done.stdout.strip(),
        "database": "SQLite (embedded default), drafting included, process start included",
    }
    print("import", results["import"], flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=100_000)
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--part", choices=["all", "api", "import"], default="all")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "loop.json")
    args = parser.parse_args()
    results: dict[str, Any] = {"cases": args.cases, "clients": args.clients, "command": "benchmarks/bench_loop.py"}
    if args.part in ("all", "import"):
        import_part(args, results)
    if args.part in ("all", "api"):
        api_part(args, results)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
