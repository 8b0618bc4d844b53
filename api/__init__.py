"""The caseworker review API (FastAPI). Not built yet: the CLI is the only interface so far."""
