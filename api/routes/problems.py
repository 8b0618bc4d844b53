"""Typical problems as tracked work, and the supervision figures."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Query, Response, status
from pydantic import RootModel

from api.deps import CurrentUser, ProblemsDep, SupervisionDep
from api.responses import json_response
from triage.models import ProblemStatus
from triage.problems.models import (
    Merge,
    NewProblem,
    Plan,
    ProblemDetail,
    ProblemEdit,
    ProblemSummary,
    Report,
    Transition,
)
from triage.supervision.models import Escalation, Supervision

router = APIRouter(tags=["problems and supervision"])


class ProblemList(RootModel[list[ProblemSummary]]):
    """The problem list, serialised in one call."""


@router.get("/problems", response_model=list[ProblemSummary])
def list_problems(
    problems: ProblemsDep,
    user: CurrentUser,
    status: Annotated[list[ProblemStatus] | None, Query(description="Lifecycle states (repeatable).")] = None,
    department: Annotated[str | None, Query()] = None,
    overdue: Annotated[bool | None, Query(description="Past the rectification deadline.")] = None,
) -> Response:
    """Typical problems with their state, deadline and case counts, most cases first (archived ones on request)."""
    items = problems.summaries(user=user, status=status, department=department, overdue=overdue)
    return json_response(ProblemList(items))


@router.post("/problems", status_code=status.HTTP_201_CREATED)
def propose(body: NewProblem, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Propose a candidate typical problem (supervisors)."""
    return problems.create(body, user=user)


@router.get("/problems/{problem_id}")
def get_problem(problem_id: str, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """One problem: its cases by month, week, channel, service item and region, open and overdue cases,
    history, and the effect of its rectification."""
    return problems.get(problem_id, user=user)


@router.patch("/problems/{problem_id}")
def edit_problem(problem_id: str, body: ProblemEdit, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Edit the text, service items or unified reply (统一答复口径); the next drafts use them."""
    return problems.edit(problem_id, body, user=user)


@router.post("/problems/{problem_id}/confirm")
def confirm(problem_id: str, body: Transition, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Confirm a candidate as a typical problem (supervisors)."""
    return problems.confirm(problem_id, body, user=user)


@router.post("/problems/{problem_id}/plan")
def plan(problem_id: str, body: Plan, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Plan (or revise) the rectification: measures, owner department, deadline (the owner's caseworkers)."""
    return problems.plan(problem_id, body, user=user)


@router.post("/problems/{problem_id}/report")
def report(problem_id: str, body: Report, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Report the rectification done: what, and when (the owner's caseworkers)."""
    return problems.report(problem_id, body, user=user)


@router.post("/problems/{problem_id}/verify")
def verify(problem_id: str, body: Transition, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Confirm the rectification worked (supervisors)."""
    return problems.verify(problem_id, body, user=user)


@router.post("/problems/{problem_id}/reopen")
def reopen(problem_id: str, body: Transition, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Complaints continue: the problem needs a new plan (supervisors; the note says why)."""
    return problems.reopen(problem_id, body, user=user)


@router.post("/problems/{problem_id}/archive")
def archive(problem_id: str, body: Transition, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Stop tracking it; complaints no longer match it (supervisors)."""
    return problems.archive(problem_id, body, user=user)


@router.post("/problems/{problem_id}/merge")
def merge(problem_id: str, body: Merge, problems: ProblemsDep, user: CurrentUser) -> ProblemDetail:
    """Merge a candidate into an existing problem: its cases move there (supervisors)."""
    return problems.merge(problem_id, body, user=user)


@router.get("/supervision", response_model=Supervision)
def supervision_figures(
    supervision: SupervisionDep,
    user: CurrentUser,
    period_from: Annotated[datetime | None, Query(alias="from", description="Complaints made at or after.")] = None,
    period_to: Annotated[datetime | None, Query(alias="to", description="Complaints made before.")] = None,
) -> Response:
    """Overdue cases and problems, response, on-time, satisfaction and rectification completion rates,
    for the whole and by department, with departments ranked."""
    return json_response(supervision.figures(user=user, period_from=period_from, period_to=period_to))


@router.post("/supervision/sweep")
def sweep(supervision: SupervisionDep, user: CurrentUser) -> Escalation:
    """Run the escalation sweep now: reminders (催办) and notices (通报) that are due (supervisors)."""
    return supervision.sweep(user=user)
