"""The one exception tree of the project.

    TriageError                      root: anything we raise on purpose
    ├── InputError                   a complaint, file or argument is invalid (names the field / line)
    ├── KnowledgeBaseError           a departments / typical-problems file is invalid or inconsistent
    ├── VectorStoreError             Chroma is unreachable or answered with an error
    │   └── EmbedderMismatchError    a collection was built by another embedder: run `triage kb reindex`
    ├── EmbeddingError               the embeddings endpoint failed
    └── DraftingError                the LLM drafter failed (always caught: the offline drafter takes over)

The CLI maps the tree to messages and exit codes in one place (triage.cli); the API does the same
for HTTP problem+json responses.
"""

from __future__ import annotations


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
