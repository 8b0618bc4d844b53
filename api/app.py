"""The FastAPI application factory. Nothing is built at import: the lifespan opens the workspace,
the case database and the pipeline from the settings it is given, and closes them at shutdown."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.routes import admin, cases, health, jobs
from triage import __version__
from triage.cases.service import CaseService
from triage.cases.worker import BackgroundDrafter
from triage.jobs.service import JobRunner, JobService
from triage.pipeline import TriagePipeline
from triage.settings import Settings, get_settings
from triage.workspace import Workspace, settle_heap

log = logging.getLogger(__name__)

DESCRIPTION = """
Drafts for complaints about government services (好差评 bad reviews, 12345 hotline, 办不成事 windows,
social media): the responsible department, the matching typical problem (典型问题), a root-cause
summary and a reply, with the evidence they rest on. Caseworkers approve, edit, reject or reassign;
every action is audited, and approved cases become evidence for the next complaint.

Authenticate with `Authorization: Bearer <key>` (keys come from `triage users add`). Errors are
RFC 9457 `application/problem+json`.
"""


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        workspace = Workspace.open(settings)  # also migrates the case database
        try:
            pipeline = TriagePipeline.from_settings(settings, workspace)
            service = CaseService(workspace.store.engine, pipeline, auth_cache_s=settings.api_auth_cache_s)
            app.state.service = service
            app.state.drafter = BackgroundDrafter(service, threads=settings.api_draft_workers).start()
            app.state.jobs = JobService.for_workspace(settings, workspace, pipeline)
            app.state.jobs.guard = service.models_read  # a knowledge-base rebuild waits for job drafting
            app.state.job_runner = JobRunner(app.state.jobs)
            settle_heap()  # what is alive now lives as long as the process
            try:
                yield
            finally:
                app.state.job_runner.stop()
                app.state.drafter.stop()
        finally:
            workspace.close()

    app = FastAPI(
        title="Complaint triage review API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
    )
    app.state.settings = settings
    errors.install(app)
    app.add_middleware(errors.BodyLimit, max_bytes=settings.api_max_body_bytes)
    # The routes go onto the app's own router: FastAPI resolves an included router's routes on every
    # request (6 % of a queue request's CPU, measured), the app's own in one pass. Their tags, responses
    # and dependencies were fixed when they were declared; what include_router would add and these
    # routes lack is only app.dependency_overrides, which nothing here uses.
    for module in (health, cases, admin, jobs):
        app.router.routes.extend(module.router.routes)
    return app


WORKER_LOG_LEVEL = "_TRIAGE_WORKER_LOG_LEVEL"  # set by `triage serve --workers N` for its workers


def create_worker_app() -> FastAPI:
    """The factory `triage serve --workers N` hands uvicorn. Each worker is a fresh interpreter: it
    logs at the level the command line asked for and reads its settings from the environment."""
    level = int(os.environ.get(WORKER_LOG_LEVEL, logging.WARNING))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s [%(process)d]: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))  # a line per Chroma server call otherwise
    return create_app()
