"""The composition root: the one place the object graph is built from the settings.

The API's lifespan, the CLI commands that work on cases, jobs, problems and users, and the tests call
`build_services(settings)`. Commands that only touch the knowledge base or the index (`triage kb`,
history and corpus import) open the workspace alone, and an evaluation builds its own pipeline on
one. Everything built here is thread-safe and lives as long as the process (or the command).
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.access.users import UserDirectory
from triage.cases.actions import CaseActions
from triage.cases.decisions import Decisions
from triage.cases.drafting import FirstDrafts
from triage.cases.intake import Intake
from triage.cases.service import CaseService
from triage.cases.steps import Steps
from triage.clock import Clock, system_clock
from triage.database import Database
from triage.deadlines.calendar import WorkCalendar
from triage.deadlines.rules import Deadlines
from triage.jobs.models import Prices
from triage.jobs.service import JobService
from triage.pipeline import TriagePipeline
from triage.problems.service import ProblemService
from triage.settings import Settings
from triage.supervision.service import SupervisionService
from triage.workspace import Stats, Workspace


@dataclass(frozen=True)
class Services:
    settings: Settings
    workspace: Workspace
    pipeline: TriagePipeline
    users: UserDirectory
    cases: CaseService
    intake: Intake
    drafts: FirstDrafts
    decisions: Decisions
    steps: Steps
    jobs: JobService
    problems: ProblemService
    supervision: SupervisionService
    deadlines: Deadlines

    @property
    def db(self) -> Database:
        return self.workspace.db

    def reindex(self) -> Stats:
        """Build a new generation of models and index from the database; triage goes on meanwhile."""
        self.workspace.reindex()
        return self.workspace.stats()

    def close(self) -> None:
        self.workspace.close()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def deadlines_from(settings: Settings) -> Deadlines:
    """The deadline rules and working-day calendar the settings name, in the deployment's time zone."""
    return Deadlines.load(settings.deadline_rules_file, WorkCalendar.chinese(settings.calendar_file), settings.tz)


def build_services(
    settings: Settings,
    *,
    build: bool = False,
    watch: bool = False,
    workspace: Workspace | None = None,
    pipeline: TriagePipeline | None = None,
    clock: Clock = system_clock,
) -> Services:
    """Open the workspace (building it first with `build`, if it never was) and wire everything on it.

    `watch`: long-running processes (the API, job workers) load builds made by other processes on a
    thread of their own. `workspace` and `pipeline` let a caller (an evaluation, a test) bring its own;
    `clock` is what "now" is for deadlines, overdue figures and the escalation sweep (tests fix it).
    """
    deadlines = deadlines_from(settings)  # a bad rules or calendar file fails here, before anything opens
    ws = workspace or Workspace.open(settings, build=build)
    try:
        if watch:
            ws.watch()
        pipeline = pipeline or TriagePipeline.from_settings(settings, ws)
        db = ws.db
        drafts = FirstDrafts(db, pipeline)
        actions = CaseActions(db, clock=clock)
        no_returns = settings.no_return_channels
        return Services(
            settings=settings,
            workspace=ws,
            pipeline=pipeline,
            users=UserDirectory(db, cache_s=settings.api_auth_cache_s),
            cases=CaseService(db, ws, clock=clock, tz=settings.tz),
            intake=Intake(db, drafts, deadlines=deadlines, clock=clock),
            drafts=drafts,
            decisions=Decisions(db, pipeline, ws, actions=actions, deadlines=deadlines, no_return_channels=no_returns),
            steps=Steps(actions, deadlines, no_return_channels=no_returns),
            problems=ProblemService(db, ws, clock=clock, tz=settings.tz, cache_s=settings.figures_cache_s),
            supervision=SupervisionService(
                db,
                deadlines,
                clock=clock,
                notice_after=settings.notice_after_working_days,
                cache_s=settings.figures_cache_s,
            ),
            deadlines=deadlines,
            jobs=JobService(
                db,
                pipeline,
                lease_s=settings.job_lease_s,
                prices=Prices(settings.llm_price_input_per_1k, settings.llm_price_output_per_1k),
                rpm=settings.job_rpm,
                tpm=settings.job_tpm,
                tz=settings.tz,
            ),
        )
    except BaseException:
        if workspace is None:
            ws.close()
        raise
