"""Alembic migrations of the case database; applied by `triage db upgrade` and whenever a workspace opens."""
