"""With the database taken away, every API operation answers 503 and every CLI command exits 3 with
a one-line message: never a 500, never a traceback."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.conftest import PG_ADMIN, ApiHarness, fresh_postgres_database, running_api
from triage.cli import cli
from triage.settings import Settings

TEXT = "住房公积金租房提取申请被退回三次，窗口说材料不全但说不清缺什么"

# Operations that need no database: the caller (from the key cache), the taxonomy (from the models).
NO_DATABASE = {("GET", "/me"), ("GET", "/departments"), ("GET", "/typical-problems"), ("GET", "/healthz")}


@contextmanager
def database_away(url: str) -> Iterator[None]:
    """Refuse new connections to the database and end the ones open, as a stopped server would."""
    name = url.rsplit("/", 1)[1]
    pg = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    with pg.connect() as conn:
        conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
        conn.execute(sa.text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '{name}'"))
    try:
        yield
    finally:
        with pg.connect() as conn:
            conn.execute(sa.text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
        pg.dispose()


@pytest.fixture(scope="module")
def outage_db() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def outage_api(outage_db: str, builtin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    data_dir = tmp_path_factory.mktemp("outage-ws") / "ws"
    shutil.copytree(builtin_dir, data_dir)
    settings = Settings(data_dir=data_dir, database_url=outage_db, api_auth_cache_s=300)
    with running_api(settings) as harness:
        yield harness


def _requests(case_id: str, batch_id: str, job_id: str) -> dict[tuple[str, str], dict[str, Any]]:
    """One plausible request for every operation the API offers, by (method, path template)."""
    v = {"version": 2}
    return {
        ("GET", "/healthz"): {},
        ("GET", "/readyz"): {},
        ("POST", "/cases"): {"json": {"text": TEXT}},
        ("POST", "/cases/batch"): {"json": {"complaints": [{"text": TEXT}]}},
        ("GET", "/batches/{batch_id}"): {"path": {"batch_id": batch_id}},
        ("GET", "/cases"): {},
        ("GET", "/cases/{case_id}"): {"path": {"case_id": case_id}},
        ("GET", "/cases/{case_id}/audit"): {"path": {"case_id": case_id}},
        ("POST", "/cases/{case_id}/approve"): {"path": {"case_id": case_id}, "json": v},
        ("POST", "/cases/{case_id}/reject"): {"path": {"case_id": case_id}, "json": v | {"reason": "不属实"}},
        ("POST", "/cases/{case_id}/reassign"): {"path": {"case_id": case_id}, "json": v | {"department": "市公安局"}},
        ("POST", "/cases/{case_id}/retriage"): {"path": {"case_id": case_id}, "json": v},
        ("POST", "/cases/{case_id}/close"): {"path": {"case_id": case_id}, "json": v},
        ("GET", "/stats"): {},
        ("GET", "/me"): {},
        ("GET", "/departments"): {},
        ("GET", "/typical-problems"): {},
        ("POST", "/kb/reindex"): {},
        ("GET", "/users"): {},
        ("POST", "/users"): {"json": {"name": "newcomer", "role": "supervisor"}},
        ("PATCH", "/users/{name}"): {"path": {"name": "someone"}, "json": {"active": False}},
        ("POST", "/users/{name}/keys"): {"path": {"name": "someone"}},
        ("DELETE", "/users/{name}/keys/{prefix}"): {"path": {"name": "someone", "prefix": "tk_abcdefgh"}},
        ("POST", "/jobs"): {"json": {"filters": {"undecided": True}}},
        ("GET", "/jobs"): {},
        ("GET", "/jobs/{job_id}"): {"path": {"job_id": job_id}},
        ("POST", "/jobs/{job_id}/cancel"): {"path": {"job_id": job_id}},
        ("POST", "/cases/{case_id}/contact"): {"path": {"case_id": case_id}, "json": v},
        ("POST", "/cases/{case_id}/return"): {"path": {"case_id": case_id}, "json": v | {"reason": "不属本部门"}},
        ("POST", "/cases/{case_id}/send-reply"): {"path": {"case_id": case_id}, "json": v | {"channel": "短信"}},
        ("POST", "/cases/{case_id}/follow-up"): {"path": {"case_id": case_id}, "json": v | {"satisfaction": "满意"}},
        ("POST", "/cases/{case_id}/supervise"): {
            "path": {"case_id": case_id},
            "json": v | {"note": "督办", "due": "2099-01-01"},
        },
        ("POST", "/cases/{case_id}/extension"): {"path": {"case_id": case_id}, "json": v | {"reason": "复杂"}},
        ("POST", "/cases/{case_id}/appeal"): {"path": {"case_id": case_id}, "json": v | {"reason": "恶意"}},
        ("POST", "/cases/{case_id}/requests/{request_id}/decide"): {
            "path": {"case_id": case_id, "request_id": 1},
            "json": v | {"grant": True},
        },
        ("GET", "/problems"): {},
        ("POST", "/problems"): {"json": {"title": "新问题", "department": "市公安局"}},
        ("GET", "/problems/{problem_id}"): {"path": {"problem_id": "TP-GA-001"}},
        ("PATCH", "/problems/{problem_id}"): {
            "path": {"problem_id": "TP-GA-001"},
            "json": {"version": 1, "title": "x"},
        },
        **{
            ("POST", f"/problems/{{problem_id}}/{action}"): {
                "path": {"problem_id": "TP-GA-001"},
                "json": {"version": 1, **extra},
            }
            for action, extra in {
                "confirm": {},
                "plan": {"measures": "措施", "deadline": "2099-01-01"},
                "report": {"summary": "已整改"},
                "verify": {},
                "reopen": {"note": "仍有投诉"},
                "archive": {},
                "merge": {"into": "TP-GA-002"},
            }.items()
        },
        ("GET", "/supervision"): {},
        ("POST", "/supervision/sweep"): {},
    }


def test_every_api_operation_answers_503_without_its_database(outage_api: ApiHarness, outage_db: str) -> None:
    api = outage_api
    admin = api.headers("admin")
    assert api.client.get("/me", headers=admin).status_code == 200  # the key is now in the cache
    case = api.ingest(admin, TEXT)
    batch = api.client.post("/cases/batch", json={"complaints": [{"text": TEXT}]}, headers=admin).json()
    job = api.client.post("/jobs", json={"filters": {"ids": [case["id"]]}}, headers=admin).json()
    requests = _requests(str(case["id"]), batch["batch_id"], job["id"])
    schema = api.client.get("/openapi.json").json()
    operations = {(method.upper(), path) for path, ops in schema["paths"].items() for method in ops}
    assert operations == set(requests), "every operation is tried: add the new ones here"
    answers = {}
    with database_away(outage_db):
        for (method, path), spec in requests.items():
            url = path.format(**spec.get("path", {}))
            response = api.client.request(method, url, json=spec.get("json"), headers=admin)
            answers[(method, path)] = response.status_code
            if (method, path) not in NO_DATABASE:
                assert response.headers["content-type"] == "application/problem+json", (method, path, response.text)
                assert "Traceback" not in response.text
    expected = {op: 200 if op in NO_DATABASE else 503 for op in requests}
    assert answers == expected
    assert api.client.get(f"/cases/{case['id']}", headers=admin).status_code == 200  # and it recovers


def _cli_commands(tmp: Path) -> list[list[str]]:
    complaints = tmp / "complaints.jsonl"
    complaints.write_text(json.dumps({"text": TEXT}, ensure_ascii=False) + "\n", encoding="utf-8")
    history = tmp / "history.jsonl"
    history.write_text(json.dumps({"text": TEXT, "department": "市公积金中心"}, ensure_ascii=False) + "\n", "utf-8")
    departments = tmp / "departments.json"
    departments.write_text(json.dumps([{"name": "甲部门", "description": "综合"}], ensure_ascii=False), "utf-8")
    return [
        ["cases", "import", str(complaints)],
        ["problems", "list"],
        ["problems", "show", "TP-GA-001"],
        ["supervision"],
        ["supervision", "sweep"],
        ["triage", TEXT],
        ["triage", "--file", str(complaints)],
        ["demo"],
        ["kb", "load", "--departments", str(departments)],
        ["kb", "search", "公积金"],
        ["kb", "stats"],
        ["kb", "reindex"],
        ["db", "upgrade"],
        ["history", "import", str(history)],
        ["corpus", "import", str(complaints)],
        ["eval", "run", str(history), "--out", str(tmp / "eval")],
        ["retriage", "--undecided"],
        ["retriage", "--undecided", "--dry-run"],
        ["retriage", "--resume", "00000000-0000-0000-0000-000000000000"],
        ["serve"],
        ["users", "add", "someone", "--role", "supervisor"],
        ["users", "list"],
        ["users", "key", "someone"],
        ["users", "revoke", "someone"],
    ]


def test_every_cli_command_exits_3_with_a_message_without_its_database(
    outage_db: str, workspace_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TRIAGE_DATABASE_URL", outage_db)
    runner = CliRunner()
    with database_away(outage_db):
        for args in _cli_commands(tmp_path):
            result = runner.invoke(cli, ["--data-dir", str(workspace_dir), *args])
            assert result.exit_code == 3, (args, result.output, result.exception)
            assert result.output.strip().startswith("error: database"), (args, result.output)
            assert "Traceback" not in result.output
