"""Durable storage with SQLAlchemy 2: SQLite in the data dir by default, PostgreSQL via a URL.

Holds what the vector index is rebuilt from: past cases (imported history and approved cases) and
the unlabelled corpus the text model learns the language of complaints from. Chroma is an index
over these rows, never the only copy.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime

from sqlalchemy import DateTime, String, Text, func, select
from sqlalchemy.orm import Mapped, mapped_column

from triage.database import Base, Database
from triage.models import PastCase


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


class HistoryStore:
    """Past cases and the unlabelled corpus; every write is one transaction."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def existing_ids(self, ids: Sequence[str]) -> set[str]:
        found: set[str] = set()
        with self.db.read() as s:
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
        with self.db.write() as s:
            s.add_all(PastCaseRow.from_model(c) for c in fresh)
        return fresh

    def cases(self) -> Iterator[PastCase]:
        with self.db.read() as s:
            for row in s.scalars(select(PastCaseRow).order_by(PastCaseRow.added_at, PastCaseRow.id)):
                yield row.to_model()

    def cases_since(self, when: datetime) -> list[PastCase]:
        """Past cases stored at or after `when`."""
        with self.db.read() as s:
            rows = s.scalars(select(PastCaseRow).where(PastCaseRow.added_at >= when).order_by(PastCaseRow.id))
            return [row.to_model() for row in rows]

    def count_cases(self) -> int:
        with self.db.read() as s:
            return int(s.scalar(select(func.count()).select_from(PastCaseRow)) or 0)

    def add_corpus(self, texts: Iterable[str]) -> int:
        rows = {content_hash(t): t for t in texts if t and t.strip()}
        if not rows:
            return 0
        with self.db.read() as s:
            known: set[str] = set()
            keys = list(rows)
            for start in range(0, len(keys), 500):
                known.update(s.scalars(select(CorpusText.id).where(CorpusText.id.in_(keys[start : start + 500]))))
        new = [CorpusText(id=k, text=v) for k, v in rows.items() if k not in known]
        with self.db.write() as s:
            s.add_all(new)
        return len(new)

    def corpus(self) -> list[str]:
        with self.db.read() as s:
            return list(s.scalars(select(CorpusText.text).order_by(CorpusText.id)))
