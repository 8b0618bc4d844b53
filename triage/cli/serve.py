"""`triage serve` (the review API) and `triage users` (people and systems holding API keys)."""

from __future__ import annotations

import json
import logging
import os
from importlib import resources
from typing import Any

import click

from triage.cli.base import cli, handle_errors, render_table, root_context, settings_from
from triage.settings import Settings


def _directory(settings: Settings) -> Any:
    from sqlalchemy.orm import sessionmaker

    from triage.cases.users import UserDirectory
    from triage.store import database_url, make_engine

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = make_engine(database_url(settings.database_url, settings.data_dir))
    return UserDirectory(sessionmaker(engine, expire_on_commit=False)), engine


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
    import uvicorn

    from api import create_app
    from api.app import WORKER_LOG_LEVEL

    overrides = {k: v for k, v in {"api_host": host, "api_port": port, "api_workers": workers}.items() if v is not None}
    settings = settings_from(root_context(ctx)).model_copy(update=overrides)
    if settings.api_workers > 1:
        _check_shareable(settings)
    if demo:
        _seed_demo(settings)
    base = f"http://{settings.api_host}:{settings.api_port}"
    click.echo(f"Review API on {base}  ·  OpenAPI docs: {base}/docs  ·  liveness: {base}/healthz", err=True)
    if settings.api_workers == 1:
        uvicorn.run(create_app(settings), host=settings.api_host, port=settings.api_port, log_level="info")
        return
    from triage.workspace import Workspace

    # Migrate the database and build the index once, here, before the workers open the workspace.
    Workspace.open(settings).close()
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
    from sqlalchemy.engine import make_url

    from triage.errors import InputError
    from triage.store import database_url

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
    from triage.cases.models import NewUser
    from triage.cases.service import CaseService
    from triage.cases.states import Role
    from triage.intake import complaint_from_mapping
    from triage.pipeline import TriagePipeline
    from triage.workspace import Workspace

    with Workspace.open(settings) as ws:
        service = CaseService(ws.store.engine, TriagePipeline.from_settings(settings, ws))
        if service.users.count():
            click.echo("demo: users exist already; `triage users key admin` issues another key for 'admin'", err=True)
            return
        issued = service.users.add(NewUser(name="admin", role=Role.ADMIN), valid_departments=ws.kb.department_names)
        raw = (resources.files("triage") / "data" / "demo_complaints.jsonl").read_text(encoding="utf-8")
        for line in raw.splitlines():
            if line.strip():
                service.ingest(complaint_from_mapping(json.loads(line)), user=issued.user)
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
    from triage.cases.models import NewUser
    from triage.errors import InputError
    from triage.workspace import active_kb

    settings = settings_from(root_context(ctx))
    kb = active_kb(settings)
    resolved = [kb.resolve_department(d) or d for d in departments]
    try:
        new = NewUser.model_validate({"name": name, "role": role, "departments": resolved})
    except ValueError as exc:
        raise InputError(str(exc).splitlines()[-1], field="name") from exc
    directory, engine = _directory(settings)
    try:
        issued = directory.add(new, valid_departments=kb.department_names)
    finally:
        engine.dispose()
    scope = f" for {', '.join(issued.user.departments)}" if issued.user.departments else ""
    click.echo(f"created {issued.user.role.value} '{issued.user.name}'{scope}", err=True)
    click.echo(issued.key)


@users.command("list")
@click.pass_context
@handle_errors
def users_list(ctx: click.Context) -> None:
    """Users, roles, departments and key prefixes."""
    directory, engine = _directory(settings_from(root_context(ctx)))
    try:
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
    finally:
        engine.dispose()
    click.echo(render_table(["name", "role", "departments", "active", "keys"], rows, [16, 10, 30, 6, 40]))


@users.command("key")
@click.argument("name")
@click.pass_context
@handle_errors
def users_key(ctx: click.Context, name: str) -> None:
    """Issue another key for a user (rotation) and print it once."""
    directory, engine = _directory(settings_from(root_context(ctx)))
    try:
        click.echo(directory.issue_key(name).key)
    finally:
        engine.dispose()


@users.command("revoke")
@click.argument("name")
@click.option("--prefix", help="Revoke only the key starting with this prefix (default: all of the user's keys).")
@click.pass_context
@handle_errors
def users_revoke(ctx: click.Context, name: str, prefix: str | None) -> None:
    """Revoke a user's keys; they stop working at once."""
    directory, engine = _directory(settings_from(root_context(ctx)))
    try:
        click.echo(f"revoked {directory.revoke_keys(name, prefix)} key(s) of '{name}'")
    finally:
        engine.dispose()
