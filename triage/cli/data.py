"""Commands: history and corpus import, evaluation."""

import json
import sys
import time
from pathlib import Path
from typing import cast

import click

from evals.calibrate import calibrate
from evals.compare import compare
from evals.runner import run_eval
from triage.cli.base import (
    StageProgress,
    cli,
    handle_errors,
    open_workspace,
    render_table,
    root_context,
    settings_from,
    table_options,
)
from triage.errors import InputError
from triage.history import read_history, with_departments
from triage.tabular import Format, cell, parse_mapping, read_table, resolve_columns
from triage.workspace import Workspace


@cli.group()
def history() -> None:
    """Bring your own history: resolved cases that routing and retrieval learn from."""


@history.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@table_options("Column for a field, e.g. --map text=留言详情 --map department=一级标签.")
@click.option("--add-departments", is_flag=True, help="Add departments the taxonomy lacks instead of skipping.")
@click.pass_context
@handle_errors
def history_import(ctx: click.Context, file: Path, fmt: str, mapping: tuple[str, ...], add_departments: bool) -> None:
    """Import resolved cases (text and department required); importing the same file twice adds nothing."""
    start = time.perf_counter()
    with open_workspace(ctx) as ws:
        _import_history(ws, file, fmt, mapping, add_departments, start)


def _import_history(ws: Workspace, file: Path, fmt: str, mapping: tuple[str, ...], add: bool, start: float) -> None:
    batch = read_history(file, ws.kb, fmt=fmt, mapping=mapping, add_departments=add)  # type: ignore[arg-type]
    for error in batch.errors:
        click.echo(f"{file}: {error} (skipped)", err=True)
    if batch.new_departments:
        ws.save_kb(with_departments(ws.kb, batch.new_departments))
        click.echo(f"added {len(batch.new_departments)} department(s): {', '.join(batch.new_departments)}", err=True)
    progress = StageProgress()
    fresh = ws.import_history(batch.cases, progress=progress)
    if batch.new_departments and not fresh:
        ws.reindex(progress)
    progress.finish()
    router = ws.models.router
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
@table_options("Column(s) for text and title.")
@click.option("--reindex/--no-reindex", default=True, show_default=True, help="Refit and rebuild afterwards.")
@click.pass_context
@handle_errors
def corpus_import(ctx: click.Context, file: Path, fmt: str, mapping: tuple[str, ...], reindex: bool) -> None:
    """Import unlabelled texts (title + text joined); duplicates are ignored."""
    table = read_table(file, fmt)  # type: ignore[arg-type]
    fields: dict[str, tuple[str, ...]] = {"text": (), "title": ()}
    columns = resolve_columns(table, fields, ["text"], parse_mapping(mapping, list(fields)))
    texts = []
    for row in table.rows:
        text = cell(row, columns, "text")
        if text:
            title = cell(row, columns, "title")
            texts.append(f"{title}。{text}" if title else text)
    with open_workspace(ctx) as ws:
        added = ws.import_corpus(texts)
        click.echo(f"stored {added} new unlabelled text(s) of {len(table.rows)} row(s)")
        if reindex and added:
            progress = StageProgress()
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
@table_options("Column for a field: text, department (gold), typical_problem_id, reply (reference), id...")
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
    progress = StageProgress()
    metrics = run_eval(
        settings=settings_from(root_context(ctx)),
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
@table_options("Columns for text, title, reply.")
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
    result = calibrate(file, labels=labels, fmt=fmt, mapping=mapping)  # type: ignore[arg-type]
    click.echo(json.dumps(result, ensure_ascii=False, indent=2))
