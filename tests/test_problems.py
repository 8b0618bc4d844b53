"""Typical problems as tracked work, on SQLite and PostgreSQL: the lifecycle with its role checks and
stale versions, merging, the unified reply reaching the drafts, the figures and the effect of a
rectification, the completion rate, and the knowledge-base file as import format."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from click.testing import CliRunner

from tests.conftest import Loop, llm_settings, local
from tests.fakes.openai_server import ScriptedOpenAI, Step
from tests.test_llm_drafter import GOOD
from triage.access.models import User
from triage.cases.rows import CaseRow
from triage.cases.states import Role
from triage.cli import cli
from triage.errors import ForbiddenError, InputError, InvalidTransitionError, StaleVersionError
from triage.models import Complaint
from triage.problems import figures
from triage.problems.models import Merge, NewProblem, Plan, ProblemDetail, ProblemEdit, Report, Transition
from triage.services import build_services

SHANGHAI = ZoneInfo("Asia/Shanghai")
PASSPORT = "暑假带孩子办护照，随申办上出入境预约连着一个星期都显示号源已满，只能半夜蹲号"


def _candidate(loop: Loop, department: str = "市公安局", **extra: Any) -> ProblemDetail:
    new = NewProblem.model_validate(
        {"title": f"测试问题{datetime.now().timestamp()}", "department": department, **extra}
    )
    return loop.services.problems.create(new, user=loop.supervisor)


def test_the_lifecycle_with_every_role_check_and_stale_versions(loop: Loop) -> None:
    loop.clock.at("2025-03-01T10:00:00")
    problems = loop.services.problems
    owner = loop.user("caseworker", "市公安局")
    outsider = loop.user("caseworker", "市民政局")
    with pytest.raises(ForbiddenError):
        problems.create(NewProblem(title="x", department="市公安局"), user=owner)
    p = _candidate(loop)
    assert p.status == "candidate" and p.source == "person" and p.allowed_actions
    with pytest.raises(ForbiddenError):
        problems.confirm(p.id, Transition(version=p.version), user=owner)
    p = problems.confirm(p.id, Transition(version=p.version, note="已核实"), user=loop.supervisor)
    assert p.status == "confirmed"
    with pytest.raises(StaleVersionError):
        problems.confirm(p.id, Transition(version=p.version - 1), user=loop.supervisor)
    plan = Plan(version=p.version, measures="增加夜间号源", deadline=datetime(2025, 6, 30, 18, 0))
    for who in (outsider, loop.supervisor):  # the owner department's caseworkers plan
        with pytest.raises(ForbiddenError):
            problems.plan(p.id, plan, user=who)
    with pytest.raises(InputError, match="passed"):
        problems.plan(p.id, plan.model_copy(update={"deadline": datetime(2025, 1, 1)}), user=owner)
    p = problems.plan(p.id, plan, user=owner)
    assert p.status == "rectifying" and p.deadline == local("2025-06-30T18:00:00") and p.owner_department == "市公安局"
    assert p.plan_measures == "增加夜间号源" and not p.overdue
    later = Plan(version=p.version, measures="增加夜间号源", deadline=datetime(2025, 12, 31))
    with pytest.raises(ForbiddenError, match="revise the plan"):  # the department does not move its own deadline
        problems.plan(p.id, later, user=owner)
    assert "plan" not in problems.get(p.id, user=owner).allowed_actions
    assert "plan" in problems.get(p.id, user=loop.supervisor).allowed_actions
    with pytest.raises(InvalidTransitionError) as refused:
        problems.verify(p.id, Transition(version=p.version), user=loop.supervisor)
    assert refused.value.allowed  # what the state allows is said
    loop.clock.at("2025-07-02T10:00:00")
    assert problems.get(p.id, user=owner).overdue  # the deadline passed before the report
    assert p.id in {s.id for s in problems.summaries(user=loop.admin, overdue=True)}
    with pytest.raises(ForbiddenError):
        problems.report(p.id, Report(version=p.version, summary="完成"), user=outsider)
    p = problems.report(p.id, Report(version=p.version, summary="已开设夜间专场"), user=owner)
    assert p.status == "rectified" and p.rectified_at == loop.clock.now and not p.overdue
    with pytest.raises(ForbiddenError):
        problems.reopen(p.id, Transition(version=p.version, note="仍有投诉"), user=owner)
    with pytest.raises(InputError, match="why"):
        problems.reopen(p.id, Transition(version=p.version), user=loop.supervisor)
    p = problems.reopen(p.id, Transition(version=p.version, note="七月仍有投诉"), user=loop.supervisor)
    assert p.status == "reopened"
    replan = Plan(version=p.version, measures="扩大自助签注", deadline=datetime(2025, 9, 30))
    p = problems.plan(p.id, replan, user=owner)
    assert p.status == "rectifying" and p.rectified_at is None
    p = problems.report(p.id, Report(version=p.version, summary="已扩大"), user=owner)
    p = problems.verify(p.id, Transition(version=p.version), user=loop.supervisor)
    assert p.status == "verified" and p.verified_at == loop.clock.now
    p = problems.archive(p.id, Transition(version=p.version, note="已常态化"), user=loop.supervisor)
    assert p.status == "archived" and p.allowed_actions == []
    history = [(e.action, e.actor) for e in p.history]
    expected = ["propose", "confirm", "plan", "report", "reopen", "plan", "report", "verify", "archive"]
    assert [a for a, _ in history] == expected
    assert history[2][1] == owner.name and history[4][1] == loop.supervisor.name
    assert p.history[4].note == "七月仍有投诉" and p.history[2].changes["plan_measures"] == [None, "增加夜间号源"]
    assert p.id not in {s.id for s in problems.summaries(user=loop.admin)}  # archived ones only when asked for
    assert p.id not in loop.services.workspace.kb.problems_by_id  # and complaints no longer match it


def test_a_candidate_merged_into_a_problem_brings_its_cases(loop: Loop) -> None:
    loop.clock.at("2025-03-01T10:00:00")
    problems = loop.services.problems
    target = problems.get("TP-GA-001", user=loop.admin)
    candidate = _candidate(loop, title="暑期护照预约难（候选）", description="暑假出入境预约号源紧张，半夜蹲号")
    assert candidate.id in loop.services.workspace.kb.problems_by_id  # a candidate can be matched at once
    case = loop.ingest(PASSPORT)
    with loop.services.db.write() as s:  # as if its draft had matched the candidate
        row = s.get(CaseRow, case.id)
        assert row is not None
        row.typical_problem_id = candidate.id
    with pytest.raises(InputError, match="into itself"):
        problems.merge(candidate.id, Merge(version=candidate.version, into=candidate.id), user=loop.supervisor)
    merged = problems.merge(candidate.id, Merge(version=candidate.version, into=target.id), user=loop.supervisor)
    assert merged.status == "archived" and merged.merged_into == target.id and merged.case_count == 0
    moved = loop.services.cases.get(case.id, user=loop.admin)
    assert moved.typical_problem_id == target.id
    assert [e.action for e in loop.services.cases.audit(case.id, user=loop.admin)][-1] == "merge_problem"
    assert problems.get(target.id, user=loop.admin).case_count >= 1
    assert candidate.id not in loop.services.workspace.kb.problems_by_id


def test_the_unified_reply_is_what_the_drafts_of_the_problem_say(loop: Loop) -> None:
    problems = loop.services.problems
    passport = problems.get("TP-GA-001", user=loop.admin)
    unified = "今年暑期每周二、四晚间和周六全天增开出入境专场，号源每日零点放出，也可在自助签注机办理再次签注。"
    worker = loop.user("caseworker", passport.department)
    edited = problems.edit(passport.id, ProblemEdit(version=passport.version, unified_reply=unified), user=worker)
    assert edited.unified_reply == unified and edited.history[-1].action == "edit"
    assert loop.services.workspace.kb.problems_by_id[passport.id].unified_reply == unified  # in the live build
    case = loop.ingest(PASSPORT)
    assert case.draft is not None and case.draft.typical_problem is not None
    assert case.draft.typical_problem.id == passport.id
    assert unified in case.draft.reply and case.draft.prompt_version == "offline_reply/v2"
    other = loop.user("caseworker", "市民政局")
    with pytest.raises(ForbiddenError):
        problems.edit(passport.id, ProblemEdit(version=edited.version, title="x"), user=other)
    cleared = problems.edit(passport.id, ProblemEdit(version=edited.version, unified_reply=None), user=worker)
    assert cleared.unified_reply is None


def test_the_llm_is_given_the_unified_reply(workspace_dir: Path, llm_server: ScriptedOpenAI) -> None:
    llm_server.script.append(Step.answer(GOOD))
    with build_services(llm_settings(workspace_dir, llm_server)) as services:
        unified = "异地就医直接结算请先在国家医保服务平台备案，出院时凭备案结算，未能结算的可回参保地手工报销。"
        problem = services.problems.get("TP-YB-001", user=_admin_user())
        services.problems.edit(
            problem.id, ProblemEdit(version=problem.version, unified_reply=unified), user=_admin_user()
        )
        services.pipeline.triage(Complaint(text="我在上海参保，去年在老家住院，出院时异地就医备案查不到，只能全额自费"))
    prompt = llm_server.chat_requests()[0]["messages"][-1]["content"]
    assert f"统一答复口径：{unified}" in prompt


def _admin_user() -> User:
    return User(id=0, name="cli", role=Role.ADMIN)


def test_a_problems_figures_count_its_cases(loop: Loop) -> None:
    problems, services = loop.services.problems, loop.services
    p = _candidate(loop, department="市人社局")
    made = []
    for when, channel in [
        ("2025-01-10T10:00:00", "12345"),
        ("2025-01-20T10:00:00", "好差评"),
        ("2025-02-03T09:00:00", "12345"),
    ]:
        loop.clock.at(when)
        made.append(loop.ingest(channel=channel, region="浦东新区", created_at=when))
    with services.db.write() as s:
        for case in made:
            row = s.get(CaseRow, case.id)
            assert row is not None
            row.typical_problem_id = p.id
    loop.clock.at("2025-03-01T10:00:00")
    detail = problems.get(p.id, user=loop.admin)
    assert detail.case_count == 3 and detail.open_case_count == 3 and detail.overdue_case_count == 3
    assert [(c.key, c.count) for c in detail.cases_by_month] == [("2025-01", 2), ("2025-02", 1)]
    assert [(c.key, c.count) for c in detail.cases_by_week] == [("2025-W02", 1), ("2025-W04", 1), ("2025-W06", 1)]
    assert Counter({c.key: c.count for c in detail.by_channel}) == Counter({"12345": 2, "好差评": 1})
    assert [(c.key, c.count) for c in detail.by_region] == [("浦东新区", 3)]
    assert set(detail.open_cases) == set(detail.overdue_cases) == {c.id for c in made}
    listed = next(s for s in problems.summaries(user=loop.admin) if s.id == p.id)
    assert (listed.case_count, listed.open_case_count, listed.overdue_case_count) == (3, 3, 3)


def _days(monthly: dict[str, int]) -> dict[str, int]:
    """Day counts with each month's cases on its 10th."""
    return {f"{month}-10": n for month, n in monthly.items() if n}


@pytest.mark.parametrize(
    ("monthly", "rectified", "now", "verdict"),
    [
        # 280 a month for six months, then almost none: fell
        (
            {
                "2024-12": 280,
                "2025-01": 275,
                "2025-02": 290,
                "2025-03": 285,
                "2025-04": 270,
                "2025-05": 280,
                "2025-07": 6,
                "2025-08": 2,
                "2025-09": 1,
            },
            "2025-06-15",
            "2025-10-05",
            "fell",
        ),
        # the same rate before and after
        (
            {"2025-01": 20, "2025-02": 22, "2025-03": 19, "2025-05": 21, "2025-06": 20, "2025-07": 22},
            "2025-04-10",
            "2025-08-02",
            "no clear change",
        ),
        # it got worse
        ({"2025-01": 5, "2025-02": 6, "2025-04": 30, "2025-05": 28}, "2025-03-01", "2025-06-03", "rose"),
        # four cases in all
        ({"2025-01": 2, "2025-03": 1, "2025-04": 1}, "2025-02-10", "2025-05-01", "too few cases to tell"),
        # rectified this month: no whole month after it yet
        ({"2025-01": 40, "2025-02": 40}, "2025-03-05", "2025-03-28", "too early to tell"),
        # complaints began in the month it was rectified: nothing before to compare with
        ({"2025-03": 40, "2025-04": 2, "2025-05": 1}, "2025-03-20", "2025-06-10", "nothing before to compare"),
    ],
)
def test_the_effect_of_a_rectification_on_constructed_series(
    monthly: dict[str, int], rectified: str, now: str, verdict: str
) -> None:
    effect = figures.effect(
        _days(monthly),
        datetime.fromisoformat(rectified).replace(tzinfo=SHANGHAI),
        now=datetime.fromisoformat(now).replace(tzinfo=SHANGHAI).astimezone(UTC),
        tz=SHANGHAI,
    )
    assert effect.verdict == verdict, effect
    if verdict == "fell":
        # from the first case (10 December) to 1 June: 5.68 months, the first one partly
        assert effect.months_before == pytest.approx(5.68, abs=0.01) and effect.months_after == 3
        assert effect.cases_before == 1680 and effect.cases_after == 9
        assert effect.rate_before == pytest.approx(1680 / 5.68, abs=0.5) and effect.rate_after == 3.0
        assert effect.change == pytest.approx(-0.99, abs=1e-2) and effect.p_value is not None
        assert effect.p_value < 1e-6 and "下降99%" in effect.statement and "5.68个月" in effect.statement
    if verdict == "no clear change":
        assert effect.p_value is not None and effect.p_value > 0.05 and "无明显变化" in effect.statement
    if verdict == "nothing before to compare":
        assert effect.months_before < 0.5 and effect.p_value is None
    if verdict == "too few cases to tell":
        assert "太少" in effect.statement and effect.p_value is None
    assert figures.effect({}, None, now=datetime.now(UTC), tz=SHANGHAI).verdict == "not rectified yet"


def test_the_completion_rate_counts_problems_done_by_their_deadline(loop: Loop) -> None:
    problems, supervision = loop.services.problems, loop.services.supervision
    owner = loop.user("caseworker", "市交通委")
    before = supervision.figures(user=loop.supervisor).by_department.get("市交通委")
    due_before = before.problems_due if before else 0
    done_before = before.problems_done_on_time if before else 0
    overdue_before = before.overdue_problems if before else 0
    loop.clock.at("2025-01-01T10:00:00")
    made = []
    for _ in range(3):
        p = _candidate(loop, department="市交通委")
        p = problems.confirm(p.id, Transition(version=p.version), user=loop.supervisor)
        p = problems.plan(p.id, Plan(version=p.version, measures="m", deadline=datetime(2025, 3, 1)), user=owner)
        made.append(p)
    loop.clock.at("2025-02-15T10:00:00")
    problems.report(made[0].id, Report(version=made[0].version, summary="按期完成"), user=owner)
    loop.clock.at("2025-03-10T10:00:00")
    problems.report(made[1].id, Report(version=made[1].version, summary="逾期完成"), user=owner)
    figures_now = supervision.figures(user=loop.supervisor).by_department["市交通委"]
    assert figures_now.problems_due - due_before == 3
    assert figures_now.problems_done_on_time - done_before == 1
    assert figures_now.overdue_problems - overdue_before == 1  # the third, still rectifying


def test_kb_load_upserts_and_keeps_problems_that_have_cases(loop: Loop, tmp_path: Path) -> None:
    """The YAML/JSON files stay the import format: problems are updated, new ones added, and one the file
    no longer lists is archived unless cases refer to it."""
    ws = loop.services.workspace
    loop.clock.at("2025-03-01T10:00:00")
    case = loop.ingest(PASSPORT)
    kept_id = case.typical_problem_id
    assert kept_id is not None
    departments = tmp_path / "departments.yaml"
    departments.write_text(yaml.safe_dump([d.model_dump() for d in ws.kb.departments], allow_unicode=True), "utf-8")
    listed = [p for p in ws.kb.problems if p.id != kept_id and p.id not in ("TP-GA-002",)]
    listed[0] = listed[0].model_copy(update={"title": "改过的标题"})
    file = tmp_path / "problems.yaml"
    entries = [p.model_dump(mode="json") for p in listed]
    entries.append({"id": "TP-NEW-001", "title": "新的典型问题", "department": "市公安局"})
    file.write_text(yaml.safe_dump(entries, allow_unicode=True), "utf-8")
    result = CliRunner().invoke(
        cli,
        ["--data-dir", str(ws.data_dir), "kb", "load", "--departments", str(departments), "--problems", str(file)],
        env={"TRIAGE_DATABASE_URL": loop.services.settings.database_url or ""},
    )
    assert result.exit_code == 0, result.output
    assert (
        f"kept 1 typical problem(s) the file no longer lists, because cases refer to them: {kept_id}" in result.stderr
    )
    assert "archived 1 typical problem(s)" in result.stderr
    problems = loop.services.problems
    assert problems.get(kept_id, user=loop.admin).status != "archived"
    assert problems.get("TP-GA-002", user=loop.admin).status == "archived"
    assert problems.get(listed[0].id, user=loop.admin).title == "改过的标题"
    assert problems.get("TP-NEW-001", user=loop.admin).history[0].action == "import"


def test_a_first_case_in_mid_month_counts_part_of_that_month() -> None:
    """30 complaints from the 16th of January (half a month) and 30 in February, rectified in March: the
    rate before is 60 over 1.5 months, not over 2."""
    days = {"2025-01-16": 30, "2025-02-10": 30, "2025-04-10": 10, "2025-05-10": 10}
    effect = figures.effect(
        days, datetime(2025, 3, 10, tzinfo=SHANGHAI), now=datetime(2025, 6, 2, tzinfo=SHANGHAI), tz=SHANGHAI
    )
    assert effect.months_before == pytest.approx(44 / 30.4375, abs=0.01) and effect.cases_before == 60  # 16 Jan - 1 Mar
    assert effect.rate_before == pytest.approx(60 / 1.45, abs=0.5) and effect.months_after == 2
