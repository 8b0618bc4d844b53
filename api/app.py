"""The FastAPI application factory. Nothing is built at import: the lifespan builds the services
(triage.services.build_services) from the settings it is given, and closes them at shutdown."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from api import errors
from api.deps import Runtime
from api.docs import install_docs
from api.routes import admin, cases, handling, health, jobs, problems
from triage import __version__
from triage.cases.drafting import BackgroundDrafter, Leadership
from triage.errors import TriageError
from triage.jobs.worker import JobRunner
from triage.services import build_services
from triage.settings import Settings, get_settings
from triage.snapshot import settle_heap
from triage.supervision.escalation import ESCALATION_LOCK, Sweeper

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
        with build_services(settings, watch=True) as services:  # also migrates the case database
            drafter = BackgroundDrafter(services.drafts, threads=settings.api_draft_workers).start()
            runner = JobRunner(services.jobs)
            escalating = Leadership(services.db, key=ESCALATION_LOCK, what="runs the escalation sweep")
            sweeper = Sweeper(
                services.supervision.sweep, every_s=settings.escalation_every_s, may_run=escalating.held
            ).start()
            app.state.runtime = Runtime(services, drafter, runner)
            try:
                services.workspace.models.check_ready()
            except TriageError as exc:  # served anyway: the cases are stored, and /readyz says why
                log.warning("not ready to draft: %s", exc)
            settle_heap()  # what is alive now lives as long as the process
            try:
                yield
            finally:
                sweeper.stop()
                escalating.release()
                runner.stop()
                drafter.stop()

    app = FastAPI(
        title="Complaint triage review API",
        version=__version__,
        description=DESCRIPTION,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
    )
    errors.install(app)
    install_docs(app)
    app.add_middleware(errors.BodyLimit, max_bytes=settings.api_max_body_bytes)
    for module in (health, cases, handling, problems, admin, jobs):
        app.include_router(module.router)
    return app


WORKER_LOG_LEVEL = "_TRIAGE_WORKER_LOG_LEVEL"  # set by `triage serve --workers N` for its workers


def create_worker_app() -> FastAPI:
    """The factory `triage serve --workers N` hands uvicorn. Each worker is a fresh interpreter: it
    logs at the level the command line asked for and reads its settings from the environment."""
    level = int(os.environ.get(WORKER_LOG_LEVEL, logging.WARNING))
    logging.basicConfig(level=level, format="%(levelname)s %(name)s [%(process)d]: %(message)s", stream=sys.stderr)
    logging.getLogger("httpx").setLevel(max(level, logging.WARNING))  # a line per Chroma server call otherwise
    return create_app()
