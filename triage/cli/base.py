"""Shared pieces of the command line: the root group, settings, error mapping, progress, tables."""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from collections.abc import Callable, Sequence
from functools import wraps
from pathlib import Path
from typing import Any, TypeVar

import click

from triage.errors import InputError, TriageError
from triage.models import Draft
from triage.services import Services, build_services
from triage.settings import Settings
from triage.workspace import Workspace

F = TypeVar("F", bound=Callable[..., Any])
BATCH = 64


def settings_from(ctx: click.Context) -> Settings:
    overrides: dict[str, Any] = ctx.obj or {}
    return Settings(**overrides)


def handle_errors(func: F) -> F:
    """Map the exception tree to a one-line message and an exit code (no tracebacks): 2 for invalid
    input, 3 for everything else the project raises (a database, vector store or workspace failure)."""

    @wraps(func)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return func(*args, **kwargs)
        except InputError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(2)
        except TriageError as exc:
            click.echo(f"error: {exc}", err=True)
            sys.exit(3)

    return wrapper  # type: ignore[return-value]


@click.group()
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Workspace directory.")
@click.option("-v", "--verbose", count=True, help="More logging (-vv for debug).")
@click.pass_context
def cli(ctx: click.Context, data_dir: Path | None, verbose: int) -> None:
    """Triage complaints about government services: route, match typical problems, draft replies."""
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr)
    ctx.obj = {"data_dir": data_dir} if data_dir else {}


def dump_draft(draft: Draft, extra: dict[str, Any] | None = None) -> str:
    data = draft.model_dump(mode="json")
    if extra:
        data = {**extra, **data}
    return json.dumps(data, ensure_ascii=False)


def open_services(ctx: click.Context, *, build: bool = False) -> Services:
    """The services on the command's workspace (`build`: build it first if it never was)."""
    return build_services(settings_from(root_context(ctx)), build=build)


def open_workspace(ctx: click.Context) -> Workspace:
    return Workspace.open(settings_from(root_context(ctx)))


def root_context(ctx: click.Context) -> click.Context:
    while ctx.parent is not None:
        ctx = ctx.parent
    return ctx


class StageProgress:
    """A progress bar per stage on a terminal; plain lines on stderr otherwise."""

    def __init__(self) -> None:
        self.tty = sys.stderr.isatty()
        self._bar: Any = None
        self._stage = ""
        self._done = 0
        self._last_line = -1

    def __call__(self, stage: str, done: int, total: int) -> None:
        if stage != self._stage:
            self.finish()
            self._stage, self._done, self._last_line = stage, 0, -1
            if self.tty:
                self._bar = click.progressbar(length=max(total, 1), label=stage, file=sys.stderr, show_eta=True)
                self._bar.__enter__()
        if self._bar is not None:
            self._bar.update(done - self._done)
        else:
            decile = 10 * done // max(total, 1)
            if decile != self._last_line:
                self._last_line = decile
                click.echo(f"{stage}: {done}/{total}", err=True)
        self._done = done

    def finish(self) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)
            self._bar = None


FORMAT = click.Choice(["auto", "jsonl", "csv", "xlsx"])


def table_options(map_help: str) -> Callable[[F], F]:
    """The --format and --map options every command that reads a table file takes."""

    def decorate(func: F) -> F:
        func = click.option("--map", "mapping", multiple=True, metavar="FIELD=COLUMN", help=map_help)(func)
        return click.option("--format", "fmt", type=FORMAT, default="auto", show_default=True)(func)

    return decorate


def _width(text: str) -> int:
    return sum(2 if unicodedata.east_asian_width(ch) in "WF" else 1 for ch in text)


def _fit(text: str, width: int) -> str:
    out, used = "", 0
    for ch in text:
        w = _width(ch)
        if used + w > width:
            return out + " " * (width - used)
        out, used = out + ch, used + w
    return out + " " * (width - used)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], widths: Sequence[int]) -> str:
    line = "  ".join(_fit(h, w) for h, w in zip(headers, widths, strict=True)).rstrip()
    rule = "  ".join("-" * w for w in widths)
    body = ["  ".join(_fit(c, w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
    return "\n".join([line, rule, *body])


def main() -> None:
    cli(prog_name="triage")
