"""`triage retriage`: re-triage a backlog as a durable job, resumable and shared by many workers."""

from __future__ import annotations

import json
import signal
import sys
import threading
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from triage.access.policy import CLI_ACTOR
from triage.cli.base import cli, handle_errors, root_context, settings_from
from triage.errors import InputError
from triage.jobs.models import JobFilters, NewJob
from triage.jobs.service import JobService
from triage.services import Services, build_services
from triage.snapshot import settle_heap

STATUSES = ["new", "drafted", "approved", "rejected", "reassigned", "closed"]


def _open(ctx: click.Context) -> tuple[Services, JobService]:
    # A worker runs long: it loads builds made meanwhile by other processes, on a thread of its own.
    services = build_services(settings_from(root_context(ctx)), watch=True)
    settle_heap()  # a run over a backlog is long: keep the models out of every full collection
    return services, services.jobs


class _Reporter:
    """A progress bar with rate and ETA on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, every_s: float = 5.0) -> None:
        self.tty = sys.stderr.isatty()
        self.every_s = every_s
        self.start = time.monotonic()
        self.first: int | None = None
        self.last_line = 0.0

    def __call__(self, p: Any) -> None:
        finished = p.done + p.failed + p.skipped
        if self.first is None:
            self.first = finished
        elapsed = max(time.monotonic() - self.start, 1e-6)
        rate = (finished - self.first) / elapsed
        left = p.total - finished
        eta = f"{left / rate:.0f} s" if rate > 0 else "?"
        counts = f"{p.done} done, {p.failed} failed, {p.skipped} skipped"
        line = f"job {p.id[:8]}: {finished}/{p.total} ({counts}) {rate:.1f}/s ETA {eta}"
        if self.tty:
            width = 30
            filled = int(width * finished / max(p.total, 1))
            click.echo(f"\r[{'#' * filled}{'.' * (width - filled)}] {line}", nl=False, err=True)
        elif time.monotonic() - self.last_line >= self.every_s:
            self.last_line = time.monotonic()
            click.echo(line, err=True)

    def close(self) -> None:
        if self.tty:
            click.echo("", err=True)


def _print_summary(summary: Any) -> None:
    s = summary
    click.echo(f"job {s.id}: {s.status}; {s.done} done, {s.failed} failed, {s.skipped} skipped of {s.total}")
    if s.departments_changed or s.department_changes:
        click.echo(f"department changed on {s.departments_changed} case(s):")
        for old, news in sorted(s.department_changes.items()):
            for new, n in sorted(news.items(), key=lambda kv: -kv[1]):
                if old != new:
                    click.echo(f"  {old} -> {new}: {n}")
    click.echo(f"typical problem changed on {s.problems_changed} case(s)")
    for change, n in list(s.problem_changes.items())[:10]:
        click.echo(f"  {change}: {n}")
    for reason, n in s.skipped_reasons.items():
        click.echo(f"skipped {n}: {reason}")
    for case_id, error in list(s.errors.items())[:10]:
        click.echo(f"failed {case_id}: {error}")
    click.echo(f"tokens: {s.prompt_tokens} prompt + {s.completion_tokens} completion; cost {s.cost:.4f}")


@cli.command("retriage")
@click.option("--status", "statuses", multiple=True, type=click.Choice(STATUSES), help="Case status (repeatable).")
@click.option("--department", "departments", multiple=True, help="Current department (repeatable).")
@click.option("--channel", "channels", multiple=True, help="Channel (repeatable).")
@click.option("--typical-problem", "problems", multiple=True, help="Current typical problem id (repeatable).")
@click.option(
    "--from", "received_from", type=click.DateTime(), help="Received at or after (YYYY-MM-DD[ HH:MM:SS], local time)."
)
@click.option("--to", "received_to", type=click.DateTime(), help="Received before.")
@click.option(
    "--ids",
    "ids_file",
    type=click.Path(dir_okay=False, exists=True, path_type=Path),
    help="File of case ids, one a line.",
)
@click.option("--undecided", is_flag=True, help="Every case still new, drafted or reassigned.")
@click.option(
    "--include-decided",
    is_flag=True,
    help="Also approved, rejected and closed cases (a new draft beside the decision).",
)
@click.option("--dry-run", is_flag=True, help="Count the cases and estimate tokens and cost; call no LLM.")
@click.option(
    "--concurrency", default=4, show_default=True, type=click.IntRange(1, 64), help="Drafts in flight at once (LLM)."
)
@click.option("--chunk", default=64, show_default=True, type=click.IntRange(1, 1000), help="Items claimed at once.")
@click.option("--rpm", type=click.IntRange(1), help="LLM requests per minute, at most.")
@click.option("--tpm", type=click.IntRange(1), help="LLM tokens per minute, at most.")
@click.option("--resume", "resume", metavar="JOB", help="Work an existing job (after a crash, or as an extra worker).")
@click.option(
    "--create-only", is_flag=True, help="Create the job, print its id, and leave the work to `--resume` workers."
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.pass_context
@handle_errors
def retriage(
    ctx: click.Context,
    statuses: tuple[str, ...],
    departments: tuple[str, ...],
    channels: tuple[str, ...],
    problems: tuple[str, ...],
    received_from: datetime | None,
    received_to: datetime | None,
    ids_file: Path | None,
    undecided: bool,
    include_decided: bool,
    dry_run: bool,
    concurrency: int,
    chunk: int,
    rpm: int | None,
    tpm: int | None,
    resume: str | None,
    create_only: bool,
    as_json: bool,
) -> None:
    """Re-triage cases after a knowledge-base, prompt or model change, as a durable job.

    Decided cases are skipped unless --include-decided. Kill it at any point and run
    `triage retriage --resume JOB`; start more workers (here or on other machines, against the same
    PostgreSQL) with the same command.
    """
    filters_given = any([statuses, departments, channels, problems, received_from, received_to, ids_file, undecided])
    if resume and (filters_given or include_decided or dry_run or create_only):
        raise InputError("--resume takes no filters: the job already knows its cases", field="resume")
    ids = []
    if ids_file is not None:
        ids = [line.strip() for line in ids_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    filters = JobFilters(
        status=list(statuses),
        department=list(departments),
        channel=list(channels),
        typical_problem_id=list(problems),
        received_from=received_from,  # local time (TRIAGE_TIMEZONE), read by the job service
        received_to=received_to,
        ids=ids,
        undecided=undecided,
    )
    services, service = _open(ctx)
    try:
        if dry_run:
            estimate = service.estimate(NewJob(filters=filters, include_decided=include_decided))
            click.echo(json.dumps(estimate.model_dump(), ensure_ascii=False, indent=1))
            return
        job_id = resume or service.create(NewJob(filters=filters, include_decided=include_decided), actor=CLI_ACTOR).id
        click.echo(f"job {job_id}", err=True)
        if create_only:
            click.echo(job_id)
            return
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        reporter = _Reporter()
        try:
            summary = service.work(
                job_id, concurrency=concurrency, chunk=chunk, rpm=rpm, tpm=tpm, progress=reporter, stop=stop
            )
        finally:
            reporter.close()
        if as_json:
            click.echo(summary.model_dump_json(indent=1))
        else:
            _print_summary(summary)
        if summary.failed:
            sys.exit(1)
    finally:
        services.close()
