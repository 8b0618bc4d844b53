"""The loop after the draft, on SQLite and PostgreSQL, at a fixed clock: deadlines across a holiday,
overdue, first contact, returns and bounces, the escalation ladder, supervision flags, extensions,
appeals, the reply going out, the follow-up that closes or reopens, and the figures supervisors read."""

from __future__ import annotations

from datetime import date, datetime

import pytest

from tests.conftest import Loop, local
from triage.cases.models import CaseQuery
from triage.cases.steps import Satisfaction
from triage.errors import ForbiddenError, InputError, InvalidTransitionError, StaleVersionError
from triage.supervision.models import AppealRequest, ExtensionRequest, RequestDecision, Supervise

SOCIAL = "社保卡丢了去补办，窗口说新卡要等二十多天才能拿，补个卡还让我过几天再跑一趟银行激活"


def test_deadlines_count_working_days_across_a_holiday_and_overdue_is_as_of_the_clock(loop: Loop) -> None:
    """A real-name bad review made on the eve of National Day 2025 (1-8 October off): contact by the next
    working day (9 October), reply within 5 working days (14 October, counting Saturday 11th, worked)."""
    loop.clock.at("2025-09-30T12:00:00")
    case = loop.ingest(channel="好差评", rating=1, created_at="2025-09-30T10:00:00")  # no offset: local time
    assert case.complained_at == local("2025-09-30T10:00:00")
    assert case.handling.deadline_rule == "好差评差评"
    assert case.handling.contact_due_at == local("2025-10-09T23:59:59")
    assert case.handling.reply_due_at == local("2025-10-14T23:59:59")
    assert case.due_at == case.handling.contact_due_at and not case.overdue
    cases = loop.services.cases
    loop.clock.at("2025-10-09T23:00:00")
    assert not cases.get(case.id, user=loop.admin).overdue
    loop.clock.at("2025-10-10T00:30:00")
    assert cases.get(case.id, user=loop.admin).overdue
    overdue = cases.queue(CaseQuery(overdue=True, page_size=200), user=loop.admin)
    in_time = cases.queue(CaseQuery(overdue=False, page_size=200), user=loop.admin)
    assert case.id in {c.id for c in overdue.items} and case.id not in {c.id for c in in_time.items}
    assert all(c.overdue for c in overdue.items) and not any(c.overdue for c in in_time.items)
    by_due = cases.queue(CaseQuery(sort="due_at", page_size=200), user=loop.admin).items
    dues = [c.due_at for c in by_due if c.due_at is not None and not c.supervised]
    assert dues == sorted(dues)

    # first contact: the next deadline is the reply's
    worker = loop.user("caseworker", case.department or "")
    contacted = loop.services.steps.contact(case.id, user=worker, version=case.version + 0, at=None)
    assert contacted.handling.contacted_at == loop.clock.now
    assert contacted.due_at == local("2025-10-14T23:59:59") and not contacted.overdue
    with pytest.raises(StaleVersionError):
        loop.services.steps.contact(case.id, user=worker, version=case.version)
    with pytest.raises(InputError, match="already recorded"):
        loop.services.steps.contact(case.id, user=worker, version=contacted.version)


def test_the_escalation_ladder_reminds_the_next_working_day_then_notices(loop: Loop) -> None:
    loop.clock.at("2025-09-30T12:00:00")
    case = loop.ingest(channel="12345", request_type="咨询", created_at="2025-09-30T09:00:00")  # reply in 3 days
    assert case.due_at == local("2025-10-11T23:59:59")  # 9, 10, 11 (Saturday, worked)
    supervision = loop.services.supervision
    loop.clock.at("2025-10-12T10:00:00")  # overdue, but Sunday: not a working day after the deadline
    assert case.id not in supervision.sweep().reminded
    loop.clock.at("2025-10-13T10:00:00")  # the next working day
    assert case.id in supervision.sweep().reminded
    assert case.id not in supervision.sweep().reminded  # once per deadline
    loop.clock.at("2025-10-14T10:00:00")  # one working day after the reminder: not yet (2 in these settings)
    assert case.id not in supervision.sweep().notified
    loop.clock.at("2025-10-15T10:00:00")
    assert case.id in supervision.sweep().notified
    trail = [(e.actor, e.action) for e in loop.services.cases.audit(case.id, user=loop.admin)]
    assert ("triage", "remind") in trail and ("triage", "notify") in trail
    detail = loop.services.cases.get(case.id, user=loop.admin)
    assert detail.handling.reminded_at == local("2025-10-13T10:00:00")
    assert detail.handling.notified_at == local("2025-10-15T10:00:00")

    # a supervisor's flag (督办): a note, a new deadline, the top of the department's queue
    worker = loop.user("caseworker", case.department or "")
    assert detail.version == case.version  # the system's steps do not make a caseworker's read stale
    with pytest.raises(ForbiddenError):
        supervision.supervise(
            case.id, Supervise(version=case.version, note="请加快", due=date(2025, 10, 20)), user=worker
        )
    body = Supervise(version=case.version, note="请两日内答复", due=date(2025, 10, 17))  # a day: its end
    flagged = supervision.supervise(case.id, body, user=loop.supervisor)
    assert flagged.supervised and flagged.handling.supervision_note == "请两日内答复"
    assert flagged.due_at == local("2025-10-17T23:59:59") and not flagged.overdue
    assert flagged.handling.reminded_at is None  # a new deadline starts a new ladder
    with pytest.raises(StaleVersionError):
        supervision.supervise(case.id, body, user=loop.supervisor)
    queue = loop.services.cases.queue(CaseQuery(department=[case.department or ""], page_size=5), user=worker)
    assert queue.items[0].id == case.id and queue.items[0].supervised
    assert queue.total == loop.services.cases.queue(CaseQuery(department=[case.department or ""]), user=worker).total
    second = loop.services.cases.queue(CaseQuery(department=[case.department or ""], page_size=5, page=2), user=worker)
    assert case.id not in {c.id for c in second.items}  # once, on the first page
    # its reply goes out: no longer pinned above the cases still being handled
    approved = loop.services.decisions.approve(case.id, user=worker, version=flagged.version)
    loop.services.steps.send_reply(case.id, user=worker, version=approved.version, channel="短信")
    loop.clock.at("2025-10-16T10:00:00")
    newer = loop.ingest(channel="12345", request_type="咨询")
    assert newer.department == case.department
    queue = loop.services.cases.queue(CaseQuery(department=[case.department or ""], page_size=5), user=worker)
    assert queue.items[0].id == newer.id  # the newest first again: the answered case is not pinned


def test_a_supervisors_deadline_replaces_a_pending_first_contact(loop: Loop) -> None:
    loop.clock.at("2025-11-03T09:00:00")
    case = loop.ingest(channel="好差评", rating=1, created_at="2025-11-03T09:00:00")  # contact by the 4th
    loop.clock.at("2025-11-06T09:00:00")
    assert loop.services.cases.get(case.id, user=loop.admin).overdue  # the contact was missed
    body = Supervise(version=case.version, note="今天内联系并答复", due=date(2025, 11, 7))
    flagged = loop.services.supervision.supervise(case.id, body, user=loop.supervisor)
    assert flagged.due_at == local("2025-11-07T23:59:59") and not flagged.overdue
    assert flagged.handling.contact_due_at is None


def test_a_case_already_overdue_when_received_is_not_escalated(loop: Loop) -> None:
    loop.clock.at("2025-12-15T10:00:00")  # imported history: its deadlines passed before it arrived
    old = loop.ingest(channel="12345", created_at="2025-09-01T10:00:00")
    assert old.overdue
    done = loop.services.supervision.sweep()
    assert old.id not in done.reminded and old.id not in done.notified


def test_extension_requests_are_granted_or_refused_by_a_supervisor(loop: Loop) -> None:
    loop.clock.at("2025-09-30T12:00:00")
    case = loop.ingest(channel="好差评", rating=2, created_at="2025-09-30T10:00:00")
    worker = loop.user("caseworker", case.department or "")
    supervision = loop.services.supervision
    v = case.version
    with pytest.raises(ForbiddenError):  # requests come from the department holding the case
        supervision.request_extension(case.id, ExtensionRequest(version=v, reason="需会商"), user=loop.supervisor)
    asked = supervision.request_extension(case.id, ExtensionRequest(version=v, reason="需三部门会商"), user=worker)
    [request] = asked.handling.requests
    assert request.status == "pending" and request.requested_until == local("2025-10-28T23:59:59")  # complex: 15
    with pytest.raises(InputError, match="already waiting"):
        supervision.request_extension(case.id, ExtensionRequest(version=asked.version, reason="again"), user=worker)
    grant = RequestDecision(version=asked.version, grant=True, note="同意")
    with pytest.raises(ForbiddenError):
        supervision.decide(case.id, request.id, grant, user=worker)
    with pytest.raises(StaleVersionError):
        supervision.decide(case.id, request.id, grant.model_copy(update={"version": v}), user=loop.supervisor)
    granted = supervision.decide(case.id, request.id, grant, user=loop.supervisor)
    assert granted.handling.reply_due_at == local("2025-10-28T23:59:59")
    assert granted.handling.requests[0].status == "granted"
    with pytest.raises(InvalidTransitionError):
        supervision.decide(case.id, request.id, grant.model_copy(update={"version": granted.version}), user=loop.admin)
    events = loop.services.cases.audit(case.id, user=loop.admin)
    assert [e.action for e in events][-2:] == ["request_extension", "decide_grant"]
    assert events[-1].changes["reply_due_at"][1].startswith("2025-10-28T15:59:59")  # the new deadline, audited

    refused = loop.ingest(channel="好差评", rating=1, created_at="2025-09-30T10:00:00")
    later = ExtensionRequest(version=refused.version, reason="忙", until=datetime(2025, 10, 20, 18, 0))
    again = supervision.request_extension(refused.id, later, user=worker)
    no = RequestDecision(version=again.version, grant=False)
    after = supervision.decide(refused.id, again.handling.requests[0].id, no, user=loop.admin)
    assert after.handling.reply_due_at == refused.handling.reply_due_at  # unchanged
    # a supervisor moved the deadline past what was asked: granting would move it back, so it is refused
    third = supervision.request_extension(refused.id, later.model_copy(update={"version": after.version}), user=worker)
    moved = supervision.supervise(
        refused.id, Supervise(version=third.version, note="加急", due=date(2025, 10, 24)), user=loop.supervisor
    )
    with pytest.raises(InputError, match="already later"):
        yes = RequestDecision(version=moved.version, grant=True)
        supervision.decide(refused.id, third.handling.requests[-1].id, yes, user=loop.supervisor)
    loop.clock.at("2025-10-25T09:00:00")  # past the reply deadline: too late to ask
    with pytest.raises(InputError, match="before the reply deadline"):
        supervision.request_extension(refused.id, ExtensionRequest(version=moved.version, reason="晚了"), user=worker)


def test_returns_bounces_and_who_may_move_a_case(loop: Loop) -> None:
    loop.clock.at("2025-11-03T10:00:00")
    hotline = loop.ingest(channel="12345")
    holder = hotline.department or ""
    worker = loop.user("caseworker", holder)
    steps, decisions = loop.services.steps, loop.services.decisions
    with pytest.raises(InputError, match="jurisdiction"):
        steps.return_case(hotline.id, user=worker, version=hotline.version, reason="  ")
    reason = "属区级事权，应由区人社局办理"
    returned = steps.return_case(hotline.id, user=worker, version=hotline.version, reason=reason)
    assert returned.status == "returned" and returned.handling.returns == 1 and returned.bounces == 0
    assert returned.allowed_actions == []  # a caseworker may do nothing more: a supervisor reassigns it
    assert returned.due_at is None  # waiting for a supervisor: nothing is due from the department
    refused = decisions.reassign(
        hotline.id, user=loop.supervisor, version=returned.version, department=holder, reason="属本部门职责"
    )  # the supervisor refuses the return: back to the same department, its deadline as it was
    assert refused.status == "reassigned" and refused.department == holder and refused.bounces == 0
    assert refused.due_at == hotline.due_at
    returned = steps.return_case(hotline.id, user=worker, version=refused.version, reason=reason)
    loop.clock.at("2025-11-20T10:00:00")
    other = "市民政局" if holder != "市民政局" else "市医保局"
    moved = decisions.reassign(
        hotline.id, user=loop.supervisor, version=returned.version, department=other, reason=None
    )
    assert moved.status == "reassigned" and moved.department == other and moved.bounces == 1
    # the new department has its rule's time from the reassignment: 1 working day to contact the citizen
    assert moved.due_at == local("2025-11-21T23:59:59") and moved.handling.returns == 2

    review = loop.ingest(channel="好差评", rating=1)  # a 好差评 case: no returns, no reassignment by departments
    owner = loop.user("caseworker", review.department or "")
    with pytest.raises(ForbiddenError, match="supervisor"):
        steps.return_case(review.id, user=owner, version=review.version, reason="不归我们管")
    with pytest.raises(ForbiddenError, match="supervisor"):
        decisions.reassign(review.id, user=owner, version=review.version, department=other, reason=None)
    by_supervisor = decisions.reassign(
        review.id, user=loop.supervisor, version=review.version, department=other, reason="按职责清单"
    )
    assert by_supervisor.department == other and by_supervisor.bounces == 1


def test_the_reply_goes_out_and_the_follow_up_closes_or_reopens(loop: Loop) -> None:
    loop.clock.at("2025-11-03T10:00:00")
    case = loop.ingest(channel="好差评", rating=1, created_at="2025-11-03T09:00:00")
    worker = loop.user("caseworker", case.department or "")
    steps = loop.services.steps
    approved = loop.services.decisions.approve(case.id, user=worker, version=case.version)
    assert approved.handling.approved_at == loop.clock.now and approved.due_at is not None
    loop.clock.at("2025-11-05T15:00:00")
    with pytest.raises(InputError, match="future"):
        steps.send_reply(case.id, user=worker, version=approved.version, channel="短信", at=local("2025-11-06T10:00"))
    sent = steps.send_reply(case.id, user=worker, version=approved.version, channel="短信")
    assert sent.status == "reply_sent" and sent.due_at is None and sent.handling.reply_sent_by == worker.name
    assert sent.handling.reply_channel == "短信"
    loop.clock.at("2025-11-07T10:00:00")
    with pytest.raises(InputError, match="dissatisfied"):
        steps.follow_up(case.id, user=loop.supervisor, version=sent.version, satisfaction=Satisfaction.DISSATISFIED)
    reopened = steps.follow_up(
        case.id, user=loop.supervisor, version=sent.version, satisfaction=Satisfaction.DISSATISFIED, note="卡还没拿到"
    )
    assert reopened.status == "reopened" and reopened.handling.satisfaction == "不满意"
    assert reopened.due_at == local("2025-11-14T23:59:59")  # a new reply deadline: 5 working days from now
    assert "approve" in loop.services.cases.get(case.id, user=worker).allowed_actions  # its department's again
    again = loop.services.decisions.approve(case.id, user=worker, version=reopened.version)
    sent_again = steps.send_reply(case.id, user=worker, version=again.version, channel="电话")
    closed = steps.follow_up(
        case.id, user=worker, version=sent_again.version, satisfaction=Satisfaction.BASICALLY, note=None
    )
    with pytest.raises(InputError, match="before the complaint"):
        late = loop.ingest(channel="12345", created_at="2025-11-05T09:00:00")
        steps.contact(late.id, user=worker, version=late.version, at=local("2025-11-04T09:00:00"))
    assert closed.status == "closed" and closed.handling.satisfaction == "基本满意" and closed.due_at is None
    decisions = [d.action for d in closed.decisions]
    assert decisions == ["approve", "send_reply", "follow_up", "approve", "send_reply", "follow_up"]


def test_supervision_figures_by_department(loop: Loop) -> None:
    """The figures, checked against what this test did to a department of its own."""
    loop.clock.at("2025-12-01T10:00:00")
    made = [loop.ingest(channel="好差评", rating=1, created_at="2025-12-01T09:00:00") for _ in range(4)]
    department = made[0].department or ""
    made = [c for c in made if c.department == department]
    assert len(made) >= 3, "the same complaint routes to the same department"
    worker = loop.user("caseworker", department)
    steps, supervision = loop.services.steps, loop.services.supervision
    # one answered in time and satisfied; one answered late; one appealed and upheld; the rest open
    a, b, c = made[:3]
    a = loop.services.decisions.approve(a.id, user=worker, version=a.version)
    a = steps.send_reply(a.id, user=worker, version=a.version, channel="短信")
    steps.follow_up(a.id, user=worker, version=a.version, satisfaction=Satisfaction.SATISFIED)
    appealed = supervision.appeal(c.id, AppealRequest(version=c.version, reason="同一人重复恶意差评"), user=worker)
    pending = appealed.handling.requests[0]
    upheld = RequestDecision(version=appealed.version, grant=True)
    supervision.decide(c.id, pending.id, upheld, user=loop.supervisor)
    loop.clock.at("2025-12-20T10:00:00")  # past every reply deadline (8 December)
    b = loop.services.decisions.approve(b.id, user=worker, version=b.version)
    steps.send_reply(b.id, user=worker, version=b.version, channel="电话")
    period = {"period_from": datetime(2025, 12, 1), "period_to": datetime(2025, 12, 2)}
    figures = supervision.figures(user=loop.supervisor, **period).by_department[department]
    n = len(made)
    assert figures.cases == n and figures.replies_due == n and figures.replied == 2
    assert figures.replied_on_time == 1 and figures.on_time_rate == 0.5
    assert figures.response_rate == round(2 / n, 4)
    assert figures.followed_up == 1 and figures.satisfaction_rate == 1.0
    # a 不满意 stays counted after the case is satisfied at a second follow-up
    loop.clock.at("2025-12-21T10:00:00")
    b_now = loop.services.cases.get(b.id, user=loop.admin)
    follow = steps.follow_up
    b_now = follow(b.id, user=worker, version=b_now.version, satisfaction=Satisfaction.DISSATISFIED, note="没解决")
    b_now = loop.services.decisions.approve(b.id, user=worker, version=b_now.version)
    b_now = steps.send_reply(b.id, user=worker, version=b_now.version, channel="电话")
    follow(b.id, user=worker, version=b_now.version, satisfaction=Satisfaction.SATISFIED)
    later = supervision.figures(user=loop.supervisor, **period).by_department[department]
    assert (later.followed_up, later.satisfied, later.reopened) == (3, 2, 1)
    assert later.satisfaction_rate == round(2 / 3, 4)
    assert figures.overdue_cases == n - 2  # the unanswered ones (the appealed one too: still unanswered)
    assert figures.bad_reviews == n - 1 and figures.appeals_upheld == 1
    mine = supervision.figures(user=worker, **period)
    assert set(mine.by_department) == {department}  # a caseworker sees their own departments
    whole = supervision.figures(user=loop.supervisor, **period)
    assert whole.overdue_cases == sum(d.overdue_cases for d in whole.by_department.values())
    assert whole.ranking[0] in whole.by_department
