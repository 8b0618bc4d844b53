"""The case database on SQLite and on the PostgreSQL server at 127.0.0.1:5432, with real migrations."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from tests.conftest import complaint, fresh_postgres_database
from triage.database import Database, make_engine, upgrade
from triage.models import PastCase
from triage.pipeline import TriagePipeline
from triage.settings import Settings
from triage.store import HistoryStore
from triage.workspace import Workspace


@pytest.fixture(scope="module")
def postgres_url() -> Iterator[str]:
    with fresh_postgres_database() as url:
        yield url


def _empty_schema(url: str) -> None:
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(sa.text("DROP SCHEMA public CASCADE"))
        conn.execute(sa.text("CREATE SCHEMA public"))
    engine.dispose()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'triage.db'}"
    url: str = request.getfixturevalue("postgres_url")
    _empty_schema(url)  # each test starts from an empty schema
    return url


def test_migrations_create_the_schema_at_head(database_url: str) -> None:
    engine = make_engine(database_url)
    assert upgrade(engine) == "0005"  # idempotent: already at head
    tables = {"past_cases", "corpus_texts", "cases", "drafts", "decisions", "audit_events", "users", "api_keys"}
    tables |= {"jobs", "job_items", "problems", "problem_events", "case_requests"}
    assert tables | {"batches", "alembic_version"} <= set(sa.inspect(engine).get_table_names())
    engine.dispose()


def test_past_cases_round_trip_and_are_added_once(database_url: str) -> None:
    engine = make_engine(database_url)
    store = HistoryStore(Database(engine))
    case = PastCase(
        id="P1",
        text="公积金租房提取被退回三次",
        department="市公积金中心",
        title="提取被退回",
        typical_problem_id="TP-GJJ-001",
        root_cause="备案信息未共享",
        reply="已核实",
        channel="12345",
        created_at="2026-11-30",
    )
    assert [c.id for c in store.add_cases([case, case.model_copy(update={"id": "P2"})])] == ["P1", "P2"]
    assert store.add_cases([case]) == []
    assert store.count_cases() == 2
    assert next(c for c in store.cases() if c.id == "P1") == case
    assert store.add_corpus(["无标注留言", "无标注留言", "  "]) == 1
    assert store.add_corpus(["无标注留言"]) == 0
    assert store.corpus() == ["无标注留言"]
    engine.dispose()


def test_workspace_history_lives_in_postgresql(postgres_url: str, tmp_path: Path) -> None:
    _empty_schema(postgres_url)
    settings = Settings(data_dir=tmp_path / "ws", database_url=postgres_url)
    with Workspace.open(settings) as ws:
        fresh = ws.import_history(
            [PastCase(id=f"G{i}", text=f"第{i}次反映小区电梯停运物业不修", department="市住建委") for i in range(3)]
        )
        assert len(fresh) == 3
        draft = TriagePipeline.from_settings(settings, ws).triage(complaint("电梯又停运了，物业还是不修"))
        assert any(e.kind == "past_case" for e in draft.evidence)
    assert not (tmp_path / "ws" / "triage.db").exists()  # nothing went to SQLite
    with Workspace.open(settings) as ws:
        assert {c.id for c in ws.past_cases()} == {"G0", "G1", "G2"}
