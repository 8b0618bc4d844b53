"""Commands: triage, demo and the knowledge base."""

import json
import sys
from dataclasses import asdict
from importlib import resources
from pathlib import Path

import click

from triage.cli.base import (
    BATCH,
    StageProgress,
    cli,
    dump_draft,
    handle_errors,
    open_services,
    open_workspace,
    render_table,
    root_context,
    settings_from,
)
from triage.database import database_url, engine_label, make_engine, upgrade
from triage.errors import InputError
from triage.intake import complaint_from_mapping, read_jsonl
from triage.knowledge import load_files
from triage.models import CHANNEL_VALUES, Complaint
from triage.pipeline import TriagePipeline
from triage.redaction import redact
from vectorstore.store import CASES, PROBLEMS


@cli.command("triage")
@click.argument("text", required=False)
@click.option("--file", "file", type=click.Path(dir_okay=False, path_type=Path), help="JSONL, one complaint a line.")
@click.option("--title", help="Complaint title.")
@click.option("--channel", default="other", show_default=True, help=f"One of: {', '.join(CHANNEL_VALUES)}.")
@click.option("--service-item", help="Service item (事项) the complaint is about.")
@click.option("--region", help="District or region.")
@click.pass_context
@handle_errors
def triage_cmd(
    ctx: click.Context,
    text: str | None,
    file: Path | None,
    title: str | None,
    channel: str,
    service_item: str | None,
    region: str | None,
) -> None:
    """Draft triage for TEXT (prints JSON), or for every line of --file (prints JSON lines)."""
    if (text is None) == (file is None):
        raise InputError("give either a complaint TEXT or --file FILE (not both)")
    if text is not None:
        complaint = complaint_from_mapping(
            {"text": text, "title": title, "channel": channel, "service_item": service_item, "region": region}
        )
        with open_services(ctx) as services:
            click.echo(dump_draft(services.pipeline.triage(complaint)))
        return
    assert file is not None
    entries = read_jsonl(file)  # raises InputError when unreadable, before the workspace opens
    with open_services(ctx) as services:
        bad = _triage_lines(file, entries, services.pipeline)
    if bad:
        click.echo(f"{file}: {bad} line(s) skipped", err=True)
        sys.exit(1)


def _triage_lines(file: Path, entries: list[tuple[int, Complaint | InputError]], pipeline: TriagePipeline) -> int:
    bad = 0
    for start in range(0, len(entries), BATCH):
        batch = entries[start : start + BATCH]
        good: list[tuple[int, Complaint]] = []
        for number, item in batch:
            if isinstance(item, InputError):
                bad += 1
                click.echo(f"{file}: {item} (skipped)", err=True)
            else:
                good.append((number, item))
        for (number, complaint), draft in zip(good, pipeline.triage_many([c for _, c in good]), strict=True):
            click.echo(dump_draft(draft, {"line": number, "external_id": complaint.external_id}))
    return bad


# -- knowledge base -------------------------------------------------------------------------------
@cli.group()
def kb() -> None:
    """Manage the knowledge base: departments, typical problems and the vector index."""


@kb.command("load")
@click.option("--departments", "departments", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--problems", "problems", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@handle_errors
def kb_load(ctx: click.Context, departments: Path, problems: Path | None) -> None:
    """Replace the knowledge base with FILEs (YAML or JSON) and rebuild the index."""
    new_kb = load_files(departments, problems)  # validated before anything is touched
    progress = StageProgress()
    with open_workspace(ctx) as ws:
        report = ws.load_kb(new_kb, progress, with_problems=problems is not None)
        live = ws.kb
    progress.finish()
    for line in report.lines():
        click.echo(line, err=True)
    click.echo(
        f"loaded {len(new_kb.departments)} departments into {ws.data_dir}; {len(live.problems)} typical problems "
        f"in use ({len(live.service_items())} service items)"
        + ("" if problems is not None else "; the typical problems were kept (give --problems FILE to replace them)")
    )


@kb.command("search")
@click.argument("text")
@click.option("-k", "k", default=5, show_default=True, help="How many results per collection.")
@click.pass_context
@handle_errors
def kb_search(ctx: click.Context, text: str, k: int) -> None:
    """Show the typical problems and past cases nearest to TEXT, with similarity."""
    with open_workspace(ctx) as ws:
        models = ws.models
        query = redact(text).text
        found = [(label, models.search([query], collection=c, k=k)[0]) for label, c in _COLLECTIONS]
    for label, hits in found:
        click.echo(f"{label}:")
        if not hits:
            click.echo("  (none)")
        for h in hits:
            title = h.metadata.get("title") or h.document[:40]
            click.echo(f"  {h.similarity:.3f}  {h.id:<14} {h.metadata.get('department', '')}  {title}")


_COLLECTIONS = (("typical problems", PROBLEMS), ("past cases", CASES))


@kb.command("stats")
@click.pass_context
@handle_errors
def kb_stats(ctx: click.Context) -> None:
    """Print counts and the fingerprints of the embedder and router as JSON."""
    with open_workspace(ctx) as ws:
        stats = ws.stats()
    click.echo(json.dumps(asdict(stats), ensure_ascii=False, indent=2))


@kb.command("reindex")
@click.pass_context
@handle_errors
def kb_reindex(ctx: click.Context) -> None:
    """Refit the text model, rebuild both collections with the configured embedder, retrain routing."""
    progress = StageProgress()
    with open_workspace(ctx) as ws:
        ws.reindex(progress)
        stats = ws.stats()
    progress.finish()
    click.echo(
        f"reindexed {stats.typical_problems} typical problems and {stats.past_cases} past cases with {stats.embedder}"
    )


@cli.command("demo")
@click.pass_context
@handle_errors
def demo(ctx: click.Context) -> None:
    """Run the built-in sample complaints through the pipeline and show the drafts as a table."""
    raw = (resources.files("triage") / "data" / "demo_complaints.jsonl").read_text(encoding="utf-8")
    complaints = [complaint_from_mapping(json.loads(line)) for line in raw.splitlines() if line.strip()]
    with open_services(ctx, build=True) as services:  # a new workspace is built for the demo
        pipeline = services.pipeline
        drafts = pipeline.triage_many(complaints)
        embedder = services.workspace.models.embedder.fingerprint
    rows = []
    for c, d in zip(complaints, drafts, strict=True):
        problem = f"{d.typical_problem.id} {d.typical_problem.title}" if d.typical_problem else "无匹配：可能是新问题"
        rows.append(
            [
                c.external_id or "",
                c.channel.value,
                c.title or c.text,
                d.department,
                f"{d.confidence:.2f}",
                problem,
                d.drafted_by,
            ]
        )
    click.echo(
        render_table(["id", "渠道", "投诉", "责任部门", "置信度", "典型问题", "起草"], rows, [8, 8, 30, 14, 6, 40, 16])
    )
    first = drafts[0]
    click.echo(f"\n{complaints[0].external_id} 根因：{first.root_cause}\n答复初稿：{first.reply}")
    click.echo(
        f"\nworkspace: {services.workspace.data_dir}  embedder: {embedder}  drafter: "
        f"{f'llm:{pipeline.settings.llm_model}' if pipeline.llm else 'offline'}"
    )


@cli.group()
def db() -> None:
    """The case database (SQLite in the data dir, or TRIAGE_DATABASE_URL)."""


@db.command("upgrade")
@click.pass_context
@handle_errors
def db_upgrade(ctx: click.Context) -> None:
    """Apply pending schema migrations (also applied whenever a workspace opens)."""
    settings = settings_from(root_context(ctx))
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    url = database_url(settings.database_url, settings.data_dir)
    engine = make_engine(url)
    click.echo(f"{engine_label(url)} is at revision {upgrade(engine)}")
    engine.dispose()
