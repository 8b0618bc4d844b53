from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from api import create_app
from api.deps import Runtime
from tests.fakes.openai_server import ScriptedOpenAI
from triage.access.models import NewUser, User
from triage.cases.models import CaseDetail
from triage.errors import VectorStoreError
from triage.models import Complaint
from triage.pipeline import TriagePipeline
from triage.services import Services, build_services
from triage.settings import Settings
from triage.workspace import Workspace
from vectorstore import make_client
from vectorstore.store import close_client

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_SHARED_DIR", ROOT.parent / "shared"))
PG_ADMIN = "postgresql+psycopg://postgres@127.0.0.1:5432/postgres"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextmanager
def running_chroma_server(path: Path) -> Iterator[str]:
    """A real `chroma run` server on 127.0.0.1 keeping its data under `path`; yields its URL."""
    port = free_port()
    exe = Path(sys.executable).parent / "chroma"
    proc = subprocess.Popen(
        [str(exe), "run", "--path", str(path), "--host", "127.0.0.1", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={**os.environ, "ANONYMIZED_TELEMETRY": "False"},
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    try:
        while True:
            try:
                close_client(make_client(path=path, url=url))
                break
            except VectorStoreError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise
                time.sleep(0.3)
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=20)


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new database on the local PostgreSQL server, dropped afterwards. Under CI it must exist."""
    admin = sa.create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"triage_test_{uuid.uuid4().hex[:10]}"
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    except sa.exc.OperationalError as exc:
        admin.dispose()
        if os.environ.get("CI") == "true":
            pytest.fail(f"PostgreSQL at 127.0.0.1:5432 is required under CI: {exc}")
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {exc}")
    try:
        yield f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session", autouse=True)
def tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A writable copy of the shared tiktoken encodings (tiktoken deletes files it distrusts)."""
    source = SHARED / "tiktoken"
    target = tmp_path_factory.mktemp("tiktoken")
    if source.is_dir():
        for f in source.iterdir():
            if f.is_file() and len(f.name) == 40:
                shutil.copy(f, target / f.name)
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    yield target if any(target.iterdir()) else None
    if old is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _no_triage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build Settings explicitly; a developer's TRIAGE_* variables or .env must not leak in."""
    for key in list(os.environ):
        if key.startswith("TRIAGE_") and key != "TRIAGE_SHARED_DIR":
            monkeypatch.delenv(key)
    monkeypatch.chdir(ROOT / "tests")  # no .env here


@pytest.fixture(scope="session")
def builtin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace seeded with the built-in knowledge base, built once; copy it before mutating."""
    path = tmp_path_factory.mktemp("builtin-ws")
    Workspace.open(Settings(data_dir=path), build=True).close()
    return path


@pytest.fixture
def workspace_dir(builtin_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the built-in workspace."""
    target = tmp_path / "ws"
    shutil.copytree(builtin_dir, target)
    return target


@pytest.fixture(scope="session")
def offline_pipeline(builtin_dir: Path) -> TriagePipeline:
    """Read-only offline pipeline on the shared built-in workspace."""
    settings = Settings(data_dir=builtin_dir)
    return TriagePipeline.from_settings(settings, Workspace.open(settings))


@pytest.fixture
def llm_server() -> Iterator[ScriptedOpenAI]:
    server = ScriptedOpenAI().start()
    yield server
    server.stop()


def llm_settings(data_dir: Path, server: ScriptedOpenAI, **extra: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "llm_model": "scripted-model",
        "llm_base_url": server.base_url,
        "llm_api_key": "sk-test",
        "llm_timeout_s": 2.0,
        "llm_max_retries": 1,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def complaint(text: str, **fields: object) -> Complaint:
    return Complaint.model_validate({"text": text, **fields})


class ApiHarness:
    """A running app (lifespan entered) plus helpers to mint users and ingest complaints."""

    def __init__(self, client: TestClient, runtime: Runtime) -> None:
        self.client = client
        self.runtime = runtime
        self.services = runtime.services

    def headers(self, role: str, *departments: str) -> dict[str, str]:
        new = NewUser.model_validate(
            {"name": f"{role}-{uuid.uuid4().hex[:8]}", "role": role, "departments": list(departments)}
        )
        issued = self.services.users.add(new, valid_departments=self.services.workspace.kb.department_names)
        return {"Authorization": f"Bearer {issued.key}"}

    def ingest(self, headers: dict[str, str], text: str, **fields: object) -> dict[str, Any]:
        response = self.client.post("/cases", json={"text": text, **fields}, headers=headers)
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body


@contextmanager
def running_api(settings: Settings) -> Iterator[ApiHarness]:
    app = create_app(settings)
    with TestClient(app) as client:
        yield ApiHarness(client, app.state.runtime)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_database_url(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The case database an API test module runs against: SQLite, then the local PostgreSQL."""
    if request.param == "sqlite":
        yield f"sqlite:///{tmp_path_factory.mktemp('api-sqlite') / 'triage.db'}"
        return
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(scope="module")
def api(api_database_url: str, builtin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiHarness]:
    """The review API on a private copy of the built-in workspace, shared by one test module."""
    data_dir = tmp_path_factory.mktemp("api-ws") / "ws"
    shutil.copytree(builtin_dir, data_dir)
    with running_api(Settings(data_dir=data_dir, database_url=api_database_url)) as harness:
        yield harness


# -- the loop after the draft, at a fixed clock ----------------------------------------------
LOOP_TEXT = "社保卡丢了去补办，窗口说新卡要等二十多天才能拿，补个卡还让我过几天再跑一趟银行激活"
SHANGHAI = ZoneInfo("Asia/Shanghai")


def local(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=SHANGHAI)


class FixedClock:
    """'Now' for the services, moved by the test; never slept on."""

    def __init__(self) -> None:
        self.now = local("2025-09-30T12:00:00").astimezone(UTC)

    def __call__(self) -> datetime:
        return self.now

    def at(self, text: str) -> None:
        self.now = local(text).astimezone(UTC)


@dataclass
class Loop:
    services: Services
    clock: FixedClock
    admin: User
    supervisor: User

    def user(self, role: str, *departments: str) -> User:
        new = NewUser.model_validate(
            {"name": f"{role}-{uuid.uuid4().hex[:8]}", "role": role, "departments": list(departments)}
        )
        return self.services.users.add(new, valid_departments=self.services.workspace.kb.department_names).user

    def ingest(self, text: str = LOOP_TEXT, **fields: object) -> CaseDetail:
        complaint = Complaint.model_validate({"text": f"{text}（{uuid.uuid4().hex[:6]}）", **fields})
        case, created = self.services.intake.ingest(complaint, user=self.admin)
        assert created and case.department is not None
        return case


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def loop(request: pytest.FixtureRequest, builtin_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Loop]:
    data_dir = tmp_path_factory.mktemp("loop-ws") / "ws"
    shutil.copytree(builtin_dir, data_dir)
    sqlite = nullcontext(f"sqlite:///{data_dir / 'loop.db'}")
    with fresh_postgres_database() if request.param == "postgresql" else sqlite as url:
        clock = FixedClock()
        settings = Settings(data_dir=data_dir, database_url=url, figures_cache_s=0, notice_after_working_days=2)
        with build_services(settings, clock=clock) as services:
            loop = Loop(services, clock, admin=_add(services, "admin"), supervisor=_add(services, "supervisor"))
            yield loop


def _add(services: Services, role: str) -> User:
    new = NewUser.model_validate({"name": f"{role}-{uuid.uuid4().hex[:8]}", "role": role})
    return services.users.add(new, valid_departments=services.workspace.kb.department_names).user
