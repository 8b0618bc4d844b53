"""`triage serve --workers 2`: two API processes on one port, sharing PostgreSQL and a Chroma server."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
from click.testing import CliRunner

from tests.conftest import free_port, fresh_postgres_database, running_chroma_server
from triage.cli import cli

TEXTS = [
    "随申办租房提取公积金提交了三次都被退回，说租赁合同没有备案",
    "暑假给孩子办护照，网上预约一直约不到号",
    "小区加装电梯申请补贴，街道说材料不齐又让重交",
    "营业执照变更在窗口排了一上午队，系统又崩了",
    "医保异地备案在网上提交后一直显示审核中",
    "社保卡丢了补办要等二十多天，还要再跑银行激活",
]


def test_more_than_one_worker_needs_database_and_chroma_servers(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["--data-dir", str(tmp_path / "ws"), "serve", "--workers", "2"])
    assert result.exit_code == 2
    assert "--workers 2 needs a PostgreSQL database" in result.stderr and "a Chroma server" in result.stderr


def _fresh(base: str, headers: dict[str, str]) -> Any:
    """A new connection per call, so the kernel spreads the calls over both workers' accept()."""

    def call(method: str, path: str, **kw: Any) -> httpx.Response:
        with httpx.Client(base_url=base, headers=headers, timeout=60) as http:
            return http.request(method, path, **kw)

    return call


def test_two_workers_share_the_database_the_index_and_rebuilt_models(builtin_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "ws"
    shutil.copytree(builtin_dir, data_dir)
    shutil.rmtree(data_dir / "chroma", ignore_errors=True)  # the index lives on the Chroma server
    port = free_port()
    with fresh_postgres_database() as url, running_chroma_server(tmp_path / "chroma-server") as chroma:
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
            "TRIAGE_DATA_DIR": str(data_dir),
            "TRIAGE_DATABASE_URL": url,
            "TRIAGE_CHROMA_URL": chroma,
            "TRIAGE_API_PORT": str(port),
        }
        # A new Chroma server holds no index yet: building it is an explicit step, as for an operator.
        built = subprocess.run(
            [sys.executable, "-m", "triage", "kb", "reindex"], env=env, capture_output=True, text=True, timeout=300
        )
        assert built.returncode == 0, built.stderr
        key = subprocess.run(
            [sys.executable, "-m", "triage", "users", "add", "boss", "--role", "admin"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert key.returncode == 0, key.stderr
        headers = {"Authorization": f"Bearer {key.stdout.strip()}"}
        log_path = tmp_path / "serve.log"
        log = log_path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "triage", "-v", "serve", "--workers", "2"], env=env, stdout=log, stderr=log
        )
        base = f"http://127.0.0.1:{port}"
        try:
            deadline = time.monotonic() + 120
            while len(set(re.findall(r"Started server process \[(\d+)\]", log_path.read_text()))) < 2:
                assert proc.poll() is None and time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
            while True:
                try:
                    if httpx.get(f"{base}/readyz", headers=headers, timeout=5).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                assert time.monotonic() < deadline, log_path.read_text()
                time.sleep(0.3)
            call = _fresh(base, headers)

            def ingest(i: int) -> dict[str, Any]:
                r = call("POST", "/cases", json={"text": f"{TEXTS[i % len(TEXTS)]}（第{i}次反映）", "channel": "12345"})
                assert r.status_code == 201, r.text
                return dict(r.json())

            with ThreadPoolExecutor(8) as pool:
                first = list(pool.map(ingest, range(24)))
            assert all(c["draft"] and not c["draft_error"] for c in first)

            # a batch is drafted by exactly one process's background drafter
            batch = call("POST", "/cases/batch", json={"complaints": [{"text": t} for t in TEXTS * 5]}).json()
            while not (progress := call("GET", f"/batches/{batch['batch_id']}").json())["done"]:
                assert time.monotonic() < deadline + 60, progress
                time.sleep(0.5)
            assert progress["by_status"] == {"drafted": 30}, progress
            assert log_path.read_text().count("this process sweeps the drafting queue") == 1

            # approvals become past cases on the shared Chroma server, then one worker rebuilds the
            # index: a new text model, so the other worker's loaded one no longer fits the index
            for case in first[:6]:
                approved = call("POST", f"/cases/{case['id']}/approve", json={"version": case["version"]})
                assert approved.status_code == 200, approved.text
            state = (data_dir / "models" / "current.json").read_text()
            rebuilt = call("POST", "/kb/reindex")
            assert rebuilt.status_code == 200, rebuilt.text
            assert (data_dir / "models" / "current.json").read_text() != state
            while "made by another process" not in log_path.read_text():  # the other worker's watcher
                assert time.monotonic() < deadline + 120, log_path.read_text()
                time.sleep(0.2)

            with ThreadPoolExecutor(8) as pool:
                after = list(pool.map(ingest, range(100, 124)))
            assert all(c["draft"] and not c["draft_error"] for c in after), [c["draft_error"] for c in after]
            evidence = {e["id"] for c in after for e in c["draft"]["evidence"] if e["kind"] == "past_case"}
            assert evidence & {f"case-{c['id']}" for c in first[:6]}, "approved cases are evidence after the rebuild"
        finally:
            proc.terminate()
            proc.wait(30)
            log.close()
