"""Batch re-triage jobs: filters, dry run, decided cases, crash and resume, many workers, LLM limits."""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.conftest import complaint, fresh_postgres_database, llm_settings
from tests.fakes.openai_server import ScriptedOpenAI, Step
from tests.test_llm_drafter import GOOD
from triage.access.models import NewUser, User
from triage.cli import cli
from triage.jobs.models import JobFilters, NewJob
from triage.jobs.ratelimit import RateLimiter
from triage.pipeline import TriagePipeline
from triage.services import Services, build_services
from triage.settings import Settings
from triage.workspace import Workspace

TEXTS = [
    "社保卡丢了补办要等二十多天，还要再跑银行激活",
    "港澳通行证预约一个星期都约不到号",
    "租房提取公积金被退回三次说合同没有备案",
    "异地就医备案了住院还是不能直接结算",
    "营业执照地址变更了税务登记没有同步",
    "小区电梯停了两个月物业不修",
]


@dataclass
class Backlog:
    settings: Settings
    env: dict[str, str]
    case_ids: list[str]
    engine: sa.Engine

    def cli(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "triage", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def scalar(self, sql: str, **params: object) -> Any:
        """One value from the case database."""
        with self.engine.connect() as conn:
            return conn.execute(sa.text(sql), params).scalar_one()

    def services(self, settings: Settings | None = None, pipeline: type[TriagePipeline] | None = None) -> Services:
        """The services on the backlog's database; `pipeline`: a TriagePipeline subclass to draft with."""
        settings = settings or self.settings
        if pipeline is None:
            return build_services(settings)
        ws = Workspace.open(settings)
        return build_services(settings, workspace=ws, pipeline=pipeline(ws))


def _admin(services: Services, name: str) -> User:
    new = NewUser(name=name, role="admin")
    return services.users.add(new, valid_departments=services.workspace.kb.department_names).user


def _seed(settings: Settings, n: int) -> list[str]:
    with build_services(settings) as services:
        user = _admin(services, "seeder")
        ids: list[str] = []
        for start in range(0, n, 1000):
            texts = [f"{TEXTS[i % len(TEXTS)]}（编号{i}）" for i in range(start, min(n, start + 1000))]
            receipt = services.intake.ingest_batch([complaint(t, channel="12345") for t in texts], user=user)
            for j in range(0, len(receipt.case_ids), 256):
                services.drafts.draft_cases(receipt.case_ids[j : j + 256])
            ids += receipt.case_ids
        return ids


def _backlog(builtin_dir: Path, root: Path, url: str, n: int) -> Backlog:
    data_dir = root / "ws"
    shutil.copytree(builtin_dir, data_dir)
    settings = Settings(data_dir=data_dir, database_url=url, job_lease_s=2.0)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("TRIAGE_")},
        "TRIAGE_DATA_DIR": str(data_dir),
        "TRIAGE_DATABASE_URL": url,
        "TRIAGE_JOB_LEASE_S": "2",
    }
    return Backlog(settings, env, _seed(settings, n), sa.create_engine(url))


@pytest.fixture
def small_backlog(builtin_dir: Path, tmp_path: Path) -> Iterator[Backlog]:
    """24 drafted cases in a SQLite database."""
    backlog = _backlog(builtin_dir, tmp_path, f"sqlite:///{tmp_path / 'cases.db'}", 24)
    yield backlog
    backlog.engine.dispose()


@pytest.fixture
def pg_backlog(builtin_dir: Path, tmp_path: Path) -> Iterator[Backlog]:
    """1,200 drafted cases in a fresh PostgreSQL database."""
    with fresh_postgres_database() as url:
        backlog = _backlog(builtin_dir, tmp_path, url, 1200)
        yield backlog
        backlog.engine.dispose()


def _run(backlog: Backlog, *args: str) -> tuple[int, str, str]:
    env = {**backlog.env, "TIKTOKEN_CACHE_DIR": os.environ.get("TIKTOKEN_CACHE_DIR", "")}
    result = CliRunner(env=env).invoke(cli, list(args), catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def _job_drafts(backlog: Backlog, job_id: str) -> dict[str, int]:
    with backlog.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT case_id, count(*) FROM drafts WHERE created_by = :actor GROUP BY case_id"),
            {"actor": f"job:{job_id}"},
        ).all()
    return {str(c): int(n) for c, n in rows}


def _items_by_worker(backlog: Backlog, job_id: str) -> dict[str, int]:
    """How many of the job's items each worker handled."""
    with backlog.engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT worker, count(*) FROM job_items WHERE job_id = :j GROUP BY worker"), {"j": job_id}
        ).all()
    return {str(w): int(n) for w, n in rows}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--department", "市魔法局"], "valid departments: 市公安局"),
        (["--channel", "微博"], "valid: 好差评, 12345"),
        (["--typical-problem", "TP-NOPE"], "valid: TP-"),
        ([], "choose the cases"),
    ],
)
def test_unknown_filter_values_are_refused_before_any_work(
    small_backlog: Backlog, args: list[str], message: str
) -> None:
    code, _, err = _run(small_backlog, "retriage", *args)
    assert code == 2 and message in err
    assert small_backlog.scalar("SELECT count(*) FROM jobs") == 0


def test_ids_file_with_unknown_ids_is_refused(small_backlog: Backlog, tmp_path: Path) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("\n".join([*small_backlog.case_ids[:2], "no-such-case"]), encoding="utf-8")
    code, _, err = _run(small_backlog, "retriage", "--ids", str(ids))
    assert code == 2 and "no such case: no-such-case" in err


def test_dry_run_counts_and_estimates_without_calling_the_llm(
    small_backlog: Backlog, llm_server: ScriptedOpenAI
) -> None:
    small_backlog.env.update(
        {
            "TRIAGE_LLM_MODEL": "scripted-model",
            "TRIAGE_LLM_BASE_URL": llm_server.base_url,
            "TRIAGE_LLM_API_KEY": "sk-test",
            "TRIAGE_LLM_PRICE_INPUT_PER_1K": "0.002",
            "TRIAGE_LLM_PRICE_OUTPUT_PER_1K": "0.008",
        }
    )
    code, out, _ = _run(small_backlog, "retriage", "--undecided", "--dry-run")
    assert code == 0
    estimate = json.loads(out)
    assert estimate["cases"] == estimate["to_retriage"] == 24 and estimate["drafter"] == "llm:scripted-model"
    assert estimate["complaint_tokens"] > 24 * 10 and estimate["estimated_prompt_tokens"] > estimate["complaint_tokens"]
    expected = (
        estimate["estimated_prompt_tokens"] / 1000 * 0.002 + estimate["estimated_completion_tokens"] / 1000 * 0.008
    )
    assert estimate["estimated_cost"] == pytest.approx(expected, abs=1e-4)
    assert llm_server.chat_requests() == []
    assert small_backlog.scalar("SELECT count(*) FROM jobs") == 0


def test_decided_cases_are_skipped_unless_included_and_keep_their_decision(small_backlog: Backlog) -> None:
    with small_backlog.services() as services:
        jobs, cases = services.jobs, services.cases
        admin = _admin(services, "boss")
        decided = cases.get(small_backlog.case_ids[0], user=admin)
        approved = services.decisions.approve(decided.id, user=admin, version=decided.version)
        skipped = jobs.work(jobs.create(NewJob(filters=JobFilters(status=["approved"])), actor="t").id)
        assert (skipped.skipped, skipped.done) == (1, 0) and "approved" in next(iter(skipped.skipped_reasons))
        included = jobs.work(
            jobs.create(NewJob(filters=JobFilters(status=["approved"]), include_decided=True), actor="t").id
        )
        assert included.done == 1
        after = cases.get(decided.id, user=admin)
        assert after.status == "approved" and after.department == approved.department
        assert after.decisions == approved.decisions and [d.number for d in after.drafts] == [1, 2]


def test_sigkill_mid_run_then_resume_ends_every_item_done_exactly_once(pg_backlog: Backlog) -> None:
    with pg_backlog.services() as services:
        job = services.jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="test")
    assert job.total == 1200
    worker = pg_backlog.cli("retriage", "--resume", job.id, "--chunk", "16")
    deadline = time.monotonic() + 120
    while True:  # kill it somewhere in the middle, mid-chunk as likely as not
        done = pg_backlog.scalar("SELECT count(*) FROM job_items WHERE job_id = :j AND state = 'done'", j=job.id)
        if done >= 150 or worker.poll() is not None or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert worker.poll() is None, f"the worker finished before it could be killed: {worker.communicate()}"
    worker.send_signal(signal.SIGKILL)
    worker.communicate()  # reaps it and closes its pipes
    with pg_backlog.engine.connect() as conn:
        states: dict[str, int] = dict(
            conn.execute(
                sa.text("SELECT state, count(*) FROM job_items WHERE job_id = :j GROUP BY state"), {"j": job.id}
            ).all()
        )
    assert 0 < states.get("done", 0) < 1200, states
    resumed = pg_backlog.cli("retriage", "--resume", job.id)
    out, err = resumed.communicate(timeout=300)
    assert resumed.returncode == 0, err
    assert "1200 done, 0 failed, 0 skipped of 1200" in out
    drafts = _job_drafts(pg_backlog, job.id)
    assert len(drafts) == 1200 and set(drafts.values()) == {1}  # every case exactly one new draft version
    audit = pg_backlog.scalar(
        "SELECT count(*) FROM audit_events WHERE actor = :a AND action = 'retriage'", a=f"job:{job.id}"
    )
    assert audit == 1200


def test_three_workers_share_one_job_without_doing_an_item_twice(pg_backlog: Backlog) -> None:
    with pg_backlog.services() as services:
        job = services.jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="test")
    workers = [pg_backlog.cli("retriage", "--resume", job.id, "--chunk", "8") for _ in range(3)]
    results = [w.communicate(timeout=300) for w in workers]
    assert all(w.returncode == 0 for w in workers), [r[1][-500:] for r in results]
    drafts = _job_drafts(pg_backlog, job.id)
    assert len(drafts) == 1200 and set(drafts.values()) == {1}
    per_worker = _items_by_worker(pg_backlog, job.id)
    assert sum(per_worker.values()) == 1200 and len(per_worker) >= 2, per_worker


def test_llm_job_runs_concurrently_and_falls_back_per_item(small_backlog: Backlog) -> None:
    server = ScriptedOpenAI(latency_s=0.3, default=Step.answer(GOOD)).start()
    try:
        settings = llm_settings(
            small_backlog.settings.data_dir,
            server,
            database_url=small_backlog.settings.database_url,
            llm_price_input_per_1k=0.001,
            llm_max_retries=0,
        )
        with small_backlog.services(settings) as services:
            jobs = services.jobs
            job = jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
            summary = jobs.work(job.id, concurrency=8, rpm=1000, tpm=10_000_000)
            assert summary.done == 24 and summary.failed == 0
            assert 4 <= server.max_in_flight <= 8  # drafts overlapped, never beyond the concurrency
            assert summary.prompt_tokens > 0 and summary.cost == pytest.approx(
                summary.prompt_tokens / 1000 * 0.001, rel=1e-3
            )
            server.default = Step.error(500)  # the endpoint goes down: each item falls back to the offline drafter
            down = jobs.work(jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t").id, concurrency=4)
            assert down.done == 24 and down.failed == 0
            draft = services.cases.get(small_backlog.case_ids[0], user=_admin(services, "a")).draft
            assert draft is not None and draft.drafted_by == "offline" and draft.fallback_reason
    finally:
        server.stop()


@contextmanager
def _pg_llm_jobs(builtin_dir: Path, root: Path, latency_s: float) -> Iterator[tuple[Backlog, Services, ScriptedOpenAI]]:
    """60 drafted cases in a fresh PostgreSQL database, and services drafting with the scripted LLM."""
    server = ScriptedOpenAI(latency_s=latency_s, default=Step.answer(GOOD)).start()
    try:
        with fresh_postgres_database() as url:
            backlog = _backlog(builtin_dir, root, url, 60)
            try:
                settings = llm_settings(backlog.settings.data_dir, server, database_url=url, llm_max_retries=0)
                with backlog.services(settings) as services:
                    yield backlog, services, server
            finally:
                backlog.engine.dispose()
    finally:
        server.stop()


def test_llm_job_never_exceeds_the_concurrency(builtin_dir: Path, tmp_path: Path) -> None:
    """A worker keeps exactly `concurrency` LLM calls in flight, never more, and drafts every item once."""
    with _pg_llm_jobs(builtin_dir, tmp_path, latency_s=0.05) as (backlog, services, server):
        for concurrency in (1, 3):
            server.max_in_flight = 0
            job = services.jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
            summary = services.jobs.work(job.id, concurrency=concurrency, chunk=4, worker="w")
            assert summary.done == 60 and summary.failed == 0
            assert server.max_in_flight == concurrency
            drafts = _job_drafts(backlog, job.id)
            assert len(drafts) == 60 and set(drafts.values()) == {1}
            assert _items_by_worker(backlog, job.id) == {"w": 60}


def test_a_stopped_worker_leaves_the_rest_to_the_next(builtin_dir: Path, tmp_path: Path) -> None:
    """Stopping a worker (its stop event: SIGTERM/Ctrl-C in the CLI) stops it after its chunk; a later
    worker finishes the job, each item drafted once."""
    with _pg_llm_jobs(builtin_dir, tmp_path, latency_s=0.1) as (backlog, services, server):
        jobs = services.jobs
        job = jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
        stop = threading.Event()
        first: list[Any] = []
        runner = threading.Thread(target=lambda: first.append(jobs.work(job.id, concurrency=2, chunk=2, stop=stop)))
        runner.start()
        while len(server.chat_requests()) < 4 and runner.is_alive():  # stop it once it is under way
            time.sleep(0.01)
        stop.set()
        runner.join(30)
        assert not runner.is_alive(), "the worker did not stop"
        assert 0 < first[0].done < 60 and first[0].status == "running"
        rest = jobs.work(job.id, concurrency=4, chunk=4)
        assert rest.done == 60 and rest.failed == 0 and rest.status == "done"
        drafts = _job_drafts(backlog, job.id)
        assert len(drafts) == 60 and set(drafts.values()) == {1}


def test_cli_filters_select_the_cases_and_report_progress_and_changes(small_backlog: Backlog) -> None:
    """Combined filters pick exactly their cases; without a terminal, progress comes as plain lines with
    rate and ETA; the summary prints counts, the old -> new department matrix, problems, tokens, cost."""
    moved = small_backlog.case_ids[0]
    with small_backlog.engine.begin() as conn:  # an old draft that routed this case elsewhere
        routed = conn.execute(sa.text("SELECT department FROM cases WHERE id = :i"), {"i": moved}).scalar_one()
        elsewhere = "市民政局" if routed != "市民政局" else "市医保局"
        conn.execute(sa.text("UPDATE cases SET department = :d WHERE id = :i"), {"d": elsewhere, "i": moved})
    selected = small_backlog.scalar("SELECT count(*) FROM cases WHERE department = :d", d=elsewhere)
    code, out, err = _run(
        small_backlog,
        *("retriage", "--department", elsewhere, "--status", "drafted", "--channel", "12345"),
        *("--from", "2000-01-01", "--to", "2999-01-01"),
        *("--concurrency", "2", "--rpm", "600", "--tpm", "100000"),
    )
    assert code == 0, err
    job_id = out.split()[1].rstrip(":")
    drafts = _job_drafts(small_backlog, job_id)
    assert moved in drafts and len(drafts) == selected  # that department's cases, and only those
    assert f"{selected} done, 0 failed, 0 skipped of {selected}" in out
    now = small_backlog.scalar("SELECT department FROM cases WHERE id = :i", i=moved)
    assert now == routed and f"  {elsewhere} -> {routed}: 1" in out
    assert "typical problem changed on" in out and "tokens: 0 prompt + 0 completion; cost 0.0000" in out
    progress = rf"job {job_id[:8]}: {selected}/{selected} \({selected} done, 0 failed, 0 skipped\) [\d.]+/s ETA"
    assert re.search(progress, err), err


def test_rate_limiter_holds_requests_and_tokens_per_minute() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    limiter = RateLimiter(rpm=3, tpm=1000, clock=lambda: now[0], sleep=sleep)
    for _ in range(3):
        limiter.acquire(100)
    assert slept == []
    limiter.acquire(100)  # the fourth request in a minute waits for the first to leave the window
    assert now[0] == pytest.approx(60.0)
    tokens = RateLimiter(rpm=None, tpm=1000, clock=lambda: now[0], sleep=sleep)
    entry = tokens.acquire(900)
    tokens.settle(entry, 300)  # it used less than estimated: the budget frees up at once
    before = now[0]
    tokens.acquire(600)
    assert now[0] == before
    tokens.acquire(200)  # 900 in the window + 200 > 1000: waits a minute
    assert now[0] == pytest.approx(before + 60.0)


class _BrokenFor(TriagePipeline):
    """The real pipeline, except that drafting a complaint containing `marker` raises."""

    marker = "（编号3）"

    def triage_many(self, complaints, **kwargs):  # type: ignore[no-untyped-def]
        if any(self.marker in c.text for c in complaints):
            raise RuntimeError("model server rejected the request")
        return super().triage_many(complaints, **kwargs)


def test_an_item_failing_three_times_is_failed_and_the_job_goes_on(small_backlog: Backlog) -> None:
    with small_backlog.services(pipeline=_BrokenFor) as services:
        job = services.jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
        summary = services.jobs.work(job.id, chunk=8)
    assert (summary.done, summary.failed, summary.status) == (23, 1, "done")
    ((case_id, error),) = summary.errors.items()
    assert "RuntimeError: model server rejected the request" in error
    attempts = small_backlog.scalar(
        "SELECT attempts FROM job_items WHERE job_id = :j AND case_id = :c", j=job.id, c=case_id
    )
    assert attempts == 3


def test_cancelling_skips_what_is_pending(small_backlog: Backlog) -> None:
    with small_backlog.services() as services:
        jobs = services.jobs
        job = jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
        cancelled = jobs.cancel(job.id)
        assert cancelled.status == "cancelled" and cancelled.skipped == 24
        summary = jobs.work(job.id)
    assert summary.done == 0 and summary.skipped_reasons == {"job cancelled": 24}
    assert _job_drafts(small_backlog, job.id) == {}


def test_an_item_whose_transaction_keeps_failing_fails_alone(small_backlog: Backlog) -> None:
    """A chunk whose commit fails is retried item by item: the bad item fails after three attempts."""
    bad = small_backlog.case_ids[5]

    def refuse(conn: object, cursor: object, statement: str, parameters: object, *args: object) -> None:
        if statement.startswith("INSERT INTO drafts") and bad in str(parameters):
            raise sa.exc.OperationalError(statement, {}, RuntimeError("disk full"))

    with small_backlog.services() as services:
        sa.event.listen(services.db.engine, "before_cursor_execute", refuse)
        job = services.jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
        summary = services.jobs.work(job.id, chunk=8)
    assert (summary.done, summary.failed, summary.status) == (23, 1, "done")
    assert list(summary.errors) == [bad] and "disk full" in summary.errors[bad]
    drafts = _job_drafts(small_backlog, job.id)
    assert len(drafts) == 23 and bad not in drafts and set(drafts.values()) == {1}


def test_a_worker_recovers_its_own_items_after_a_database_hiccup(small_backlog: Backlog) -> None:
    """The chunk's commit, an item's retry and the recording of that failure all fail (the database
    went away mid-chunk); the worker claims its orphaned items again and every item ends done once."""
    failures = {"left": 3}

    def hiccup(conn: object, cursor: object, statement: str, *args: object) -> None:
        writes_draft = statement.startswith("INSERT INTO drafts")
        records_failure = statement.startswith("UPDATE job_items SET") and "error" in statement
        if (writes_draft or (records_failure and "lease_until" not in statement)) and failures["left"] > 0:
            failures["left"] -= 1
            raise sa.exc.OperationalError(statement, {}, ConnectionError("server closed the connection"))

    with small_backlog.services() as services:
        sa.event.listen(services.db.engine, "before_cursor_execute", hiccup)
        job = services.jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
        summary = services.jobs.work(job.id, chunk=8)
    assert failures["left"] == 0
    assert (summary.done, summary.failed, summary.status) == (24, 0, "done")
    drafts = _job_drafts(small_backlog, job.id)
    assert len(drafts) == 24 and set(drafts.values()) == {1}


def test_a_case_decided_while_the_job_drafts_it_keeps_the_decision(small_backlog: Backlog) -> None:
    """A caseworker approves a case between the job's drafting and its commit: the job skips it."""
    target = small_backlog.case_ids[0]

    class ApprovesMidway(TriagePipeline):
        """The real pipeline; while it drafts, a caseworker approves `target` through the service."""

        def triage_many(self, complaints, **kwargs):  # type: ignore[no-untyped-def]
            drafts = super().triage_many(complaints, **kwargs)
            case = services.cases.get(target, user=admin)
            if case.status == "drafted":
                services.decisions.approve(target, user=admin, version=case.version)
            return drafts

    with small_backlog.services(pipeline=ApprovesMidway) as services:
        admin = _admin(services, "midway")
        job = services.jobs.create(NewJob(filters=JobFilters(undecided=True)), actor="t")
        summary = services.jobs.work(job.id, chunk=8)
        after = services.cases.get(target, user=admin)
    assert (summary.done, summary.skipped) == (23, 1) and "approved" in next(iter(summary.skipped_reasons))
    assert after.status == "approved" and [d.number for d in after.drafts] == [1]
    assert target not in _job_drafts(small_backlog, job.id)
