"""Liveness (no key) and readiness (database and vector store)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from api.deps import CurrentUser, ServicesDep
from api.errors import problem
from triage.errors import TriageError

router = APIRouter(tags=["health"])


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The process is up (no key needed)."""
    return {"status": "ok"}


@router.get("/readyz", response_model=None)
def readyz(services: ServicesDep, user: CurrentUser) -> dict[str, Any] | JSONResponse:
    """The database and both vector collections answer."""
    checks: dict[str, str] = {}
    for name, check in (
        ("database", services.db.ping),
        ("vector_store", lambda: services.workspace.models.check_ready()),
    ):
        try:
            check()
            checks[name] = "ok"
        except TriageError as exc:
            checks[name] = f"unavailable: {exc}"
    if all(v == "ok" for v in checks.values()):
        return {"status": "ready", "checks": checks}
    failed = ", ".join(k for k, v in checks.items() if v != "ok")
    return problem(503, "not-ready", "Not ready", f"unavailable: {failed}", checks=checks)
