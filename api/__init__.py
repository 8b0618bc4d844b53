"""The caseworker review API (FastAPI): `create_app(settings)` builds it; `triage serve` runs it."""

from api.app import create_app

__all__ = ["create_app"]
