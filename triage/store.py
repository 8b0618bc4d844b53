"""Durable storage with SQLAlchemy 2: SQLite in the data dir by default, PostgreSQL via a URL.

Holds what the vector index is rebuilt from: past cases (imported history and approved cases) and
the unlabelled corpus the text model learns the language of complaints from. Chroma is an index
over these rows, never the only copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import DateTime, String, Text, create_engine, event, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column, sessionmaker

from triage.errors import StoreError
from triage.models import PastCase

__all__ = ["Base", "CorpusText", "HistoryStore", "PastCaseRow", "StoreError", "make_engine", "upgrade"]


class Base(DeclarativeBase):
    pass


def content_hash(text: str) -> str:
    """Whitespace-insensitive hash of a text: the identity of a row that has no id of its own."""
    return hashlib.sha256("".join(text.split()).encode()).hexdigest()[:16]


class PastCaseRow(Base):
    __tablename__ = "past_cases"

    id: Mapped[str] = mapped_column(String(200), primary_key=True)
    text: Mapped[str] = mapped_column(Text)
    text_hash: Mapped[str] = mapped_column(String(32), index=True)
    department: Mapped[str] = mapped_column(String(100), index=True)
    title: Mapped[str | None] = mapped_column(Text)
    typical_problem_id: Mapped[str | None] = mapped_column(String(100))
    root_cause: Mapped[str | None] = mapped_column(Text)
    reply: Mapped[str | None] = mapped_column(Text)
    channel: Mapped[str | None] = mapped_column(String(50))
    created_at: Mapped[str | None] = mapped_column(String(50))
    source: Mapped[str] = mapped_column(String(20), default="imported")
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=lambda: datetime.now(UTC))

    def to_model(self) -> PastCase:
        return PastCase.model_validate(self, from_attributes=True)

    @classmethod
    def from_model(cls, case: PastCase) -> PastCaseRow:
        return cls(**case.model_dump(), text_hash=content_hash(case.text))


class CorpusText(Base):
    """Unlabelled text (messages without a department) for fitting the offline text model."""

    __tablename__ = "corpus_texts"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)  # content hash
    text: Mapped[str] = mapped_column(Text)


def database_url(url: str | None, data_dir: Path) -> str:
    return url or f"sqlite:///{data_dir / 'triage.db'}"


def make_engine(url: str) -> Engine:
    """An engine with the schema migrated to the newest revision."""
    try:
        sqlite = url.startswith("sqlite")
        # The API serves up to 40 requests at once (Starlette's thread pool), plus background drafters.
        pool = {} if sqlite else {"pool_size": 40, "max_overflow": 10, "pool_timeout": 10}
        # hide_parameters: errors and logs show statements, never the complaints and contacts bound to them
        engine = create_engine(url, pool_pre_ping=True, hide_parameters=True, **pool)
        if sqlite:
            event.listen(engine, "connect", _sqlite_pragmas)
        upgrade(engine)
    except SQLAlchemyError as exc:
        raise StoreError(f"database {engine_label(url)} is unavailable: {type(exc).__name__}: {exc}") from exc
    return engine


def _sqlite_pragmas(connection: Any, _record: Any) -> None:
    # WAL lets the API read while a decision is written; the busy timeout queues writers instead of
    # failing them; SQLite enforces foreign keys only when asked.
    cursor = connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=10000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def upgrade(engine: Engine) -> str:
    """Apply every Alembic migration not yet applied; returns the revision the database is at."""
    from alembic import command
    from alembic.config import Config
    from alembic.runtime.migration import MigrationContext

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "head")
    with engine.connect() as connection:
        return str(MigrationContext.configure(connection).get_current_revision())


def engine_label(url: str) -> str:
    """The URL without its password, for messages."""
    from sqlalchemy.engine import make_url

    return make_url(url).render_as_string(hide_password=True)


class HistoryStore:
    """Past cases and the unlabelled corpus; every write is one transaction."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._session = sessionmaker(engine, expire_on_commit=False)

    def _run(self) -> Session:
        return self._session()

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self._run() as s:
            for start in range(0, len(ids), 500):
                chunk = list(ids[start : start + 500])
                found.update(s.scalars(select(PastCaseRow.id).where(PastCaseRow.id.in_(chunk))))
        return found

    def add_cases(self, cases: Iterable[PastCase]) -> list[PastCase]:
        """Insert cases whose id is new; returns the ones inserted (in order)."""
        cases = list(cases)
        known = self.existing_ids([c.id for c in cases])
        fresh: list[PastCase] = []
        seen: set[str] = set()
        for c in cases:
            if c.id in known or c.id in seen:
                continue
            seen.add(c.id)
            fresh.append(c)
        if not fresh:
            return []
        try:
            with self._run() as s, s.begin():
                s.add_all(PastCaseRow.from_model(c) for c in fresh)
        except SQLAlchemyError as exc:
            raise StoreError(f"could not store past cases: {type(exc).__name__}: {exc}") from exc
        return fresh

    def cases(self) -> Iterator[PastCase]:
        with self._run() as s:
            for row in s.scalars(select(PastCaseRow).order_by(PastCaseRow.added_at, PastCaseRow.id)):
                yield row.to_model()

    def count_cases(self) -> int:
        from sqlalchemy import func

        with self._run() as s:
            return int(s.scalar(select(func.count()).select_from(PastCaseRow)) or 0)

    def add_corpus(self, texts: Iterable[str]) -> int:
        rows = {content_hash(t): t for t in texts if t and t.strip()}
        if not rows:
            return 0
        with self._run() as s:
            known: set[str] = set()
            keys = list(rows)
            for start in range(0, len(keys), 500):
                known.update(s.scalars(select(CorpusText.id).where(CorpusText.id.in_(keys[start : start + 500]))))
        new = [CorpusText(id=k, text=v) for k, v in rows.items() if k not in known]
        with self._run() as s, s.begin():
            s.add_all(new)
        return len(new)

    def corpus(self) -> list[str]:
        with self._run() as s:
            return list(s.scalars(select(CorpusText.text).order_by(CorpusText.id)))
