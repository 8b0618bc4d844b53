"""The review API through httpx (Starlette's TestClient) against SQLite and the local PostgreSQL."""

from __future__ import annotations

import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
import sqlalchemy as sa

from tests.conftest import ApiHarness, running_api
from triage.access.models import User
from triage.cases.models import CaseDetail
from triage.errors import InputError
from triage.models import Complaint, Draft
from triage.settings import Settings
from vectorstore.store import CASES

GJJ = "租房提取公积金在随申办提交了三次都被退回，说租赁合同没有备案，合同明明已经备案了，能不能别让我反复上传材料"
PASSPORT = "出入境预约港澳通行证连着一个星期都约不到号，孩子七月要去香港夏令营，证件还没办下来，窗口电话也打不通"


def _admin(api: ApiHarness) -> dict[str, str]:
    return api.headers("admin")


def test_ingest_drafts_at_once_and_is_idempotent_on_external_id(api: ApiHarness) -> None:
    admin = _admin(api)
    ext = f"HCP-{uuid.uuid4().hex[:8]}"
    case = api.ingest(admin, GJJ, channel="好差评", external_id=ext, title="公积金提取被退回")
    assert case["status"] == "drafted" and case["version"] == 2 and case["draft_no"] == 1
    draft = case["draft"]
    assert isinstance(draft, dict) and draft["department"] == case["department"]
    assert draft["reply"] and draft["root_cause"] and draft["evidence"]
    assert all(0 <= e["similarity"] <= 1 for e in draft["evidence"])
    again = api.client.post("/cases", json={"text": GJJ, "external_id": ext}, headers=admin)
    assert again.status_code == 200 and again.json()["id"] == case["id"]
    other = api.client.post("/cases", json={"text": PASSPORT, "external_id": ext}, headers=admin)
    assert other.status_code == 409 and other.headers["content-type"] == "application/problem+json"
    assert ext in other.json()["detail"]
    listed = api.client.get("/cases", params={"text": "租赁合同没有备案", "page_size": 200}, headers=admin).json()
    assert [c["id"] for c in listed["items"]].count(case["id"]) == 1


def test_batch_is_stored_at_once_and_drafted_in_the_background(api: ApiHarness) -> None:
    admin = _admin(api)
    ext = f"B-{uuid.uuid4().hex[:6]}"
    complaints = [{"text": f"{GJJ}（第{i}次）", "external_id": f"{ext}-{i}"} for i in range(5)]
    complaints.append({"text": PASSPORT, "external_id": f"{ext}-0"})  # repeated id: not a second case
    response = api.client.post("/cases/batch", json={"complaints": complaints[:5]}, headers=admin)
    assert response.status_code == 202
    receipt = response.json()
    assert receipt["created"] == 5 and len(set(receipt["case_ids"])) == 5
    deadline = time.monotonic() + 30
    while True:
        progress = api.client.get(f"/batches/{receipt['batch_id']}", headers=admin).json()
        if progress["done"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert progress["done"] and progress["by_status"] == {"drafted": 5} and progress["failed"] == 0
    queue = api.client.get("/cases", params={"batch_id": receipt["batch_id"]}, headers=admin).json()
    assert queue["total"] == 5 and all(c["draft_no"] == 1 for c in queue["items"])
    second = api.client.post("/cases/batch", json={"complaints": complaints[:2]}, headers=admin).json()
    assert second["created"] == 0 and second["existing"] == 2 and second["case_ids"] == receipt["case_ids"][:2]
    conflict = api.client.post("/cases/batch", json={"complaints": complaints[4:]}, headers=admin)
    assert conflict.status_code == 409 and "complaints[1].external_id" in conflict.json()["detail"]


def test_batch_validation_names_every_bad_item(api: ApiHarness) -> None:
    admin = _admin(api)
    before = api.client.get("/cases", params={"text": GJJ[:12]}, headers=admin).json()["total"]
    body = {"complaints": [{"text": GJJ}, {"text": "  "}, {"text": GJJ, "channel": "微博"}]}
    response = api.client.post("/cases/batch", json=body, headers=admin)
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    fields = [e["field"] for e in response.json()["errors"]]
    assert fields == ["body.complaints[1].text", "body.complaints[2].channel"]
    assert api.client.get("/cases", params={"text": GJJ[:12]}, headers=admin).json()["total"] == before  # none stored


def test_queue_filters_sorts_and_paginates(api: ApiHarness) -> None:
    admin = _admin(api)
    tag = uuid.uuid4().hex[:6]
    made = [api.ingest(admin, f"{PASSPORT} 编号{tag}-{i}", channel="12345" if i % 2 else "小红书") for i in range(5)]
    q: dict[str, Any] = {"text": tag, "page_size": 2, "sort": "received_at"}
    first = api.client.get("/cases", params=q, headers=admin).json()
    second = api.client.get("/cases", params={**q, "page": 2}, headers=admin).json()
    assert first["total"] == 5 and len(first["items"]) == 2
    assert [c["id"] for c in first["items"] + second["items"]] == [c["id"] for c in made[:4]]
    past_end = api.client.get("/cases", params={**q, "page": 9}, headers=admin).json()
    assert past_end["items"] == [] and past_end["total"] == 5  # the count without a row to carry it
    by_channel = api.client.get("/cases", params={"text": tag, "channel": "12345"}, headers=admin).json()
    assert {c["id"] for c in by_channel["items"]} == {made[1]["id"], made[3]["id"]}
    dept = made[0]["department"]
    by_dept = api.client.get("/cases", params={"text": tag, "department": dept, "status": "drafted"}, headers=admin)
    assert by_dept.json()["total"] == sum(1 for c in made if c["department"] == dept)
    future = api.client.get("/cases", params={"text": tag, "received_from": "2999-01-01T00:00:00Z"}, headers=admin)
    assert future.json()["total"] == 0
    problem = made[0]["typical_problem_id"]
    assert problem, "the passport complaint matches a typical problem of 市公安局"
    by_problem = api.client.get("/cases", params={"text": tag, "typical_problem_id": problem}, headers=admin)
    assert {c["id"] for c in by_problem.json()["items"]} == {
        c["id"] for c in made if c["typical_problem_id"] == problem
    }
    unknown = api.client.get("/cases", params={"department": "市魔法局"}, headers=admin)
    assert unknown.status_code == 422 and "市公安局" in unknown.json()["valid_departments"]
    # a time with an offset means the same instant on SQLite and PostgreSQL
    received = datetime.fromisoformat(str(made[0]["received_at"]).replace("Z", "+00:00"))
    shanghai = (received - timedelta(seconds=1)).astimezone(timezone(timedelta(hours=8))).isoformat()
    since = api.client.get("/cases", params={"text": tag, "received_from": shanghai}, headers=admin).json()
    assert since["total"] == 5
    bad = api.client.get("/cases", params={"page_size": 1000, "sort": "colour"}, headers=admin)
    assert bad.status_code == 422
    assert {e["field"] for e in bad.json()["errors"]} == {"query.page_size", "query.sort"}
    # LIKE's wildcards in the search text match only themselves
    literal = api.ingest(admin, f"{PASSPORT} 满意度只有10%_{tag}\\分")
    for needle in (f"10%_{tag}\\", f"%_{tag}"):
        found = api.client.get("/cases", params={"text": needle}, headers=admin).json()
        assert [c["id"] for c in found["items"]] == [literal["id"]], needle
    assert api.client.get("/cases", params={"text": f"1_%_{tag}"}, headers=admin).json()["total"] == 0


def test_approve_with_edits_records_the_fields_and_the_loop_closes(api: ApiHarness) -> None:
    admin = _admin(api)
    tag = uuid.uuid4().hex[:6]
    text = f"龙华街道{tag}号楼电梯坏了两个月没人修，物业说维修基金申请不下来，老人天天爬十几层楼"
    case = api.ingest(admin, text, title="加装电梯维修无人管")
    department = str(case["department"])
    worker = api.headers("caseworker", department)
    edited_reply = f"您好，关于{tag}号楼电梯停运，已督促物业与街道本周内启动维修基金应急使用程序。"
    response = api.client.post(
        f"/cases/{case['id']}/approve",
        json={"version": case["version"], "edits": {"reply": edited_reply, "typical_problem_id": None}},
        headers=worker,
    )
    assert response.status_code == 200, response.text
    approved = response.json()
    assert approved["status"] == "approved" and approved["version"] == case["version"] + 1
    decision = approved["decisions"][-1]
    assert decision["action"] == "approve" and decision["reply"] == edited_reply
    expected_edits = ["reply"] + (["typical_problem_id"] if case["typical_problem_id"] else [])
    assert sorted(decision["edited_fields"]) == sorted(expected_edits)
    assert approved["allowed_actions"] == ["close", "contact", "send_reply"]
    # the next similar complaint finds the approved case as evidence, with its approved reply
    similar = api.ingest(admin, f"龙华街道{tag}号楼电梯还是停着，物业说维修基金批不下来，老人爬楼太难了")
    evidence = [e for e in similar["draft"]["evidence"] if e["kind"] == "past_case"]
    assert evidence and evidence[0]["id"] == f"case-{case['id']}" and evidence[0]["department"] == department


def test_state_machine_and_stale_versions_answer_409(api: ApiHarness) -> None:
    admin = _admin(api)
    case = api.ingest(admin, PASSPORT)
    path, v = f"/cases/{case['id']}", case["version"]
    rejected = api.client.post(f"{path}/reject", json={"version": v, "reason": "答复未说明加号渠道"}, headers=admin)
    assert rejected.status_code == 200 and rejected.json()["status"] == "rejected"
    stale = api.client.post(f"{path}/reject", json={"version": v, "reason": "again"}, headers=admin)
    assert stale.status_code == 409 and stale.json()["type"] == "/problems/stale-version"
    assert stale.json()["current"]["version"] == v + 1 and stale.json()["current"]["status"] == "rejected"
    wrong_state = api.client.post(f"{path}/approve", json={"version": v + 1}, headers=admin)
    assert wrong_state.status_code == 409
    body = wrong_state.json()
    assert body["current_status"] == "rejected" and body["allowed_actions"] == ["reassign", "retriage", "close"]
    retriaged = api.client.post(f"{path}/retriage", json={"version": v + 1}, headers=admin).json()
    assert retriaged["status"] == "drafted" and retriaged["draft_no"] == 2
    assert [d["number"] for d in retriaged["drafts"]] == [1, 2]
    assert [d["action"] for d in retriaged["decisions"]] == ["reject", "retriage"]
    closed = api.client.post(f"{path}/close", json={"version": retriaged["version"]}, headers=admin)
    assert closed.status_code == 409 and closed.json()["allowed_actions"] == [
        "approve",
        "reject",
        "reassign",
        "retriage",
        "contact",
        "return",
    ]


def test_reassign_moves_the_case_between_queues_and_keeps_it_there(api: ApiHarness) -> None:
    admin = _admin(api)
    case = api.ingest(admin, GJJ)
    source = str(case["department"])
    target = "市民政局" if source != "市民政局" else "市医保局"
    mine, theirs = api.headers("caseworker", source), api.headers("caseworker", target)
    moved = api.client.post(
        f"/cases/{case['id']}/reassign",
        json={"version": case["version"], "department": target, "reason": "不属于本单位职责"},
        headers=mine,
    )
    assert moved.status_code == 200 and moved.json()["department"] == target
    assert api.client.get(f"/cases/{case['id']}", headers=mine).status_code == 404
    queue = api.client.get("/cases", params={"status": "reassigned", "text": GJJ[:10]}, headers=theirs).json()
    assert case["id"] in {c["id"] for c in queue["items"]}
    # re-drafting keeps the department a person chose
    again = api.client.post(f"/cases/{case['id']}/retriage", json={"version": moved.json()["version"]}, headers=theirs)
    assert again.status_code == 200 and again.json()["department"] == target


def test_unknown_department_lists_the_valid_ones(api: ApiHarness) -> None:
    admin = _admin(api)
    case = api.ingest(admin, GJJ)
    response = api.client.post(
        f"/cases/{case['id']}/reassign", json={"version": case["version"], "department": "市魔法局"}, headers=admin
    )
    assert response.status_code == 422 and response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["errors"] == [{"field": "department", "message": body["errors"][0]["message"]}]
    assert "市公安局" in body["valid_departments"] and "市魔法局" in body["detail"]
    edit = api.client.post(
        f"/cases/{case['id']}/approve",
        json={"version": case["version"], "edits": {"department": "市魔法局"}},
        headers=admin,
    )
    assert edit.status_code == 422 and edit.json()["errors"][0]["field"] == "edits.department"


def test_audit_trail_is_complete_and_append_only(api: ApiHarness) -> None:
    admin = _admin(api)
    case = api.ingest(admin, PASSPORT)
    api.client.post(f"/cases/{case['id']}/approve", json={"version": case["version"]}, headers=admin)
    events = api.client.get(f"/cases/{case['id']}/audit", headers=admin).json()
    assert [e["action"] for e in events] == ["ingest", "draft", "approve"]
    assert events[0]["actor"] == events[2]["actor"] != "triage" and events[1]["actor"] == "triage"
    assert events[1]["changes"]["status"] == ["new", "drafted"]
    assert events[2]["changes"]["status"] == ["drafted", "approved"] and events[2]["changes"]["version"] == 3
    with api.services.db.engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.execute(sa.text("UPDATE audit_events SET actor = 'someone else'"))
    with api.services.db.engine.connect() as conn, pytest.raises(sa.exc.DBAPIError, match="append-only"):
        conn.execute(sa.text("DELETE FROM audit_events"))


def test_stats_count_statuses_edits_and_time_to_decision(api: ApiHarness) -> None:
    admin = _admin(api)
    department = str(api.ingest(admin, GJJ)["department"])
    worker = api.headers("caseworker", department)
    before = api.client.get("/stats", headers=worker).json()
    a = api.ingest(admin, f"{GJJ}，第二次反映")
    b = api.ingest(admin, f"{GJJ}，第三次反映")
    assert a["department"] == b["department"] == department
    ok = api.client.post(f"/cases/{a['id']}/approve", json={"version": a["version"]}, headers=worker)
    edited = api.client.post(
        f"/cases/{b['id']}/approve",
        json={"version": b["version"], "edits": {"root_cause": "合同备案数据未共享"}},
        headers=worker,
    )
    assert ok.status_code == edited.status_code == 200
    after = api.client.get("/stats", headers=worker).json()
    assert after["approved"] == before["approved"] + 2
    assert after["approved_unedited"] == before["approved_unedited"] + 1
    assert set(after["by_department"]) == {department}
    assert after["decided"] == before["decided"] + 2 and 0 < after["median_time_to_decision_s"] < 600
    everything = api.client.get("/stats", headers=admin).json()
    assert everything["total"] >= after["total"] and sum(everything["by_status"].values()) == everything["total"]


def test_big_bodies_get_413_and_bad_json_422(api: ApiHarness) -> None:
    admin = _admin(api)
    huge = {"complaints": [{"text": "投" * 19_000} for _ in range(30)]}  # ~1.7 MB
    response = api.client.post("/cases/batch", json=huge, headers=admin)
    assert response.status_code == 413 and response.json()["status"] == 413

    def chunks() -> object:  # no Content-Length: the limit holds for streamed bodies too
        for _ in range(20):
            yield b"x" * 100_000

    streamed = api.client.post("/cases", content=chunks(), headers={**admin, "content-type": "application/json"})  # type: ignore[arg-type]
    assert streamed.status_code == 413
    broken = api.client.post("/cases", content=b'{"text": ', headers={**admin, "content-type": "application/json"})
    assert broken.status_code == 422 and broken.json()["errors"][0]["field"].startswith("body")


def test_health_and_readiness(api: ApiHarness) -> None:
    assert api.client.get("/healthz").json() == {"status": "ok"}
    assert api.client.get("/readyz").status_code == 401
    ready = api.client.get("/readyz", headers=api.headers("caseworker", "市公安局"))
    assert ready.status_code == 200 and ready.json()["checks"] == {"database": "ok", "vector_store": "ok"}


def test_llm_down_still_stores_the_case_with_an_offline_draft(
    api_database_url: str, workspace_dir: object, tmp_path: object
) -> None:
    settings = Settings(
        data_dir=workspace_dir,
        database_url=api_database_url,
        llm_model="scripted-model",
        llm_base_url="http://127.0.0.1:9/v1",  # nothing listens on the discard port
        llm_api_key="sk-test",
        llm_timeout_s=1.0,
        llm_max_retries=0,
    )
    with running_api(settings) as api:
        case = api.ingest(api.headers("intake"), GJJ, channel="12345")
        assert case["status"] == "drafted"
        draft = case["draft"]
        assert isinstance(draft, dict) and draft["drafted_by"] == "offline"
        assert "Connection" in draft["fallback_reason"] or "connect" in draft["fallback_reason"].lower()


class _Outage:
    """Fails every statement touching one table, as a database that drops mid-transaction would."""

    def __init__(self, engine: sa.Engine, table: str) -> None:
        self.engine, self.table = engine, table

    def _fail(self, conn: object, cursor: object, statement: str, *args: object) -> None:
        if self.table in statement:
            raise sa.exc.OperationalError(statement, {}, ConnectionError("server closed the connection"))

    def __enter__(self) -> None:
        sa.event.listen(self.engine, "before_cursor_execute", self._fail)

    def __exit__(self, *exc: object) -> None:
        sa.event.remove(self.engine, "before_cursor_execute", self._fail)


def test_database_failure_mid_decision_is_503_and_writes_nothing(api: ApiHarness) -> None:
    admin = _admin(api)
    case = api.ingest(admin, PASSPORT)
    with _Outage(api.services.db.engine, "audit_events"):  # the last write of the transaction fails
        response = api.client.post(f"/cases/{case['id']}/approve", json={"version": case["version"]}, headers=admin)
    assert response.status_code == 503 and response.headers["content-type"] == "application/problem+json"
    assert response.headers["retry-after"]
    after = api.client.get(f"/cases/{case['id']}", headers=admin).json()
    assert (after["status"], after["version"], after["decisions"]) == ("drafted", case["version"], [])
    with api.services.db.engine.connect() as conn:
        assert not conn.execute(sa.text(f"SELECT 1 FROM past_cases WHERE id = 'case-{case['id']}'")).all()
    retry = api.client.post(f"/cases/{case['id']}/approve", json={"version": case["version"]}, headers=admin)
    assert retry.status_code == 200


def test_database_failure_after_storing_keeps_the_complaint_queued(
    api: ApiHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    admin = _admin(api)
    ext = f"OUT-{uuid.uuid4().hex[:6]}"
    with _Outage(api.services.db.engine, "drafts"):
        response = api.client.post("/cases", json={"text": GJJ, "external_id": ext}, headers=admin)
    # the complaint was stored before drafting: the answer is the case as committed, without a draft
    assert response.status_code == 201 and response.json()["status"] == "new" and response.json()["draft"] is None
    # a client that retries anyway finds the same case, queued for the drafter
    again = api.client.post("/cases", json={"text": GJJ, "external_id": ext}, headers=admin)
    assert again.status_code == 200
    case = again.json()
    assert case["status"] == "new" and case["draft"] is None and case["drafts"] == []
    assert [e["action"] for e in api.client.get(f"/cases/{case['id']}/audit", headers=admin).json()] == ["ingest"]
    # the background drafter sweeps single-ingest stragglers once they are RETRY_QUEUED_AFTER old
    assert case["id"] not in api.services.drafts.pending(10_000, exclude=set())
    monkeypatch.setattr("triage.cases.drafting.RETRY_QUEUED_AFTER", timedelta(0))
    assert case["id"] in api.services.drafts.pending(10_000, exclude=set())
    api.runtime.drafter.wake()
    deadline = time.monotonic() + 30
    while api.client.get(f"/cases/{case['id']}", headers=admin).json()["status"] != "drafted":
        assert time.monotonic() < deadline, "the background drafter did not pick the case up"
        time.sleep(0.1)


def test_ingest_whose_drafting_fails_is_stored_with_the_reason(api: ApiHarness) -> None:
    """The index no longer fits the models (as after a rebuild elsewhere): drafting raises, the complaint
    is stored anyway (201), queued, with the reason; a rebuild lets the drafter draft it."""
    admin = _admin(api)
    ws = api.services.workspace
    ws.models.index.recreate(CASES, embedder="offline:some-other-model")
    try:
        response = api.client.post("/cases", json={"text": f"{GJJ}（{uuid.uuid4().hex[:6]}）"}, headers=admin)
        assert response.status_code == 201
        case = response.json()
        assert case["status"] == "new" and case["draft"] is None
        assert "EmbedderMismatchError" in case["draft_error"] and "triage kb reindex" in case["draft_error"]
        trail = [e["action"] for e in api.client.get(f"/cases/{case['id']}/audit", headers=admin).json()]
        assert trail == ["ingest", "draft_failed"]
    finally:
        api.services.reindex()
    again = api.client.post(f"/cases/{case['id']}/retriage", json={"version": case["version"]}, headers=admin)
    assert again.status_code == 200 and again.json()["draft"] is not None


def test_reassignment_redrafts_for_the_new_department_and_keeps_the_persons_choice(api: ApiHarness) -> None:
    admin = _admin(api)
    case = api.ingest(admin, GJJ)
    source = str(case["department"])
    target = "市民政局" if source != "市民政局" else "市医保局"
    moved = api.client.post(
        f"/cases/{case['id']}/reassign", json={"version": case["version"], "department": target}, headers=admin
    ).json()
    draft = moved["draft"]
    assert moved["department"] == target and moved["status"] == "reassigned"
    assert draft["department"] == target and draft["top_departments"][0]["department"] == target
    assert source not in draft["reply"]  # the old department's reply does not follow the case
    problem = draft["typical_problem"]
    assert problem is None or problem["department"] == target
    assert moved["typical_problem_id"] == (problem["id"] if problem else None)
    assert [d["number"] for d in moved["drafts"]] == [1, 2]
    worker = api.headers("caseworker", target)
    approved = api.client.post(f"/cases/{case['id']}/approve", json={"version": moved["version"]}, headers=worker)
    assert approved.status_code == 200, approved.text
    body = approved.json()
    assert body["department"] == target and body["decisions"][-1]["edited_fields"] == []
    assert body["decisions"][-1]["reply"] == draft["reply"]


def test_concurrent_approvals_exactly_one_wins(api: ApiHarness) -> None:
    """The same race as the uvicorn test, on the service, so SQLite is covered too."""
    from triage.errors import StaleVersionError

    admin = _admin(api)
    case = api.ingest(admin, PASSPORT)
    user = api.services.users.authenticate(admin["Authorization"].removeprefix("Bearer "))
    start = threading.Barrier(6)

    def approve(i: int) -> str:
        start.wait()
        try:
            api.services.decisions.approve(str(case["id"]), user=user, version=int(str(case["version"])))
            return "won"
        except StaleVersionError:
            return "stale"

    with ThreadPoolExecutor(6) as pool:
        outcomes = sorted(pool.map(approve, range(6)))
    assert outcomes == ["stale"] * 5 + ["won"]
    audit = api.client.get(f"/cases/{case['id']}/audit", headers=admin).json()
    assert [e["action"] for e in audit].count("approve") == 1


def _ingest_together(
    api: ApiHarness, user: User, complaints: list[Complaint]
) -> tuple[list[tuple[CaseDetail, bool] | Exception], list[int]]:
    """Ingest complaints from concurrent requests released at once. Returns each request's outcome (or
    exception) and how many of these complaints each drafting call carried."""
    pipeline = api.services.pipeline
    triage_many, sizes = pipeline.triage_many, []
    texts = {c.text for c in complaints}

    def counted(batch: list[Complaint], **kwargs: Any) -> list[Draft]:
        ours = sum(c.text in texts for c in batch)  # the background drafter may draft other cases meanwhile
        if ours:
            sizes.append(ours)
        return triage_many(batch, **kwargs)

    start = threading.Barrier(len(complaints))

    def one(c: Complaint) -> tuple[CaseDetail, bool] | Exception:
        start.wait()
        try:
            return api.services.intake.ingest(c, user=user)
        except Exception as exc:
            return exc

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pipeline, "triage_many", counted)
        with ThreadPoolExecutor(len(complaints)) as pool:
            return list(pool.map(one, complaints)), sizes


def _created(outcomes: list[tuple[CaseDetail, bool] | Exception]) -> list[tuple[CaseDetail, bool]]:
    assert not [o for o in outcomes if isinstance(o, Exception)], outcomes
    return [o for o in outcomes if not isinstance(o, Exception)]


def test_concurrent_single_ingests_each_get_their_own_case(api: ApiHarness) -> None:
    """Concurrent ingests each get exactly their own case, drafted once, answered as a read would show
    it. Two requests racing with one new external id end as one case: one is created, the other finds it."""
    user = api.services.users.authenticate(_admin(api)["Authorization"].removeprefix("Bearer "))
    tag = uuid.uuid4().hex[:6]
    texts = [f"{GJJ}（{tag}-{i}）" if i % 2 else f"{PASSPORT}（{tag}-{i}）" for i in range(12)]
    outcomes, sizes = _ingest_together(api, user, [Complaint(text=t, channel="12345") for t in texts])
    assert sorted(sizes) == [1] * 12, sizes  # every complaint drafted once, in its own request
    done = _created(outcomes)
    assert all(created for _, created in done)
    details = [d for d, _ in done]
    assert len({d.id for d in details}) == 12
    for text, d in zip(texts, details, strict=True):
        assert d.complaint.text == text and d.status == "drafted" and d.draft_no == 1
        assert d == api.services.cases.get(d.id, user=user)
        trail = [e.action for e in api.services.cases.audit(d.id, user=user)]
        assert trail == ["ingest", "draft"]

    racing = [Complaint(text=GJJ, channel="12345", external_id=f"RACE-{tag}")] * 2
    others = [Complaint(text=f"{PASSPORT}（{tag}-more-{i}）", channel="12345") for i in range(4)]
    done = _created(_ingest_together(api, user, racing + others)[0])
    (a, a_new), (b, b_new) = done[:2]
    assert a.id == b.id and sorted([a_new, b_new]) == [False, True]
    assert all(created for _, created in done[2:]) and len({d.id for d, _ in done}) == 5
    assert all(d.status == "drafted" for d, created in done if created)
    # the one that found the case sees it as it was then: stored, perhaps still being drafted
    assert api.services.cases.get(a.id, user=user).status == "drafted"


def test_a_complaint_the_database_refuses_fails_its_own_request_only(api: ApiHarness) -> None:
    """One of several concurrent complaints fails where it is written: the others are stored and drafted
    as usual, and its caller alone gets the error, which carries no complaint's data."""
    user = api.services.users.authenticate(_admin(api)["Authorization"].removeprefix("Bearer "))
    tag = uuid.uuid4().hex[:6]
    refused = f"（拒收{tag}）"

    def refuse(conn: sa.Connection, cursor: object, statement: str, parameters: object, *args: object) -> None:
        if statement.startswith("INSERT INTO cases") and refused in repr(parameters):
            raise conn.dialect.loaded_dbapi.DataError("value too long for the column")  # as the driver would

    complaints = [Complaint(text=f"{PASSPORT}（{tag}-{i}）", channel="12345") for i in range(5)]
    complaints.insert(3, Complaint(text=f"{GJJ}{refused}", channel="12345"))
    sa.event.listen(api.services.db.engine, "before_cursor_execute", refuse)
    try:
        outcomes, _ = _ingest_together(api, user, complaints)
    finally:
        sa.event.remove(api.services.db.engine, "before_cursor_execute", refuse)
    error = outcomes.pop(3)  # a value the database cannot hold: the caller's input, not a database outage
    assert isinstance(error, InputError) and PASSPORT not in str(error) and refused not in str(error)
    done = _created(outcomes)
    assert all(created and d.status == "drafted" for d, created in done) and len({d.id for d, _ in done}) == 5
    listed = api.client.get("/cases", params={"text": refused}, headers=_admin(api)).json()
    assert listed["total"] == 0  # the refused complaint was not stored, half or whole


def test_complaint_fields_are_checked_against_what_the_database_can_hold(api: ApiHarness) -> None:
    admin = _admin(api)
    body = {"text": "证明材料\u0000", "region": "区" * 101, "contact": "1" * 201}
    response = api.client.post("/cases", json=body, headers=admin)
    assert response.status_code == 422
    assert sorted(e["field"] for e in response.json()["errors"]) == ["body.contact", "body.region", "body.text"]


def test_external_ids_belong_to_their_submitter(api: ApiHarness) -> None:
    hotline, platform = api.headers("intake"), api.headers("intake")
    ext = f"X-{uuid.uuid4().hex[:6]}"
    a = api.ingest(hotline, GJJ, external_id=ext)
    b = api.ingest(platform, PASSPORT, external_id=ext)  # another system's id space: a different case
    assert a["id"] != b["id"]
    twice = {"complaints": [{"text": GJJ, "external_id": "dup"}, {"text": PASSPORT, "external_id": "dup"}]}
    response = api.client.post("/cases/batch", json=twice, headers=hotline)
    assert response.status_code == 409 and "complaints[1].external_id" in response.json()["detail"]


def test_retriage_jobs_through_the_api(api: ApiHarness) -> None:
    admin = _admin(api)
    made = [api.ingest(admin, f"{PASSPORT}（job {i}）") for i in range(3)]
    body = {"filters": {"ids": [c["id"] for c in made]}}
    started = api.client.post("/jobs", json=body, headers=admin)
    assert started.status_code == 202 and started.json()["total"] == 3
    job_id = started.json()["id"]
    deadline = time.monotonic() + 30
    while (summary := api.client.get(f"/jobs/{job_id}", headers=admin).json())["status"] == "running":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert summary["status"] == "done" and summary["done"] == 3 and summary["department_changes"]
    case = api.client.get(f"/cases/{made[0]['id']}", headers=admin).json()
    assert [d["number"] for d in case["drafts"]] == [1, 2] and case["drafts"][1]["created_by"] == f"job:{job_id}"
    assert job_id in {j["id"] for j in api.client.get("/jobs", headers=admin).json()}
    cancelled = api.client.post(f"/jobs/{job_id}/cancel", headers=admin).json()
    assert cancelled["status"] == "done"  # a finished job stays finished
    bad = api.client.post("/jobs", json={"filters": {"department": ["市魔法局"]}}, headers=admin)
    assert bad.status_code == 422 and "市公安局" in bad.json()["valid_departments"]
    none = api.client.post("/jobs", json={"filters": {}}, headers=admin)
    assert none.status_code == 422 and none.json()["errors"][0]["field"] == "filters"


def test_the_loop_through_the_api(api: ApiHarness) -> None:
    """The contracts of the loop's endpoints: deadlines on every case, problems, supervision."""
    admin = _admin(api)
    case = api.ingest(admin, f"{PASSPORT}（{uuid.uuid4().hex[:6]}）", channel="好差评", rating=1)
    assert {"due_at", "overdue"} <= set(case) and case["due_at"] is not None and case["overdue"] is False
    listed = api.client.get("/cases", params={"text": case["excerpt"][:30]}, headers=admin).json()["items"]
    assert listed and all({"due_at", "overdue", "supervised"} <= set(item) for item in listed)
    worker = api.headers("caseworker", str(case["department"]))
    contacted = api.client.post(f"/cases/{case['id']}/contact", json={"version": case["version"]}, headers=worker)
    assert contacted.status_code == 200 and contacted.json()["handling"]["contacted_at"] is not None
    approved = api.client.post(f"/cases/{case['id']}/approve", json={"version": case["version"] + 1}, headers=worker)
    body = {"version": approved.json()["version"], "channel": "短信"}
    sent = api.client.post(f"/cases/{case['id']}/send-reply", json=body, headers=worker).json()
    assert sent["status"] == "reply_sent" and sent["due_at"] is None
    follow = {"version": sent["version"], "satisfaction": "不满意", "note": "问题没解决"}
    reopened = api.client.post(f"/cases/{case['id']}/follow-up", json=follow, headers=admin).json()
    assert reopened["status"] == "reopened" and reopened["due_at"] is not None
    bad = api.client.post(f"/cases/{case['id']}/follow-up", json={**follow, "satisfaction": "还行"}, headers=admin)
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "body.satisfaction"

    problems = api.client.get("/problems", headers=admin).json()
    keys = {"id", "title", "department", "status", "case_count", "open_case_count", "deadline", "overdue"}
    assert problems and all(keys <= set(p) for p in problems)
    assert [p["case_count"] for p in problems] == sorted((p["case_count"] for p in problems), reverse=True)
    one = api.client.get(f"/problems/{problems[0]['id']}", headers=admin).json()
    assert {"cases_by_month", "history", "effect"} <= set(one) and one["effect"]["verdict"]
    assert api.client.get("/problems/TP-NOPE", headers=admin).status_code == 404
    stale = api.client.post(f"/problems/{one['id']}/archive", json={"version": one["version"] + 5}, headers=admin)
    assert stale.status_code == 409 and stale.json()["type"] == "/problems/stale-version"

    figures = api.client.get("/supervision", headers=admin).json()
    wanted = {"overdue_cases", "overdue_problems", "rectification_completion_rate", "satisfaction_rate"}
    assert (
        wanted <= set(figures) and figures["by_department"] and set(figures["ranking"]) == set(figures["by_department"])
    )
    assert all(wanted <= set(d) for d in figures["by_department"].values())
    assert figures["by_department"][case["department"]]["reopened"] >= 1


def test_problem_edits_and_times_out_of_range_are_422(api: ApiHarness) -> None:
    admin = _admin(api)
    problem = api.client.get("/problems/TP-GA-001", headers=admin).json()
    cleared = api.client.patch(
        "/problems/TP-GA-001", json={"version": problem["version"], "title": None}, headers=admin
    )
    assert cleared.status_code == 422 and "cannot be null" in cleared.text
    far = api.client.post("/cases", json={"text": PASSPORT, "created_at": "9999-12-31T23:59:59"}, headers=admin)
    assert far.status_code == 422 and far.json()["errors"][0]["field"] == "body.created_at"
    ancient = api.client.get("/supervision", params={"from": "0001-01-01T00:00:00"}, headers=admin)
    assert ancient.status_code == 422
