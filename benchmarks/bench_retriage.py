"""Batch re-triage benchmark: 10,000 cases in PostgreSQL, offline and against a 300 ms LLM endpoint.

    .venv/bin/python benchmarks/bench_retriage.py [--cases 10000] [--out FILE]

1. Seeds a scratch database on the local PostgreSQL with --cases drafted cases (synthesised from the
   built-in knowledge base, fixed seed).
2. Offline: re-triages all of them as one job with `triage retriage --resume JOB`, first with one
   worker process, then (a second job) with two worker processes sharing it.
3. LLM: the scripted OpenAI-compatible server from tests/fakes answers every draft after 300 ms; jobs
   of 60 x concurrency cases (--rounds) run at concurrency 1, 4, 8, 16 and 32 in one process (--runs).
   Throughput is compared with 0.8 x concurrency / 0.3 s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from pydantic import SecretStr

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
from bench_triage import synth, vacuum  # noqa: E402

from triage.access.models import NewUser  # noqa: E402
from triage.jobs.models import JobFilters, NewJob  # noqa: E402
from triage.models import Complaint  # noqa: E402
from triage.services import build_services  # noqa: E402
from triage.settings import Settings  # noqa: E402

PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"
SERVE = (
    "import sys, time; sys.path.insert(0, '.');"
    "from tests.fakes.openai_server import ScriptedOpenAI, Step; from tests.test_llm_drafter import GOOD;"
    "server = ScriptedOpenAI(latency_s=0.3, default=Step.answer(GOOD)).start();"
    "print(server.base_url, flush=True); time.sleep(10**6)"
)


def workers(env: dict[str, str], job_id: str, n: int, *extra: str) -> float:
    started = time.perf_counter()
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "triage", "retriage", "--resume", job_id, *extra],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(n)
    ]
    for p in procs:
        if p.wait() != 0:
            raise SystemExit(f"a worker exited with {p.returncode}")
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "retriage.json")
    parser.add_argument("--part", choices=["all", "offline", "llm"], default="all", help="Which runs to make.")
    parser.add_argument(
        "--runs",
        default="1x1,4x1,8x1,16x1,32x1,32x2",
        help="LLM runs as CONCURRENCYxPROCESSES, comma-separated (the concurrency is split over the processes)",
    )
    parser.add_argument(
        "--rounds", type=int, default=60, help="LLM job size: ROUNDS x concurrency cases (60: 18 s at 300 ms a call)"
    )
    args = parser.parse_args()
    name = f"triage_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    tmp = Path(tempfile.mkdtemp(prefix="bench-retriage-"))
    settings = Settings(data_dir=tmp / "ws", database_url=url)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "TRIAGE_DATA_DIR": str(settings.data_dir),
        "TRIAGE_DATABASE_URL": url,
    }
    results: dict[str, object] = {
        "cases": args.cases,
        "cpus": os.cpu_count(),
        "command": "python benchmarks/bench_retriage.py",
    }
    try:
        with build_services(settings, build=True) as services:
            kb = services.workspace.kb
            user = services.users.add(NewUser(name="bench", role="admin"), valid_departments=kb.department_names).user
            runs = [tuple(int(x) for x in r.split("x")) for r in args.runs.split(",")] if args.part != "offline" else []
            count = args.cases if args.part != "llm" else args.rounds * sum(c for c, _ in runs)
            texts = [t for t, _, _ in synth(__import__("random").Random(3), count)]
            t0 = time.perf_counter()
            ids: list[str] = []
            for start in range(0, len(texts), 1000):
                batch = [Complaint(text=t) for t in texts[start : start + 1000]]
                receipt = services.intake.ingest_batch(batch, user=user)
                for j in range(0, len(receipt.case_ids), 256):
                    services.drafts.draft_cases(receipt.case_ids[j : j + 256])
                ids += receipt.case_ids
            results["cases"] = len(ids)
            print(f"seeded {len(ids)} drafted cases in {time.perf_counter() - t0:.0f} s", flush=True)
            jobs = services.jobs
            for n in (1, 2) if args.part in ("all", "offline") else ():
                vacuum(url)
                job = jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="bench")
                wall = workers(env, job.id, n)
                summary = jobs.summary(job.id)
                assert summary.done == len(ids), summary
                results[f"offline_{n}_worker"] = {
                    "items": summary.done,
                    "wall_s": round(wall, 1),
                    "per_s": round(summary.done / wall, 1),
                }
                print(
                    f"offline, {n} worker(s): {summary.done} in {wall:.1f} s = {summary.done / wall:.0f}/s "
                    "(process start included)",
                    flush=True,
                )

        vacuum(url)
        # The scripted server runs in a process of its own, so its request handling does not compete
        # with the worker under test for this process's interpreter lock.
        server_proc = subprocess.Popen([sys.executable, "-c", SERVE], cwd=ROOT, stdout=subprocess.PIPE, text=True)
        assert server_proc.stdout is not None
        server = argparse.Namespace(base_url=server_proc.stdout.readline().strip())
        llm = settings.model_copy(
            update={
                "llm_model": "scripted-model",
                "llm_base_url": server.base_url,
                "llm_api_key": SecretStr("sk-bench"),
                "llm_max_retries": 0,
            }
        )
        llm_env = {
            **env,
            "TRIAGE_LLM_MODEL": "scripted-model",
            "TRIAGE_LLM_BASE_URL": server.base_url,
            "TRIAGE_LLM_API_KEY": "sk-bench",
        }
        rows = []
        offset = 0
        with build_services(llm) as services:
            jobs = services.jobs
            for concurrency, procs in runs:
                n = args.rounds * concurrency
                subset = ids[offset : offset + n]
                offset += n
                job = jobs.create(NewJob(filters=JobFilters(ids=subset)), actor="bench")
                if procs == 1:
                    t = time.perf_counter()
                    summary = jobs.work(job.id, concurrency=concurrency, rpm=100_000, tpm=100_000_000)
                    wall = time.perf_counter() - t
                else:  # timed from the first item claimed to the last done: process start-up (~3 s) excluded
                    workers(llm_env, job.id, procs, "--concurrency", str(concurrency // procs), "--chunk", "4")
                    summary = jobs.summary(job.id)
                    with services.db.engine.connect() as conn:
                        first, last = conn.execute(
                            sa.text("SELECT min(finished_at), max(finished_at) FROM job_items WHERE job_id = :j"),
                            {"j": job.id},
                        ).one()
                    wall = (last - first).total_seconds() + 0.3  # + the first item's own call
                assert summary.done == n and summary.failed == 0, summary
                rate = n / wall
                target = 0.8 * concurrency / 0.3
                row = {
                    "concurrency": concurrency,
                    "processes": procs,
                    "items": n,
                    "wall_s": round(wall, 2),
                    "per_s": round(rate, 1),
                    "target_per_s": round(target, 1),
                    "met": rate >= target,
                }
                rows.append(row)
                print(row, flush=True)
        server_proc.kill()
        server_proc.communicate()
        results["llm_300ms"] = rows
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, ensure_ascii=False, indent=1) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
