"""Who may do what: every role x every endpoint x own / other department (or own / other submitter)."""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from tests.conftest import ApiHarness

TEXT = "社保卡丢了去补办，窗口说新卡要等二十多天才能拿，补个卡还让我过几天再跑一趟银行激活，一张卡跑三趟"
OTHER_DEPARTMENT = "市规划资源局"
SUBJECTS = ["caseworker-own", "caseworker-other", "supervisor", "admin", "intake-own", "intake-other"]


@dataclass
class Setup:
    """A fresh case per check, plus the headers of the subject asking."""

    case: dict[str, Any]
    headers: dict[str, str]
    batch_id: str
    admin: dict[str, str]


Call = Callable[[ApiHarness, Setup], Any]


def _new_user(api: ApiHarness, s: Setup) -> Any:
    return api.client.post("/users", json={"name": f"u{uuid.uuid4().hex[:8]}", "role": "supervisor"}, headers=s.headers)


def _throwaway(api: ApiHarness, s: Setup) -> str:
    return str(
        api.client.post("/users", json={"name": f"t{uuid.uuid4().hex[:8]}", "role": "intake"}, headers=s.admin).json()[
            "user"
        ]["name"]
    )


def _approved(api: ApiHarness, s: Setup) -> int:
    r = api.client.post(f"/cases/{s.case['id']}/approve", json={"version": s.case["version"]}, headers=s.admin)
    return int(r.json()["version"])


def _replied(api: ApiHarness, s: Setup) -> int:
    body = {"version": _approved(api, s), "channel": "短信"}
    return int(api.client.post(f"/cases/{s.case['id']}/send-reply", json=body, headers=s.admin).json()["version"])


def _pending_request(api: ApiHarness, s: Setup) -> tuple[int, int]:
    """An extension request on the case: (its id, the case version after it)."""
    body = {"version": s.case["version"], "reason": "情况复杂"}
    case = api.client.post(f"/cases/{s.case['id']}/extension", json=body, headers=s.admin).json()
    return int(case["handling"]["requests"][-1]["id"]), int(case["version"])


def _decide(api: ApiHarness, s: Setup) -> Any:
    request_id, version = _pending_request(api, s)
    path = f"/cases/{s.case['id']}/requests/{request_id}/decide"
    return api.client.post(path, json={"version": version, "grant": True}, headers=s.headers)


def _problem(api: ApiHarness, s: Setup, *steps: str) -> dict[str, Any]:
    """A fresh candidate problem of the case's department, taken through `steps` by an admin."""
    new = {"title": f"测试问题{uuid.uuid4().hex[:6]}", "department": s.case["department"]}
    problem: dict[str, Any] = api.client.post("/problems", json=new, headers=s.admin).json()
    bodies = {
        "confirm": {},
        "plan": {"measures": "优化流程", "deadline": "2099-01-01T00:00:00"},
        "report": {"summary": "已优化"},
    }
    for step in steps:
        body = {"version": problem["version"], **bodies[step]}
        problem = api.client.post(f"/problems/{problem['id']}/{step}", json=body, headers=s.admin).json()
    return problem


def _on_problem(action: str, *steps: str, **body: Any) -> Call:
    def call(api: ApiHarness, s: Setup) -> Any:
        problem = _problem(api, s, *steps)
        payload = {"version": problem["version"], **body}
        if action == "merge":
            payload["into"] = _problem(api, s, "confirm")["id"]
        if action == "edit":
            return api.client.patch(f"/problems/{problem['id']}", json=payload, headers=s.headers)
        return api.client.post(f"/problems/{problem['id']}/{action}", json=payload, headers=s.headers)

    return call


ENDPOINTS: dict[str, Call] = {
    "POST /cases": lambda api, s: api.client.post("/cases", json={"text": TEXT}, headers=s.headers),
    "POST /cases/batch": lambda api, s: api.client.post(
        "/cases/batch", json={"complaints": [{"text": TEXT}]}, headers=s.headers
    ),
    "GET /batches/{id}": lambda api, s: api.client.get(f"/batches/{s.batch_id}", headers=s.headers),
    "GET /cases": lambda api, s: api.client.get(
        "/cases", params={"text": s.case["excerpt"][:30], "page_size": 200}, headers=s.headers
    ),
    "GET /cases/{id}": lambda api, s: api.client.get(f"/cases/{s.case['id']}", headers=s.headers),
    "GET /cases/{id}/audit": lambda api, s: api.client.get(f"/cases/{s.case['id']}/audit", headers=s.headers),
    "POST approve": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/approve", json={"version": s.case["version"]}, headers=s.headers
    ),
    "POST reject": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/reject", json={"version": s.case["version"], "reason": "不准确"}, headers=s.headers
    ),
    "POST reassign": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/reassign",
        json={"version": s.case["version"], "department": "市民政局"},
        headers=s.headers,
    ),
    "POST retriage": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/retriage", json={"version": s.case["version"]}, headers=s.headers
    ),
    "POST close": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/close", json={"version": _approved(api, s)}, headers=s.headers
    ),
    "GET /stats": lambda api, s: api.client.get("/stats", headers=s.headers),
    "GET /readyz": lambda api, s: api.client.get("/readyz", headers=s.headers),
    "GET /me": lambda api, s: api.client.get("/me", headers=s.headers),
    "GET /departments": lambda api, s: api.client.get("/departments", headers=s.headers),
    "GET /typical-problems": lambda api, s: api.client.get("/typical-problems", headers=s.headers),
    "GET /users": lambda api, s: api.client.get("/users", headers=s.headers),
    "POST /users": _new_user,
    "PATCH /users/{name}": lambda api, s: api.client.patch(
        f"/users/{_throwaway(api, s)}", json={"active": False}, headers=s.headers
    ),
    "POST /users/{name}/keys": lambda api, s: api.client.post(f"/users/{_throwaway(api, s)}/keys", headers=s.headers),
    "DELETE /users/{name}/keys/{prefix}": lambda api, s: _revoke(api, s),
    "POST /kb/reindex": lambda api, s: api.client.post("/kb/reindex", headers=s.headers),
    "POST /jobs": lambda api, s: api.client.post("/jobs", json={"filters": {"ids": [s.case["id"]]}}, headers=s.headers),
    "GET /jobs": lambda api, s: api.client.get("/jobs", headers=s.headers),
    "GET /jobs/{id}": lambda api, s: api.client.get(f"/jobs/{_job(api, s)}", headers=s.headers),
    "POST /jobs/{id}/cancel": lambda api, s: api.client.post(f"/jobs/{_job(api, s)}/cancel", headers=s.headers),
    # the case after the draft
    "POST contact": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/contact", json={"version": s.case["version"]}, headers=s.headers
    ),
    "POST return": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/return", json={"version": s.case["version"], "reason": "属区级事权"}, headers=s.headers
    ),
    "POST send-reply": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/send-reply", json={"version": _approved(api, s), "channel": "电话"}, headers=s.headers
    ),
    "POST follow-up": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/follow-up",
        json={"version": _replied(api, s), "satisfaction": "满意"},
        headers=s.headers,
    ),
    "POST supervise": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/supervise",
        json={"version": s.case["version"], "note": "请加快办理", "due": "2099-01-01"},
        headers=s.headers,
    ),
    "POST extension": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/extension",
        json={"version": s.case["version"], "reason": "需多部门会商"},
        headers=s.headers,
    ),
    "POST appeal": lambda api, s: api.client.post(
        f"/cases/{s.case['id']}/appeal", json={"version": s.case["version"], "reason": "恶意差评"}, headers=s.headers
    ),
    "POST decide": _decide,
    # typical problems and supervision
    "GET /problems": lambda api, s: api.client.get("/problems", headers=s.headers),
    "GET /problems/{id}": lambda api, s: api.client.get("/problems/TP-GA-001", headers=s.headers),
    "POST /problems": lambda api, s: api.client.post(
        "/problems", json={"title": "新问题", "department": "市公安局"}, headers=s.headers
    ),
    "PATCH /problems/{id}": _on_problem("edit", unified_reply="统一答复口径"),
    "POST problem confirm": _on_problem("confirm"),
    "POST problem plan": _on_problem("plan", "confirm", measures="措施", deadline="2099-06-01"),
    "POST problem report": _on_problem("report", "confirm", "plan", summary="已完成"),
    "POST problem verify": _on_problem("verify", "confirm", "plan", "report"),
    "POST problem reopen": _on_problem("reopen", "confirm", "plan", "report", note="仍有投诉"),
    "POST problem archive": _on_problem("archive"),
    "POST problem merge": _on_problem("merge"),
    "GET /supervision": lambda api, s: api.client.get("/supervision", headers=s.headers),
    "POST /supervision/sweep": lambda api, s: api.client.post("/supervision/sweep", headers=s.headers),
}


def _job(api: ApiHarness, s: Setup) -> str:
    body = {"filters": {"ids": [s.case["id"]]}}
    return str(api.client.post("/jobs", json=body, headers=s.admin).json()["id"])


def _revoke(api: ApiHarness, s: Setup) -> Any:
    issued = api.client.post(
        "/users", json={"name": f"r{uuid.uuid4().hex[:8]}", "role": "intake"}, headers=s.admin
    ).json()
    return api.client.delete(f"/users/{issued['user']['name']}/keys/{issued['prefix']}", headers=s.headers)


OK = {
    "POST /problems": 201,
    "POST /cases": 201,
    "POST /cases/batch": 202,
    "POST /users": 201,
    "POST /users/{name}/keys": 201,
    "POST /jobs": 202,
}
OPERATORS = ("POST /jobs", "GET /jobs", "GET /jobs/{id}", "POST /jobs/{id}/cancel")
READS_ALL = ("GET /stats", "GET /readyz", "GET /me", "GET /departments", "GET /typical-problems")
CASE_READS = ("GET /cases/{id}", "GET /cases/{id}/audit")
DECIDE = ("POST approve", "POST reject", "POST close")
MOVE = ("POST reassign", "POST retriage")
ADMIN_ONLY = (
    "GET /users",
    "POST /users",
    "PATCH /users/{name}",
    "POST /users/{name}/keys",
    "DELETE /users/{name}/keys/{prefix}",
    "POST /kb/reindex",
)
INGEST = ("POST /cases", "POST /cases/batch")
DEPARTMENT_STEPS = ("POST contact", "POST return", "POST send-reply", "POST extension", "POST appeal")
SUPERVISING = ("POST supervise", "POST decide")
PROBLEM_READS = ("GET /problems", "GET /problems/{id}")  # every person; not intake systems
PROBLEM_SUPERVISING = (
    "POST /problems",
    "POST problem confirm",
    "POST problem verify",
    "POST problem reopen",
    "POST problem archive",
    "POST problem merge",
    "POST /supervision/sweep",
)
PROBLEM_OWNING = ("POST problem plan", "POST problem report")  # the owner department's caseworkers


def expected(subject: str, endpoint: str) -> int:
    """The access rules, written out once; the test holds the API to them."""
    ok = OK.get(endpoint, 200)
    role, _, scope = subject.partition("-")
    hidden = scope == "other"  # a case (or batch) outside the caller's scope does not exist for them
    if endpoint in READS_ALL or endpoint == "GET /cases":
        return ok
    if endpoint in PROBLEM_READS:
        return 403 if role == "intake" else ok
    if endpoint in PROBLEM_SUPERVISING:
        return ok if role in ("supervisor", "admin") else 403
    if endpoint in PROBLEM_OWNING:
        return ok if subject in ("caseworker-own", "admin") else 403
    if endpoint == "PATCH /problems/{id}":
        return ok if subject in ("caseworker-own", "supervisor", "admin") else 403
    if endpoint == "GET /supervision":
        return 403 if role == "intake" else ok
    if endpoint in ADMIN_ONLY:
        return ok if role == "admin" else 403
    if endpoint in OPERATORS:
        return ok if role in ("supervisor", "admin") else 403
    if endpoint in INGEST:
        return ok if role in ("supervisor", "admin", "intake") else 403
    if endpoint == "GET /batches/{id}":
        return ok if role in ("supervisor", "admin") or subject == "intake-own" else 404
    if hidden:
        return 404
    if endpoint in CASE_READS:
        return ok
    if endpoint in DECIDE:
        return ok if role in ("caseworker", "admin") else 403
    if endpoint in MOVE or endpoint == "POST follow-up":
        return ok if role in ("caseworker", "supervisor", "admin") else 403
    if endpoint in DEPARTMENT_STEPS:
        return ok if role in ("caseworker", "admin") else 403
    if endpoint in SUPERVISING:
        return ok if role in ("supervisor", "admin") else 403
    raise AssertionError(f"no rule for {endpoint}")


@pytest.fixture(scope="module")
def intake_keys(api: ApiHarness) -> dict[str, dict[str, str]]:
    return {"own": api.headers("intake"), "admin": api.headers("admin")}


def _setup(api: ApiHarness, subject: str, keys: dict[str, dict[str, str]]) -> Setup:
    admin = keys["admin"]
    submitter = keys["own"] if subject == "intake-own" else admin
    case = api.ingest(submitter, f"{TEXT}（{uuid.uuid4().hex[:6]}）")
    batch = api.client.post("/cases/batch", json={"complaints": [{"text": TEXT}]}, headers=submitter).json()
    department = str(case["department"])
    headers = {
        "caseworker-own": lambda: api.headers("caseworker", department),
        "caseworker-other": lambda: api.headers(
            "caseworker", OTHER_DEPARTMENT if department != OTHER_DEPARTMENT else "市民政局"
        ),
        "supervisor": lambda: api.headers("supervisor"),
        "admin": lambda: admin,
        "intake-own": lambda: keys["own"],
        "intake-other": lambda: api.headers("intake"),
    }[subject]()
    return Setup(case=case, headers=headers, batch_id=batch["batch_id"], admin=admin)


@pytest.mark.parametrize("endpoint", list(ENDPOINTS))
@pytest.mark.parametrize("subject", SUBJECTS)
def test_access_matrix(api: ApiHarness, intake_keys: dict[str, dict[str, str]], subject: str, endpoint: str) -> None:
    setup = _setup(api, subject, intake_keys)
    response = ENDPOINTS[endpoint](api, setup)
    want = expected(subject, endpoint)
    assert response.status_code == want, f"{subject} {endpoint}: {response.status_code} {response.text[:300]}"
    if want >= 400:
        assert response.headers["content-type"] == "application/problem+json"
    if endpoint == "GET /cases":  # listing is scoped: the case shows only to those who may see it
        ids = {c["id"] for c in response.json()["items"]}
        assert (setup.case["id"] in ids) == (subject not in ("caseworker-other", "intake-other"))


def test_every_route_but_healthz_and_docs_needs_a_key(api: ApiHarness) -> None:
    paths = api.client.get("/openapi.json").json()["paths"]
    operations = [(m.upper(), p) for p, ops in paths.items() for m in ops if p != "/healthz"]
    assert {"GET /cases", "POST /cases/{case_id}/approve", "GET /users", "POST /kb/reindex"} <= {
        f"{m} {p}" for m, p in operations
    }
    assert len(operations) == len(ENDPOINTS)  # the matrix above covers every operation
    for method, template in operations:
        path = re.sub(r"\{[a-z_]+\}", "x", template)
        for headers in ({}, {"Authorization": "Bearer tk_not-a-real-key"}):
            response = api.client.request(method, path, headers=headers, json={})
            assert response.status_code == 401, f"{method} {template} answered {response.status_code}"
            assert response.headers["www-authenticate"] == "Bearer"
    assert api.client.get("/healthz").status_code == 200


def test_revoked_keys_and_deactivated_users_stop_at_once(api: ApiHarness) -> None:
    admin = api.headers("admin")
    issued = api.client.post(
        "/users", json={"name": f"k{uuid.uuid4().hex[:8]}", "role": "supervisor"}, headers=admin
    ).json()
    mine = {"Authorization": f"Bearer {issued['key']}"}
    spare = api.client.post(f"/users/{issued['user']['name']}/keys", headers=admin).json()
    assert api.client.get("/me", headers=mine).json()["role"] == "supervisor"
    api.client.delete(f"/users/{issued['user']['name']}/keys/{issued['prefix']}", headers=admin)
    assert api.client.get("/me", headers=mine).status_code == 401
    spare_headers = {"Authorization": f"Bearer {spare['key']}"}
    assert api.client.get("/me", headers=spare_headers).status_code == 200
    api.client.patch(f"/users/{issued['user']['name']}", json={"active": False}, headers=admin)
    assert api.client.get("/me", headers=spare_headers).status_code == 401
    listing = api.client.get("/users", headers=admin).json()
    row = next(u for u in listing if u["user"]["name"] == issued["user"]["name"])
    assert all("key" not in k for k in row["keys"]) and len(row["keys"]) == 2


def test_no_user_may_take_the_name_of_a_system_actor(api: ApiHarness) -> None:
    admin = api.headers("admin")
    for name in ("triage", "TRIAGE", "cli", "system"):
        response = api.client.post("/users", json={"name": name, "role": "supervisor"}, headers=admin)
        assert response.status_code == 422 and response.json()["errors"][0]["field"] == "name", response.text
    assert (
        api.client.post("/users", json={"name": "triage-team", "role": "supervisor"}, headers=admin).status_code == 201
    )


def test_keys_are_stored_hashed(api: ApiHarness) -> None:
    import sqlalchemy as sa

    headers = api.headers("supervisor")
    key = headers["Authorization"].removeprefix("Bearer ")
    with api.services.db.engine.connect() as conn:
        stored = [tuple(r) for r in conn.execute(sa.text("SELECT key_hash, prefix FROM api_keys"))]
    assert stored and not any(key in h for h, _ in stored) and any(key.startswith(p) for _, p in stored)


def test_caseworker_department_rules(api: ApiHarness) -> None:
    bad = api.client.post(
        "/users", json={"name": f"c{uuid.uuid4().hex[:6]}", "role": "caseworker"}, headers=api.headers("admin")
    )
    assert bad.status_code == 422 and bad.json()["errors"][0]["field"] == "departments"
    unknown = api.client.post(
        "/users",
        json={"name": f"c{uuid.uuid4().hex[:6]}", "role": "caseworker", "departments": ["市魔法局"]},
        headers=api.headers("admin"),
    )
    assert unknown.status_code == 422 and "市公安局" in unknown.json()["valid_departments"]
    admin = api.headers("admin")
    case = api.ingest(admin, TEXT)
    worker = api.headers("caseworker", str(case["department"]))
    outside = "市民政局" if case["department"] != "市民政局" else "市医保局"
    response = api.client.post(
        f"/cases/{case['id']}/approve",
        json={"version": case["version"], "edits": {"department": outside}},
        headers=worker,
    )
    assert response.status_code == 403 and "reassign" in response.json()["detail"]
