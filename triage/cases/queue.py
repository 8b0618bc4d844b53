"""The queue: one page of the cases a caller may see, filtered and sorted, with the total.

Supervised cases (督办) still being handled come first in every sort: a supervisor's flag puts a case at
the top of its department's queue until its reply goes out (or it is closed or rejected).
"""

from __future__ import annotations

import functools
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Select, and_, bindparam, func, not_, or_, select

from triage.access import policy
from triage.access.models import User
from triage.cases import filters
from triage.cases.models import CasePage, CaseQuery
from triage.cases.queries import EXCERPT_CHARS
from triage.cases.rows import CaseRow
from triage.cases.states import OPEN, CaseStatus

_SORTS: dict[str, Any] = {
    "received_at": CaseRow.received_at.asc(),
    "-received_at": CaseRow.received_at.desc(),
    "updated_at": CaseRow.updated_at.asc(),
    "-updated_at": CaseRow.updated_at.desc(),
    "confidence": CaseRow.confidence.asc().nulls_first(),
    "-confidence": CaseRow.confidence.desc().nulls_last(),
    "due_at": CaseRow.due_at.asc().nulls_last(),
    "-due_at": CaseRow.due_at.desc().nulls_last(),
}

# The queue's own conditions, beside the shared case filters (their values are bound at execution).
_CONDITIONS: dict[str, Any] = {
    "overdue_at": lambda: CaseRow.due_at < bindparam("overdue_at", type_=CaseRow.due_at.type),
    "in_time_at": lambda: or_(
        CaseRow.due_at.is_(None), CaseRow.due_at >= bindparam("in_time_at", type_=CaseRow.due_at.type)
    ),
    "supervised_only": lambda: CaseRow.supervised_at.is_not(None),
    "unsupervised_only": lambda: CaseRow.supervised_at.is_(None),
}

# The queue's columns: everything a CaseSummary shows, and only the start of the text.
_QUEUE_COLUMNS = (
    CaseRow.id,
    CaseRow.external_id,
    CaseRow.status,
    CaseRow.department,
    CaseRow.typical_problem_id,
    CaseRow.channel,
    CaseRow.title,
    func.substr(CaseRow.text, 1, EXCERPT_CHARS + 1).label("excerpt"),
    CaseRow.confidence,
    CaseRow.draft_no,
    CaseRow.draft_error,
    CaseRow.version,
    CaseRow.batch_id,
    CaseRow.submitted_by,
    CaseRow.received_at,
    CaseRow.updated_at,
    CaseRow.decided_at,
    CaseRow.complained_at,
    CaseRow.due_at,
    CaseRow.supervised_at,
    CaseRow.submitter_type,
    CaseRow.bounces,
)
_QUEUE_FIELDS = tuple(c.key for c in _QUEUE_COLUMNS)
_TIMES = ("received_at", "updated_at", "decided_at", "complained_at", "due_at")


def _params(q: CaseQuery, user: User, now: datetime) -> dict[str, Any]:
    """The bound values of a queue query; which of them are present is the statement's shape."""
    values = filters.params(
        q,
        batch_id=q.batch_id,
        text=filters.like_pattern(q.text) if q.text else None,
        overdue_at=now if q.overdue else None,
        in_time_at=now if q.overdue is False else None,
        supervised_only=q.supervised is True,
        unsupervised_only=q.supervised is False,
    )
    return {**policy.case_scope(user), **values}


def _condition(name: str) -> Any:
    return _CONDITIONS[name]() if name in _CONDITIONS else filters.CONDITIONS[name]()


# A supervised case (督办) still being handled comes first, whatever the sort.
_PINNED_STATUSES = [st.value for st in OPEN if st is not CaseStatus.REPLY_SENT]
_PINNED = and_(CaseRow.supervised_at.is_not(None), CaseRow.status.in_(_PINNED_STATUSES))
PINNED_MAX = 500  # pinned cases listed at once (a supervisor flags a few, not hundreds)


@functools.lru_cache(maxsize=512)
def _statements(shape: tuple[str, ...], sort: str) -> tuple[Select[Any], Select[Any], Select[Any]]:
    """The pinned cases, the page of the others (with their count) and their bare count, for one shape
    of query, built once.

    Building a statement with its IN lists and computing its cache key was a fifth of a queue
    request; a statement reused with new bound values costs neither. Offset and limit are bound too.
    The pinned cases are a query of their own: ordering every page by "pinned first" would keep the
    database from walking the (department, status, ...) indexes the page is read from.
    """
    conditions = [_condition(name) for name in shape]
    order = (_SORTS[sort], CaseRow.id)
    pinned = select(*_QUEUE_COLUMNS).where(*conditions, _PINNED).order_by(*order).limit(PINNED_MAX)
    rest = [*conditions, not_(_PINNED)]
    count = select(func.count()).select_from(CaseRow).where(*rest)
    page = (
        select(*_QUEUE_COLUMNS, count.scalar_subquery().label("total"))
        .where(*rest)
        .order_by(*order)
        .offset(bindparam("offset"))
        .limit(bindparam("limit"))
    )
    return pinned, page, count


def list_cases(conn: Connection, q: CaseQuery, user: User, *, now: datetime) -> CasePage:
    """One page of the queue and the number of matching cases: pinned cases first, then the rest.

    The rest's count is an uncorrelated scalar subquery of its page (PostgreSQL runs it once, as an
    InitPlan, over the same index as the page); only a page past the end needs a query for it alone.
    Columns rather than ORM objects, validated in one pydantic call: a page of 50 costs a fraction of
    hydrating and converting 50 entities one by one.
    """
    params = _params(q, user, now)
    # a value-less condition (supervised_only) is part of the shape but binds nothing
    bound = {k: v for k, v in params.items() if not isinstance(v, bool)}
    pinned_query, page, count = _statements(tuple(params), q.sort)
    pinned = conn.execute(pinned_query, bound).all()
    start = (q.page - 1) * q.page_size
    shown = list(pinned[start : start + q.page_size])
    offset = max(0, start - len(pinned))
    rows = conn.execute(page, {**bound, "offset": offset, "limit": q.page_size - len(shown)}).all()
    rest = int(rows[0][-1]) if rows else int(conn.execute(count, bound).scalar_one())
    items = [_item(row, now) for row in [*shown, *(r[:-1] for r in rows)]]
    total = len(pinned) + rest
    return CasePage.model_validate({"items": items, "total": total, "page": q.page, "page_size": q.page_size})


def _item(row: Any, now: datetime) -> dict[str, Any]:
    item = dict(zip(_QUEUE_FIELDS, row, strict=True))
    if len(item["excerpt"]) > EXCERPT_CHARS:
        item["excerpt"] = item["excerpt"][:EXCERPT_CHARS] + "……"
    for key in _TIMES:
        value = item[key]
        item[key] = value.replace(tzinfo=UTC) if value is not None and value.tzinfo is None else value
    item["overdue"] = item["due_at"] is not None and item["due_at"] < now
    item["supervised"] = item.pop("supervised_at") is not None
    return item
