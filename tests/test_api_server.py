"""End to end: `triage users add` and `triage serve` as real processes, uvicorn on 127.0.0.1, PostgreSQL."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import free_port, fresh_postgres_database

TEXT = "随申办租房提取公积金提交了三次都被退回，说租赁合同没有备案，可合同早就备案了，能不能别让我反复上传"


@dataclass
class Server:
    base_url: str
    database_url: str
    env: dict[str, str]

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "triage", *args], env=self.env, capture_output=True, text=True, timeout=120
        )

    def key(self, name: str, role: str, *departments: str) -> dict[str, str]:
        extra = [a for d in departments for a in ("--department", d)]
        done = self.cli("users", "add", name, "--role", role, *extra)
        assert done.returncode == 0, done.stderr
        return {"Authorization": f"Bearer {done.stdout.strip()}"}


@pytest.fixture(scope="module")
def server(
    builtin_dir: Path, tmp_path_factory: pytest.TempPathFactory, tiktoken_cache: Path | None
) -> Iterator[Server]:
    data_dir = tmp_path_factory.mktemp("serve") / "ws"
    shutil.copytree(builtin_dir, data_dir)
    port = free_port()
    with fresh_postgres_database() as url:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
            "TRIAGE_DATA_DIR": str(data_dir),
            "TRIAGE_DATABASE_URL": url,
            "TRIAGE_API_PORT": str(port),
        }
        log = (data_dir.parent / "serve.log").open("w")
        proc = subprocess.Popen([sys.executable, "-m", "triage", "serve"], env=env, stdout=log, stderr=log)
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{base}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail("triage serve did not start:\n" + (data_dir.parent / "serve.log").read_text())
            time.sleep(0.2)
        try:
            yield Server(base, url, env)
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()


def test_serve_end_to_end(server: Server) -> None:
    intake = server.key("hotline-12345", "intake")
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        assert http.get("/cases").status_code == 401
        created = http.post("/cases", json={"text": TEXT, "channel": "12345", "external_id": "E2E-1"}, headers=intake)
        assert created.status_code == 201 and created.headers["location"] == f"/cases/{created.json()['id']}"
        case = created.json()
        worker = server.key("gjj-worker", "caseworker", case["department"])
        queue = http.get("/cases", params={"status": "drafted"}, headers=worker).json()
        assert case["id"] in {c["id"] for c in queue["items"]}
        approved = http.post(f"/cases/{case['id']}/approve", json={"version": case["version"]}, headers=worker)
        assert approved.status_code == 200 and approved.json()["status"] == "approved"
        assert http.get("/docs").status_code == 200
    listing = server.cli("users", "list")
    assert listing.returncode == 0 and "gjj-worker" in listing.stdout and "tk_" in listing.stdout


def test_two_caseworkers_approving_at_once_exactly_one_wins(server: Server) -> None:
    admin = server.key("race-admin", "admin")
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        cases = [http.post("/cases", json={"text": f"{TEXT}（第{i}次）"}, headers=admin).json() for i in range(5)]
        departments = sorted({c["department"] for c in cases})
        racers = [{"name": f"racer-{i}", "role": "caseworker", "departments": departments} for i in range(6)]
        keys = [http.post("/users", json=r, headers=admin).json()["key"] for r in racers]
    workers = [{"Authorization": f"Bearer {k}"} for k in keys]

    def approve(case: dict[str, object], headers: dict[str, str], start: threading.Barrier, codes: list[int]) -> None:
        with httpx.Client(base_url=server.base_url, timeout=30) as http:
            body = {"version": case["version"], "edits": {"reply": f"{headers['Authorization'][-6:]} 的答复"}}
            start.wait()
            codes.append(http.post(f"/cases/{case['id']}/approve", json=body, headers=headers).status_code)

    for case in cases:
        start, codes = threading.Barrier(len(workers)), list[int]()
        threads = [threading.Thread(target=approve, args=(case, w, start, codes)) for w in workers]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(codes) == [200] + [409] * (len(workers) - 1), codes
    engine = sa.create_engine(server.database_url)
    with engine.connect() as conn:
        ids = [c["id"] for c in cases]
        approvals = conn.execute(
            sa.select(sa.text("case_id")).select_from(sa.table("decisions")).where(sa.column("case_id").in_(ids))
        ).all()
        past = conn.execute(sa.text("SELECT count(*) FROM past_cases WHERE source = 'approved'")).scalar_one()
    engine.dispose()
    assert sorted(r[0] for r in approvals) == sorted(ids)  # one decision per case
    assert past >= len(cases)


def test_database_outage_answers_503_and_recovers(server: Server) -> None:
    admin = server.key("outage-admin", "admin")
    name = server.database_url.rsplit("/", 1)[1]
    pg = sa.create_engine("postgresql+psycopg://postgres@127.0.0.1:5432/postgres", isolation_level="AUTOCOMMIT")
    with httpx.Client(base_url=server.base_url, timeout=30) as http:
        with pg.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
            conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
        try:
            down = http.post("/cases", json={"text": TEXT, "external_id": "OUTAGE-1"}, headers=admin)
            assert down.status_code == 503 and down.json()["type"] == "/problems/database-unavailable"
            assert http.get("/readyz", headers=admin).status_code == 503
            assert http.get("/healthz").status_code == 200  # the process is alive; readiness is what failed
        finally:
            with pg.connect() as conn:
                conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        pg.dispose()
        assert http.get("/readyz", headers=admin).status_code == 200
        up = http.post("/cases", json={"text": TEXT, "external_id": "OUTAGE-1"}, headers=admin)
        assert up.status_code == 201  # nothing was half-written during the outage


def test_readme_run_command_serves_the_demo_on_embedded_defaults(
    builtin_dir: Path, tmp_path: Path, tiktoken_cache: Path | None
) -> None:
    """`make run` is `triage serve --demo`: SQLite and embedded Chroma in the data dir, a printed key."""
    data_dir = tmp_path / "ws"
    shutil.copytree(builtin_dir, data_dir)
    port = free_port()
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "TRIAGE_DATA_DIR": str(data_dir),
        "TRIAGE_API_PORT": str(port),
    }
    err = (tmp_path / "serve.err").open("w+")
    proc = subprocess.Popen([sys.executable, "-m", "triage", "serve", "--demo"], env=env, stdout=err, stderr=err)
    try:
        deadline = time.monotonic() + 90
        while "Uvicorn running" not in (tmp_path / "serve.err").read_text():
            assert proc.poll() is None and time.monotonic() < deadline, (tmp_path / "serve.err").read_text()
            time.sleep(0.2)
        log = (tmp_path / "serve.err").read_text()
        assert f"OpenAPI docs: http://127.0.0.1:{port}/docs" in log
        key = log.split("API key (shown once): ")[1].split()[0]
        queue = httpx.get(
            f"http://127.0.0.1:{port}/cases", headers={"Authorization": f"Bearer {key}"}, timeout=30
        ).json()
        assert queue["total"] == 10 and {c["status"] for c in queue["items"]} == {"drafted"}
        assert (data_dir / "triage.db").exists()  # the default database: SQLite in the data dir
    finally:
        proc.terminate()
        proc.wait(30)
        err.close()
