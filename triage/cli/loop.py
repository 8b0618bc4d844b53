"""Commands for the loop: `triage cases import`, `triage problems list | show`, `triage supervision`."""

from __future__ import annotations

import json
import sys
import time
from datetime import datetime, tzinfo
from pathlib import Path

import click

from triage.access.models import User
from triage.access.policy import CLI_ACTOR
from triage.cases.imports import read_complaints
from triage.cases.states import Role
from triage.cli.base import StageProgress, cli, handle_errors, open_services, render_table, table_options
from triage.errors import InputError
from triage.models import CHANNEL_VALUES, Channel
from triage.services import Services

CHUNK = 500  # complaints stored in one transaction and drafted in one call


def _operator(services: Services, name: str | None) -> User:
    """Whom the import is done as: an existing user with an ingest role, or the command line itself."""
    if name is None:
        return User(id=0, name=CLI_ACTOR, role=Role.ADMIN)
    for user, _ in services.users.list():
        if user.name == name:
            if user.role not in (Role.INTAKE, Role.SUPERVISOR, Role.ADMIN):
                raise InputError(f"user '{name}' ({user.role.value}) may not ingest complaints", field="submitter")
            return user
    raise InputError(f"no user '{name}'", field="submitter")


@cli.group()
def cases() -> None:
    """Cases in bulk."""


@cases.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@table_options("Column for a field, e.g. --map text=留言详情 --map created_at=留言时间 --map likes=点赞数.")
@click.option("--channel", type=click.Choice(CHANNEL_VALUES), help="Channel of rows that name none (default: other).")
@click.option("--submitter", help="Import as this intake user (external ids are theirs); default: the command line.")
@click.option("--no-draft", is_flag=True, help="Store only; the API's background drafter drafts them.")
@click.pass_context
@handle_errors
def cases_import(
    ctx: click.Context,
    file: Path,
    fmt: str,
    mapping: tuple[str, ...],
    channel: str | None,
    submitter: str | None,
    no_draft: bool,
) -> None:
    """Ingest complaints as cases (drafting included), idempotent on each row's id.

    Through the same service as POST /cases/batch. Bad rows are reported with their line and skipped.
    """
    start = time.perf_counter()
    with open_services(ctx) as services:
        batch = read_complaints(file, tz=services.settings.tz, fmt=fmt, mapping=mapping)  # type: ignore[arg-type]
        for error in batch.errors:
            click.echo(f"{file}: {error} (skipped)", err=True)
        user = _operator(services, submitter)
        complaints = [c for _, c in batch.complaints]
        if channel:
            complaints = [
                c if "channel" in c.model_fields_set else c.model_copy(update={"channel": Channel(channel)})
                for c in complaints
            ]
        created = existing = drafted = 0
        progress = StageProgress()
        for begin in range(0, len(complaints), CHUNK):
            receipt = services.intake.ingest_batch(complaints[begin : begin + CHUNK], user=user)
            created, existing = created + receipt.created, existing + receipt.existing
            if not no_draft:  # the cases still without a draft: the new ones, and any left earlier
                drafted += services.drafts.draft_cases(receipt.case_ids)
            progress("importing", min(begin + CHUNK, len(complaints)), len(complaints))
        progress.finish()
    failed = max(0, created - drafted) if not no_draft else 0
    elapsed = time.perf_counter() - start
    rate = len(complaints) / elapsed if elapsed else 0.0
    click.echo(
        f"imported {created} new case(s) from {batch.rows} row(s): {existing} already present, "
        f"{len(batch.errors)} skipped, {drafted} drafted"
        + (f", {failed} left to draft (see their draft_error)" if failed else "")
        + f", in {elapsed:.1f} s ({rate:.0f} rows/s)"
    )
    if batch.errors:
        sys.exit(1)


@cli.group()
def problems() -> None:
    """Typical problems as tracked work: state, deadline, cases, effect."""


@problems.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def problems_list(ctx: click.Context, as_json: bool) -> None:
    """Every typical problem with its state, deadline and case counts, most cases first."""
    with open_services(ctx) as services:
        items = services.problems.summaries(user=User(id=0, name=CLI_ACTOR, role=Role.ADMIN))
        tz = services.settings.tz
    if as_json:
        click.echo(json.dumps([p.model_dump(mode="json") for p in items], ensure_ascii=False, indent=1))
        return
    rows = [
        [
            p.id,
            p.title,
            p.department,
            p.status.value,
            str(p.case_count),
            str(p.open_case_count),
            _date(p.deadline, tz) + (" 逾期" if p.overdue else ""),
        ]
        for p in items
    ]
    headers = ["id", "典型问题", "部门", "状态", "案件", "在办", "整改期限"]
    click.echo(render_table(headers, rows, [12, 30, 14, 10, 6, 6, 16]))


@problems.command("show")
@click.argument("problem_id")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def problems_show(ctx: click.Context, problem_id: str, as_json: bool) -> None:
    """One problem: cases by month, channel and region, open and overdue cases, history, effect."""
    with open_services(ctx) as services:
        p = services.problems.get(problem_id, user=User(id=0, name=CLI_ACTOR, role=Role.ADMIN))
        tz = services.settings.tz
    if as_json:
        click.echo(p.model_dump_json(indent=1))
        return
    click.echo(f"{p.id} {p.title}  [{p.status.value}]  {p.department}")
    owner = p.owner_department or p.department
    click.echo(f"整改责任：{owner}  期限：{_date(p.deadline, tz) or '未定'}{'  已逾期' if p.overdue else ''}")
    click.echo(
        f"案件 {p.case_count}（在办 {p.open_case_count}，逾期 {p.overdue_case_count}，不满意 {p.dissatisfied_count}）"
    )
    click.echo("按月：" + ("，".join(f"{c.key} {c.count}" for c in p.cases_by_month) or "无"))
    click.echo("渠道：" + ("，".join(f"{c.key} {c.count}" for c in p.by_channel) or "无"))
    click.echo("区域：" + ("，".join(f"{c.key} {c.count}" for c in p.by_region[:8]) or "无"))
    click.echo(f"整改成效：{p.effect.statement}")
    for e in p.history:
        click.echo(f"  {_date(e.at, tz, with_time=True)}  {e.actor}  {e.action}" + (f"：{e.note}" if e.note else ""))


@cli.group(invoke_without_command=True)
@click.option("--from", "period_from", type=click.DateTime(), help="Complaints made at or after (local time).")
@click.option("--to", "period_to", type=click.DateTime(), help="Complaints made before (local time).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@click.pass_context
@handle_errors
def supervision(ctx: click.Context, period_from: datetime | None, period_to: datetime | None, as_json: bool) -> None:
    """Overdue cases and problems, response, on-time, satisfaction and rectification completion rates."""
    if ctx.invoked_subcommand is not None:
        return
    admin = User(id=0, name=CLI_ACTOR, role=Role.ADMIN)
    with open_services(ctx) as services:
        s = services.supervision.figures(user=admin, period_from=period_from, period_to=period_to)
    if as_json:
        click.echo(s.model_dump_json(indent=1))
        return
    click.echo(
        f"逾期案件 {s.overdue_cases}  逾期整改 {s.overdue_problems}  "
        f"整改完成率 {_pct(s.rectification_completion_rate)}  答复率 {_pct(s.response_rate)}  "
        f"按时率 {_pct(s.on_time_rate)}  满意率 {_pct(s.satisfaction_rate)}"
    )
    headers = ["部门", "案件", "在办", "逾期", "催办", "通报", "答复率", "按时率", "满意率", "整改完成率"]
    rows = [
        [
            d,
            str(f.cases),
            str(f.open_cases),
            str(f.overdue_cases),
            str(f.reminded_cases),
            str(f.notified_cases),
            _pct(f.response_rate),
            _pct(f.on_time_rate),
            _pct(f.satisfaction_rate),
            _pct(f.rectification_completion_rate),
        ]
        for d in s.ranking
        for f in [s.by_department[d]]
    ]
    click.echo(render_table(headers, rows, [14, 6, 6, 6, 6, 6, 8, 8, 8, 10]))


@supervision.command("sweep")
@click.pass_context
@handle_errors
def supervision_sweep(ctx: click.Context) -> None:
    """Remind (催办) and notice (通报) the overdue cases due for it (run it from cron)."""
    with open_services(ctx) as services:
        done = services.supervision.sweep()
    click.echo(f"reminded {len(done.reminded)} case(s), noticed {len(done.notified)} case(s)")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _date(value: datetime | None, tz: tzinfo, *, with_time: bool = False) -> str:
    """A time as local date (and time) in the deployment's zone."""
    if value is None:
        return ""
    return value.astimezone(tz).strftime("%Y-%m-%d %H:%M" if with_time else "%Y-%m-%d")
