"""The `triage` command line. It only translates: the pipeline and workspace do the work.

Exit codes: 0 success; 1 some input lines were bad (the rest were processed); 2 invalid input or
usage; 3 the workspace, knowledge base or vector store failed.
"""

from __future__ import annotations

import json
import logging
import sys
import unicodedata
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict
from functools import wraps
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar, cast

import click

from triage.errors import InputError, TriageError
from triage.intake import complaint_from_mapping, read_jsonl
from triage.models import CHANNEL_VALUES, Complaint, Draft
from triage.settings import Settings
from triage.tabular import Format

F = TypeVar("F", bound=Callable[..., Any])
BATCH = 64


def _settings(ctx: click.Context) -> Settings:
    overrides: dict[str, Any] = ctx.obj or {}
    return Settings(**overrides)


def handle_errors(func: F) -> F:
    """Map the exception tree to a one-line message and an exit code (no tracebacks)."""

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


def _pipeline(ctx: click.Context) -> Any:
    from triage.pipeline import TriagePipeline

    return TriagePipeline.from_settings(_settings(ctx))


def _dump(draft: Draft, extra: dict[str, Any] | None = None) -> str:
    data = draft.model_dump(mode="json")
    if extra:
        data = {**extra, **data}
    return json.dumps(data, ensure_ascii=False)


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
        click.echo(_dump(_pipeline(ctx).triage(complaint)))
        return
    assert file is not None
    entries = read_jsonl(file)  # raises InputError when unreadable, before the workspace opens
    pipeline = _pipeline(ctx)
    bad = 0
    for batch in _batches(entries, BATCH):
        good: list[tuple[int, Complaint]] = []
        for number, item in batch:
            if isinstance(item, InputError):
                bad += 1
                click.echo(f"{file}: {item} (skipped)", err=True)
            else:
                good.append((number, item))
        for (number, complaint), draft in zip(good, pipeline.triage_many([c for _, c in good]), strict=True):
            click.echo(_dump(draft, {"line": number, "external_id": complaint.external_id}))
    if bad:
        click.echo(f"{file}: {bad} line(s) skipped", err=True)
        sys.exit(1)


def _batches(items: Iterator[tuple[int, Any]], size: int) -> Iterator[list[tuple[int, Any]]]:
    batch: list[tuple[int, Any]] = []
    for item in items:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


# -- knowledge base -------------------------------------------------------------------------------
@cli.group()
def kb() -> None:
    """Manage the knowledge base: departments, typical problems and the vector index."""


def _workspace(ctx: click.Context) -> Any:
    from triage.workspace import Workspace

    return Workspace.open(_settings(ctx))


@kb.command("load")
@click.option("--departments", "departments", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--problems", "problems", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_context
@handle_errors
def kb_load(ctx: click.Context, departments: Path, problems: Path | None) -> None:
    """Replace the knowledge base with FILEs (YAML or JSON) and rebuild the index."""
    from triage.knowledge import load_files

    new_kb = load_files(departments, problems)  # validated before anything is touched
    ws = _workspace(_root(ctx))
    ws.load_kb(new_kb)
    click.echo(
        f"loaded {len(new_kb.departments)} departments and {len(new_kb.problems)} typical problems "
        f"({len(new_kb.service_items())} service items) into {ws.data_dir}"
    )


@kb.command("search")
@click.argument("text")
@click.option("-k", "k", default=5, show_default=True, help="How many results per collection.")
@click.pass_context
@handle_errors
def kb_search(ctx: click.Context, text: str, k: int) -> None:
    """Show the typical problems and past cases nearest to TEXT, with similarity."""
    from triage.redaction import redact
    from vectorstore.store import CASES, PROBLEMS

    ws = _workspace(_root(ctx))
    query = redact(text).text
    for label, collection in (("typical problems", PROBLEMS), ("past cases", CASES)):
        hits = ws.search([query], collection=collection, k=k)[0]
        click.echo(f"{label}:")
        if not hits:
            click.echo("  (none)")
        for h in hits:
            title = h.metadata.get("title") or h.document[:40]
            click.echo(f"  {h.similarity:.3f}  {h.id:<14} {h.metadata.get('department', '')}  {title}")


@kb.command("stats")
@click.pass_context
@handle_errors
def kb_stats(ctx: click.Context) -> None:
    """Print counts and the fingerprints of the embedder and router as JSON."""
    click.echo(json.dumps(asdict(_workspace(_root(ctx)).stats()), ensure_ascii=False, indent=2))


@kb.command("reindex")
@click.pass_context
@handle_errors
def kb_reindex(ctx: click.Context) -> None:
    """Refit the text model, rebuild both collections with the configured embedder, retrain routing."""
    from triage.workspace import Workspace

    settings = _settings(_root(ctx))
    ws = Workspace.open(settings)
    ws.reindex()
    stats = ws.stats()
    click.echo(
        f"reindexed {stats.typical_problems} typical problems and {stats.past_cases} past cases with {stats.embedder}"
    )


def _root(ctx: click.Context) -> click.Context:
    while ctx.parent is not None:
        ctx = ctx.parent
    return ctx


# -- history and corpus ------------------------------------------------------------------------------
class _StageProgress:
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


@cli.group()
def history() -> None:
    """Bring your own history: resolved cases that routing and retrieval learn from."""


@history.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=FORMAT, default="auto", show_default=True)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Column for a field, e.g. --map text=留言详情 --map department=一级标签.",
)
@click.option("--add-departments", is_flag=True, help="Add departments the taxonomy lacks instead of skipping.")
@click.pass_context
@handle_errors
def history_import(ctx: click.Context, file: Path, fmt: str, mapping: tuple[str, ...], add_departments: bool) -> None:
    """Import resolved cases (text and department required); importing the same file twice adds nothing."""
    import time

    from triage.history import read_history, with_departments

    start = time.perf_counter()
    ws = _workspace(_root(ctx))
    batch = read_history(file, ws.kb, fmt=fmt, mapping=mapping, add_departments=add_departments)  # type: ignore[arg-type]
    for error in batch.errors:
        click.echo(f"{file}: {error} (skipped)", err=True)
    if batch.new_departments:
        ws.kb = with_departments(ws.kb, batch.new_departments)
        ws.save_kb()
        click.echo(f"added {len(batch.new_departments)} department(s): {', '.join(batch.new_departments)}", err=True)
    progress = _StageProgress()
    fresh = ws.import_history(batch.cases, progress=progress)
    if batch.new_departments and not fresh:
        ws.reindex(progress)
    progress.finish()
    router = ws.router
    assert router is not None
    weights = " ".join(f"{k}={v}" for k, v in router.weights.items())
    cv = f", cross-validated macro-F1 {router.cv_macro_f1:.3f}" if router.cv_macro_f1 is not None else ""
    click.echo(
        f"imported {len(fresh)} new past case(s) from {batch.rows} row(s): {len(batch.cases) - len(fresh)} already "
        f"present, {len(batch.errors)} skipped, in {time.perf_counter() - start:.1f} s; "
        f"{ws.store.count_cases()} in the workspace; routing weights {weights}{cv}"
    )
    if batch.errors:
        sys.exit(1)


@cli.group()
def corpus() -> None:
    """Unlabelled messages that teach the offline text model the language of complaints."""


@corpus.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=FORMAT, default="auto", show_default=True)
@click.option("--map", "mapping", multiple=True, metavar="FIELD=COLUMN", help="Column(s) for text and title.")
@click.option("--reindex/--no-reindex", default=True, show_default=True, help="Refit and rebuild afterwards.")
@click.pass_context
@handle_errors
def corpus_import(ctx: click.Context, file: Path, fmt: str, mapping: tuple[str, ...], reindex: bool) -> None:
    """Import unlabelled texts (title + text joined); duplicates are ignored."""
    from triage.tabular import cell, parse_mapping, read_table, resolve_columns

    table = read_table(file, fmt)  # type: ignore[arg-type]
    fields: dict[str, tuple[str, ...]] = {"text": (), "title": ()}
    columns = resolve_columns(table, fields, ["text"], parse_mapping(mapping, list(fields)))
    texts = []
    for row in table.rows:
        text = cell(row, columns, "text")
        if text:
            title = cell(row, columns, "title")
            texts.append(f"{title}。{text}" if title else text)
    ws = _workspace(_root(ctx))
    added = ws.import_corpus(texts)
    click.echo(f"stored {added} new unlabelled text(s) of {len(table.rows)} row(s)")
    if reindex and added:
        progress = _StageProgress()
        ws.reindex(progress)
        progress.finish()
        click.echo("reindexed with the new corpus")


# -- evaluation -------------------------------------------------------------------------------------
@cli.group("eval")
def eval_group() -> None:
    """Score triage quality on labelled data, compare runs, calibrate the reply rubric."""


@eval_group.command("run")
@click.argument("dataset", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--out", "out", required=True, type=click.Path(file_okay=False, path_type=Path), help="Run directory.")
@click.option("--format", "fmt", type=FORMAT, default="auto", show_default=True)
@click.option(
    "--map",
    "mapping",
    multiple=True,
    metavar="FIELD=COLUMN",
    help="Column for a field: text, department (gold), typical_problem_id, reply (reference), id...",
)
@click.option("--offline/--llm", "offline", default=True, show_default=True, help="Draft offline or with the LLM.")
@click.option("--limit", type=click.IntRange(min=1), help="Evaluate only the first N valid items.")
@click.option("--workers", type=click.IntRange(min=1, max=64), default=1, show_default=True)
@click.option("--judge", is_flag=True, help="Also score replies with the LLM judge (needs an LLM).")
@click.pass_context
@handle_errors
def eval_run(
    ctx: click.Context,
    dataset: Path,
    out: Path,
    fmt: str,
    mapping: tuple[str, ...],
    offline: bool,
    limit: int | None,
    workers: int,
    judge: bool,
) -> None:
    """Triage every item of DATASET; write predictions.jsonl, metrics.json and report.html to --out."""
    from evals.runner import run_eval

    progress = _StageProgress()
    metrics = run_eval(
        settings=_settings(_root(ctx)),
        dataset=dataset,
        out=out,
        mode="offline" if offline else "llm",
        fmt=cast(Format, fmt),
        mapping=mapping,
        limit=limit,
        workers=workers,
        judge=judge,
        progress=lambda done, total: progress("evaluating", done, total),
    )
    progress.finish()
    if not metrics["n"]:
        raise InputError(f"no valid items in {dataset} ({metrics['n_invalid']} invalid; see {out / 'metrics.json'})")
    line = (
        f"n={metrics['n']} accuracy={metrics['accuracy']:.4f} macro_f1={metrics['macro_f1']:.4f} "
        f"top3={metrics['top3_accuracy']:.4f}"
    )
    if "typical_problem" in metrics:
        tp = metrics["typical_problem"]
        line += f" problem_hit@1={tp.get('hit_at_1', 0):.4f} problem_hit@3={tp.get('hit_at_3', 0):.4f}"
    line += f" reply_quality={metrics['reply_quality']['mean']:.3f} p95_ms={metrics['latency_ms']['p95']}"
    click.echo(line)
    if metrics["n_invalid"]:
        click.echo(f"{metrics['n_invalid']} invalid item(s) listed in {out / 'metrics.json'}", err=True)
    click.echo(f"wrote {out / 'predictions.jsonl'}, {out / 'metrics.json'}, {out / 'report.html'}")


@eval_group.command("compare")
@click.argument("run_a", type=click.Path(file_okay=False, path_type=Path))
@click.argument("run_b", type=click.Path(file_okay=False, path_type=Path))
@click.option(
    "--max-drop",
    "gates",
    multiple=True,
    metavar="METRIC=VALUE",
    help="Fail (exit 1) when METRIC falls by more than VALUE from A to B, e.g. macro_f1=0.02.",
)
@click.option("--show", default=30, show_default=True, help="How many changed items to list.")
@handle_errors
def eval_compare(run_a: Path, run_b: Path, gates: tuple[str, ...], show: int) -> None:
    """Metric deltas from RUN_A to RUN_B and the items whose department changed."""
    from evals.compare import compare

    result = compare(run_a, run_b, gates)
    rows = [
        [k, "-" if a is None else f"{a:.4f}", "-" if b is None else f"{b:.4f}", "-" if d is None else f"{d:+.4f}"]
        for k, a, b, d in result.rows
    ]
    click.echo(render_table(["metric", "A", "B", "delta"], rows, [28, 9, 9, 9]))
    click.echo(f"\n{len(result.changed)} item(s) changed department:")
    for item, gold, a, b in result.changed[:show]:
        mark = "fixed" if b == gold else ("broken" if a == gold else "changed")
        click.echo(f"  {item}: {a} -> {b} (gold {gold}, {mark})")
    for failure in result.failures:
        click.echo(f"GATE FAILED: {failure}", err=True)
    if result.failures:
        sys.exit(1)


@eval_group.command("rubric")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--format", "fmt", type=FORMAT, default="auto", show_default=True)
@click.option("--map", "mapping", multiple=True, metavar="FIELD=COLUMN", help="Columns for text, title, reply.")
@click.option(
    "--label",
    "labels",
    multiple=True,
    default=("reply_complete", "reply_interpretable"),
    show_default=True,
    help="Annotation columns (是/否, 1/0) to check the rubric against.",
)
@handle_errors
def eval_rubric(file: Path, fmt: str, mapping: tuple[str, ...], labels: tuple[str, ...]) -> None:
    """How well the reply rubric agrees with human annotations of real replies (JSON)."""
    from evals.calibrate import calibrate

    result = calibrate(file, labels=labels, fmt=fmt, mapping=mapping)  # type: ignore[arg-type]
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))


# -- demo ---------------------------------------------------------------------------------------------
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


@cli.command("demo")
@click.pass_context
@handle_errors
def demo(ctx: click.Context) -> None:
    """Run the built-in sample complaints through the pipeline and show the drafts as a table."""
    raw = (resources.files("triage") / "data" / "demo_complaints.jsonl").read_text(encoding="utf-8")
    complaints = [complaint_from_mapping(json.loads(line)) for line in raw.splitlines() if line.strip()]
    pipeline = _pipeline(ctx)
    drafts = pipeline.triage_many(complaints)
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
    ws = pipeline.ws
    click.echo(
        f"\nworkspace: {ws.data_dir}  embedder: {ws.embedder.fingerprint}  drafter: "
        f"{'llm:' + pipeline.settings.llm_model if pipeline.llm else 'offline'}"
    )


def main() -> None:
    cli(prog_name="triage")
