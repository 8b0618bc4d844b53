"""The composition root: the one place the object graph is built from the settings.

The API's lifespan, every CLI command and the tests call `build_services(settings)`; nothing else
constructs a workspace, a pipeline or a service. Everything built here is thread-safe and lives as
long as the process (or the command).
"""

from __future__ import annotations

from dataclasses import dataclass

from triage.access.users import UserDirectory
from triage.cases.decisions import Decisions
from triage.cases.drafting import FirstDrafts
from triage.cases.intake import Intake
from triage.cases.service import CaseService
from triage.database import Database
from triage.jobs.models import Prices
from triage.jobs.service import JobService
from triage.pipeline import TriagePipeline
from triage.settings import Settings
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
    jobs: JobService

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


def build_services(
    settings: Settings,
    *,
    build: bool = False,
    watch: bool = False,
    workspace: Workspace | None = None,
    pipeline: TriagePipeline | None = None,
) -> Services:
    """Open the workspace (building it first with `build`, if it never was) and wire everything on it.

    `watch`: long-running processes (the API, job workers) load builds made by other processes on a
    thread of their own. `workspace` and `pipeline` let a caller (an evaluation, a test) bring its own.
    """
    ws = workspace or Workspace.open(settings, build=build)
    try:
        if watch:
            ws.watch()
        pipeline = pipeline or TriagePipeline.from_settings(settings, ws)
        db = ws.db
        drafts = FirstDrafts(db, pipeline)
        return Services(
            settings=settings,
            workspace=ws,
            pipeline=pipeline,
            users=UserDirectory(db, cache_s=settings.api_auth_cache_s),
            cases=CaseService(db, ws),
            intake=Intake(db, drafts),
            drafts=drafts,
            decisions=Decisions(db, pipeline, ws),
            jobs=JobService(
                db,
                pipeline,
                lease_s=settings.job_lease_s,
                prices=Prices(settings.llm_price_input_per_1k, settings.llm_price_output_per_1k),
                rpm=settings.job_rpm,
                tpm=settings.job_tpm,
            ),
        )
    except BaseException:
        if workspace is None:
            ws.close()
        raise
