"""The one exception tree of the project.

    TriageError                      root: anything we raise on purpose
    ├── InputError                   a complaint, file or argument is invalid (names the field / line)
    │   └── UnknownDepartmentError   a department outside the taxonomy (lists the valid ones)
    ├── KnowledgeBaseError           a departments / typical-problems file is invalid or inconsistent
    ├── VectorStoreError             Chroma is unreachable or answered with an error
    │   └── EmbedderMismatchError    a collection was built by another embedder: run `triage kb reindex`
    ├── EmbeddingError               the embeddings endpoint failed
    ├── DraftingError                the LLM drafter failed (always caught: the offline drafter takes over)
    ├── StoreError                   the database failed or is unreachable
    ├── NotBuiltError                the workspace's models or index are not built: says what to run
    ├── AuthError                    no API key, or an unknown / revoked one
    ├── NotFoundError                no such thing, or one outside the caller's departments
    ├── ForbiddenError               the caller's role may not do this
    ├── InvalidTransitionError       the action is not allowed in the current state
    └── ConflictError                a concurrent change came first
        ├── StaleVersionError        the case changed since the caller read it
        ├── IdempotencyError         an external id already names a different complaint
        ├── ConcurrentUpdateError    a row changed between read and write (the ORM's version check)
        └── DuplicateError           a unique key was taken meanwhile

SQLAlchemy's exceptions become StoreError / ConcurrentUpdateError / DuplicateError in one place
(triage.database). The CLI maps the tree to messages and exit codes in one place (triage.cli.base);
the API does the same for HTTP problem+json responses (api.errors).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class TriageError(Exception):
    """Root of every error this project raises on purpose."""


class InputError(TriageError):
    """Invalid input; the message names the field (and line, for files)."""

    def __init__(self, message: str, *, field: str | None = None, line: int | None = None) -> None:
        self.field = field
        self.line = line
        prefix = f"line {line}: " if line is not None else ""
        where = f"field '{field}': " if field else ""
        super().__init__(f"{prefix}{where}{message}")
        self.detail = message


class KnowledgeBaseError(TriageError):
    """The knowledge base files are invalid or inconsistent."""


class VectorStoreError(TriageError):
    """The vector store failed."""


class EmbedderMismatchError(VectorStoreError):
    """A collection was built with a different embedder than the one configured now."""

    def __init__(self, collection: str, built_with: str, configured: str) -> None:
        self.collection = collection
        self.built_with = built_with
        self.configured = configured
        super().__init__(
            f"collection '{collection}' was built with embedder '{built_with}' but the configured "
            f"embedder is '{configured}'; run `triage kb reindex` to rebuild it with the current one"
        )


class EmbeddingError(TriageError):
    """The embeddings endpoint failed."""


class DraftingError(TriageError):
    """The LLM drafter could not produce a valid draft; `reason` is recorded on the fallback draft."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class UnknownDepartmentError(InputError):
    """A department name that is not in the knowledge base."""

    def __init__(self, name: str, valid: Sequence[str], *, field: str = "department") -> None:
        self.valid = list(valid)
        super().__init__(f"unknown department '{name}'; valid departments: {', '.join(self.valid)}", field=field)


class StoreError(TriageError):
    """The database failed or is unreachable."""


class NotBuiltError(TriageError):
    """The workspace has no built models or index; the message says which command builds them."""


class AuthError(TriageError):
    """Missing, unknown or revoked API key."""


class NotFoundError(TriageError):
    """No such thing, or one the caller may not see (the two are indistinguishable on purpose)."""


class ForbiddenError(TriageError):
    """The caller's role does not allow the action."""


class ConflictError(TriageError):
    """A concurrent change came first."""


class ConcurrentUpdateError(ConflictError):
    """A row changed between the read and the write (the ORM's version check refused the write)."""


class DuplicateError(ConflictError):
    """A unique key was taken meanwhile (two requests storing the same external id)."""


class InvalidTransitionError(TriageError):
    """The action is not allowed in the case's current state."""

    def __init__(self, action: str, status: str, allowed: Sequence[str]) -> None:
        self.action = action
        self.status = status
        self.allowed = list(allowed)
        allowed_text = ", ".join(self.allowed) or "none"
        super().__init__(f"cannot {action} a case that is {status}; allowed now: {allowed_text}")


class StaleVersionError(ConflictError):
    """The decision was made on an older version of the case; `current` is the case as it is now."""

    def __init__(self, expected: int, current: Any) -> None:
        self.expected = expected
        self.current = current
        super().__init__(
            f"the case is at version {current.version}, not {expected}: it changed since you read it; "
            "reload it and decide again"
        )


class IdempotencyError(ConflictError):
    """The external id was already used for a complaint with different content."""
