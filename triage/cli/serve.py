"""`triage serve` (the review API) and `triage users` (people and systems holding API keys)."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources

import click
import uvicorn
from sqlalchemy.engine import make_url

from api import create_app
from api.app import WORKER_LOG_LEVEL
from triage.access.models import NewUser
from triage.access.users import UserDirectory
from triage.cases.states import Role
from triage.cli.base import cli, handle_errors, render_table, root_context, settings_from
from triage.database import Database, database_url
from triage.errors import InputError
from triage.intake import complaint_from_mapping
from triage.services import build_services
from triage.settings import Settings
from triage.workspace import Workspace, active_kb


@contextmanager
def _directory(settings: Settings) -> Iterator[UserDirectory]:
    """The users, on the case database alone: managing them needs no built workspace."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    db = Database.connect(database_url(settings.database_url, settings.data_dir))
    try:
        yield UserDirectory(db)
    finally:
        db.close()


@cli.command("serve")
@click.option("--host", help="Listen address (default: TRIAGE_API_HOST, 127.0.0.1).")
@click.option("--port", type=int, help="Port (default: TRIAGE_API_PORT, 8000).")
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    help="API processes (default: TRIAGE_API_WORKERS, 1); more than one needs PostgreSQL and a Chroma server.",
)
@click.option(
    "--demo", is_flag=True, help="On an empty database: create user 'admin' (key printed once) and ingest samples."
)
@click.pass_context
@handle_errors
def serve(ctx: click.Context, host: str | None, port: int | None, workers: int | None, demo: bool) -> None:
    """Run the caseworker review API (uvicorn; one process, or --workers N sharing the port)."""
    overrides = {k: v for k, v in {"api_host": host, "api_port": port, "api_workers": workers}.items() if v is not None}
    settings = settings_from(root_context(ctx)).model_copy(update=overrides)
    if settings.api_workers > 1:
        _check_shareable(settings)
    if demo:
        _seed_demo(settings)  # builds a new workspace first
    else:
        with Workspace.open(settings) as ws:
            ws.models  # noqa: B018  (raises NotBuiltError, saying what to run, on a workspace never built)
    base = f"http://{settings.api_host}:{settings.api_port}"
    click.echo(f"Review API on {base}  ·  OpenAPI docs: {base}/docs  ·  liveness: {base}/healthz", err=True)
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")
        return
    # The workers are fresh interpreters that read their settings from the environment: pass on what
    # was given on this command line.
    for key, value in (root_context(ctx).obj or {}).items():
        if value is not None:
            os.environ[f"TRIAGE_{key.upper()}"] = str(value)
    os.environ[WORKER_LOG_LEVEL] = str(logging.getLogger().getEffectiveLevel())
    uvicorn.run(
        "api.app:create_worker_app",
        factory=True,
        workers=settings.api_workers,
        host=settings.api_host,
        port=settings.api_port,
        log_level="info",
    )


def _check_shareable(settings: Settings) -> None:
    """Several API processes share the database and the vector store: both must be servers."""
    missing = []
    if make_url(database_url(settings.database_url, settings.data_dir)).get_backend_name() != "postgresql":
        missing.append("a PostgreSQL database (TRIAGE_DATABASE_URL=postgresql+psycopg://…)")
    if not settings.chroma_url:
        missing.append("a Chroma server (TRIAGE_CHROMA_URL; start one with `chroma run --path DIR`)")
    if missing:
        raise InputError(
            f"--workers {settings.api_workers} needs "
            + " and ".join(missing)
            + ": SQLite and the embedded Chroma belong to one process",
            field="workers",
        )


def _seed_demo(settings: Settings) -> None:
    with build_services(settings, build=True) as services:
        if services.users.count():
            click.echo("demo: users exist already; `triage users key admin` issues another key for 'admin'", err=True)
            return
        issued = services.users.add(
            NewUser(name="admin", role=Role.ADMIN), valid_departments=services.workspace.kb.department_names
        )
        raw = (resources.files("triage") / "data" / "demo_complaints.jsonl").read_text(encoding="utf-8")
        for line in raw.splitlines():
            if line.strip():
                services.intake.ingest(complaint_from_mapping(json.loads(line)), user=issued.user)
        click.echo(
            f"demo: created user 'admin' (role admin) and ingested the sample complaints.\n"
            f"      API key (shown once): {issued.key}\n"
            f"      try: curl -H 'Authorization: Bearer {issued.key}' "
            f"http://{settings.api_host}:{settings.api_port}/cases",
            err=True,
        )


@cli.group()
def users() -> None:
    """People and systems holding API keys: caseworkers, supervisors, admins, intake systems."""


@users.command("add")
@click.argument("name")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["caseworker", "supervisor", "admin", "intake"]),
    help="What they may do.",
)
@click.option("--department", "departments", multiple=True, help="A caseworker's department (repeatable).")
@click.pass_context
@handle_errors
def users_add(ctx: click.Context, name: str, role: str, departments: tuple[str, ...]) -> None:
    """Create a user and print their API key (shown once; only its hash is stored)."""
    settings = settings_from(root_context(ctx))
    kb = active_kb(settings)
    resolved = [kb.resolve_department(d) or d for d in departments]
    try:
        new = NewUser.model_validate({"name": name, "role": role, "departments": resolved})
    except ValueError as exc:
        raise InputError(str(exc).splitlines()[-1], field="name") from exc
    with _directory(settings) as directory:
        issued = directory.add(new, valid_departments=kb.department_names)
    scope = f" for {', '.join(issued.user.departments)}" if issued.user.departments else ""
    click.echo(f"created {issued.user.role.value} '{issued.user.name}'{scope}", err=True)
    click.echo(issued.key)


@users.command("list")
@click.pass_context
@handle_errors
def users_list(ctx: click.Context) -> None:
    """Users, roles, departments and key prefixes."""
    with _directory(settings_from(root_context(ctx))) as directory:
        rows = [
            [
                u.name,
                u.role.value,
                "、".join(u.departments),
                "yes" if u.active else "no",
                " ".join(k.prefix for k in keys if k.revoked_at is None),
            ]
            for u, keys in directory.list()
        ]
    click.echo(render_table(["name", "role", "departments", "active", "keys"], rows, [16, 10, 30, 6, 40]))


@users.command("key")
@click.argument("name")
@click.pass_context
@handle_errors
def users_key(ctx: click.Context, name: str) -> None:
    """Issue another key for a user (rotation) and print it once."""
    with _directory(settings_from(root_context(ctx))) as directory:
        click.echo(directory.issue_key(name).key)


@users.command("revoke")
@click.argument("name")
@click.option("--prefix", help="Revoke only the key starting with this prefix (default: all of the user's keys).")
@click.pass_context
@handle_errors
def users_revoke(ctx: click.Context, name: str, prefix: str | None) -> None:
    """Revoke a user's keys; they stop working at once."""
    with _directory(settings_from(root_context(ctx))) as directory:
        click.echo(f"revoked {directory.revoke_keys(name, prefix)} key(s) of '{name}'")
