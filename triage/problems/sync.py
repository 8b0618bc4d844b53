"""Typical problems between the knowledge-base files and the case database.

The database holds the problems as tracked records; the YAML/JSON files stay the import and export
format. The first build seeds the table from the workspace's knowledge base. `triage kb load
--problems FILE` upserts the file's problems: their knowledge fields (title, description, department,
service items, root cause, rectification, reply guidance) are replaced, their lifecycle is kept. A
problem the file no longer lists is archived, unless cases refer to it: then it stays, and the load
says so. Every build takes the problems a complaint may match (not archived, of a department in the
taxonomy) from the table.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from triage.cases.rows import CaseRow, utcnow
from triage.database import Database
from triage.models import ProblemStatus, TypicalProblem
from triage.problems.rows import ProblemEventRow, ProblemRow
from triage.problems.states import MATCHABLE

KB_FIELDS = ("title", "description", "department", "service_items", "root_cause", "rectification", "reply_guidance")


@dataclass
class SyncReport:
    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    archived: list[str] = field(default_factory=list)  # no longer in the file, no cases
    kept: list[str] = field(default_factory=list)  # no longer in the file, but cases refer to them

    def lines(self) -> list[str]:
        out = []
        if self.kept:
            out.append(
                f"kept {len(self.kept)} typical problem(s) the file no longer lists, because cases refer to them: "
                f"{', '.join(self.kept[:10])}{' ...' if len(self.kept) > 10 else ''}; archive them with "
                "POST /problems/{id}/archive once they are settled"
            )
        if self.archived:
            out.append(f"archived {len(self.archived)} typical problem(s) the file no longer lists")
        return out


def to_model(row: ProblemRow) -> TypicalProblem:
    return TypicalProblem(
        id=row.id,
        title=row.title,
        description=row.description,
        department=row.department,
        service_items=list(row.service_items or []),
        root_cause=row.root_cause,
        rectification=row.rectification,
        reply_guidance=row.reply_guidance,
        unified_reply=row.unified_reply,
        status=ProblemStatus(row.status),
    )


def new_row(p: TypicalProblem, *, source: str, now: datetime) -> ProblemRow:
    return ProblemRow(
        id=p.id,
        title=p.title,
        description=p.description,
        department=p.department,
        service_items=list(p.service_items),
        root_cause=p.root_cause,
        rectification=p.rectification,
        reply_guidance=p.reply_guidance,
        unified_reply=p.unified_reply,
        status=p.status.value,
        source=source,
        created_at=now,
        updated_at=now,
    )


def seed_if_empty(db: Database, problems: Sequence[TypicalProblem], *, actor: str) -> int:
    """Seed the table from the knowledge base on the first build; returns how many were added."""
    with db.write() as s:
        if s.scalar(select(func.count()).select_from(ProblemRow)):
            return 0
        now = utcnow()
        for p in problems:
            s.add(new_row(p, source="kb", now=now))
        s.flush()
        for p in problems:
            s.add(ProblemEventRow(problem_id=p.id, actor=actor, action="import", changes={"status": [None, p.status]}))
        return len(problems)


def upsert(db: Database, problems: Sequence[TypicalProblem], *, actor: str) -> SyncReport:
    """Make the table match a knowledge-base file (see the module docstring)."""
    report = SyncReport()
    listed = {p.id: p for p in problems}
    now = utcnow()
    with db.write() as s:
        rows = {r.id: r for r in s.scalars(select(ProblemRow))}
        for pid, p in listed.items():
            row = rows.get(pid)
            if row is None:
                s.add(new_row(p, source="kb", now=now))
                s.flush()
                _event(s, pid, actor, "import", {"status": [None, p.status.value]})
                report.added.append(pid)
                continue
            changes = {f: [getattr(row, f), getattr(p, f)] for f in KB_FIELDS if getattr(row, f) != getattr(p, f)}
            if row.status == ProblemStatus.ARCHIVED and row.merged_into is None:  # listed again: back in use
                changes["status"] = [row.status, ProblemStatus.CONFIRMED.value]
            if changes:
                for f, (_, value) in changes.items():
                    setattr(row, f, list(value) if f == "service_items" else value)
                row.updated_at = now
                s.flush()
                _event(s, pid, actor, "import", {k: [_plain(a), _plain(b)] for k, (a, b) in changes.items()})
                report.updated.append(pid)
        gone = [r for pid, r in rows.items() if pid not in listed and r.status != ProblemStatus.ARCHIVED]
        with_cases = _with_cases(s, [r.id for r in gone])
        for row in gone:
            if row.id in with_cases:
                report.kept.append(row.id)
                continue
            before = row.status
            row.status, row.updated_at = ProblemStatus.ARCHIVED.value, now
            s.flush()
            _event(
                s, row.id, actor, "archive", {"status": [before, row.status]}, note="no longer in the knowledge base"
            )
            report.archived.append(row.id)
    return report


def matchable(db: Database, departments: Sequence[str]) -> list[TypicalProblem]:
    """The problems a build indexes: not archived, of a department in the taxonomy; in id order."""
    with db.read() as s:
        rows = s.scalars(
            select(ProblemRow)
            .where(ProblemRow.status.in_([st.value for st in MATCHABLE]), ProblemRow.department.in_(departments))
            .order_by(ProblemRow.id)
        )
        return [to_model(r) for r in rows]


def _with_cases(s: Session, ids: list[str]) -> set[str]:
    if not ids:
        return set()
    return set(s.scalars(select(CaseRow.typical_problem_id).where(CaseRow.typical_problem_id.in_(ids)).distinct()))


def _event(s: Session, pid: str, actor: str, action: str, changes: dict[str, object], note: str | None = None) -> None:
    s.add(ProblemEventRow(problem_id=pid, actor=actor, action=action, changes=changes, note=note))


def _plain(value: object) -> object:
    return list(value) if isinstance(value, tuple) else value
