"""The loaded models as one immutable snapshot: what a triage call reads, from first step to last.

A build (see triage.workspace) writes a new generation: its own model files and its own Chroma
collections. When it lands, the workspace swaps the snapshot it hands out by reference. A call that
took the old snapshot finishes on it, consistently, while the next call takes the new one; nothing
waits for anything, and a rebuild never waits for drafting in flight (an LLM call can take tens of
seconds). The previous generation's collections are dropped only by the build after next, so a
process that has not yet noticed a new build still queries collections that exist.
"""

from __future__ import annotations

import gc
from collections.abc import Sequence
from dataclasses import dataclass, field

from triage.errors import VectorStoreError
from triage.knowledge import KnowledgeBase
from triage.redaction import redact
from triage.routing import Router
from vectorstore import Embedder, Hit, OfflineEmbedder, TextModel, VectorIndex
from vectorstore.embedders import Matrix, SparseMatrix
from vectorstore.store import CASES, PROBLEMS


@dataclass(frozen=True)
class Models:
    """One build's knowledge base, text model, router, embedder and collections; never changed."""

    build: str
    kb: KnowledgeBase
    text_model: TextModel
    router: Router
    embedder: Embedder
    index: VectorIndex  # this build's collections
    problem_ids: list[str] = field(default_factory=list)
    problem_rows: SparseMatrix | None = None  # lexical TF-IDF rows of the typical problems, for match scores

    @classmethod
    def assemble(
        cls,
        *,
        build: str,
        kb: KnowledgeBase,
        text_model: TextModel,
        router: Router,
        embedder: Embedder,
        index: VectorIndex,
    ) -> Models:
        problems = kb.problems
        rows = text_model.sparse([redact(p.search_text()).text for p in problems]) if problems else None
        return cls(build, kb, text_model, router, embedder, index, [p.id for p in problems], rows)

    def embed_queries(self, texts: Sequence[str], sparse_rows: SparseMatrix | None = None) -> Matrix:
        """Query vectors for redacted texts; reuses TF-IDF rows already computed for routing."""
        if sparse_rows is not None and isinstance(self.embedder, OfflineEmbedder):
            return self.text_model.dense_from_sparse(sparse_rows)
        return self.embedder.embed(texts)

    def search_vectors(self, vectors: Matrix, *, collection: str, k: int) -> list[list[Hit]]:
        return self.index.query(collection, embedder=self.embedder.fingerprint, embeddings=vectors, k=k)

    def search(self, texts: Sequence[str], *, collection: str, k: int) -> list[list[Hit]]:
        """Nearest items per text (texts must already be redacted)."""
        return self.search_vectors(self.embed_queries(texts), collection=collection, k=k)

    def check_ready(self) -> None:
        """Raise VectorStoreError unless both collections answer with this build's embedder."""
        for name in (PROBLEMS, CASES):
            self.index.check(name, embedder=self.embedder.fingerprint)
        if self.index.count(PROBLEMS) != len(self.kb.problems):
            raise VectorStoreError("typical problem collection is out of date; run `triage kb reindex`")


def settle_heap() -> None:
    """Hide the objects alive now from the cyclic garbage collector: the loaded models, the libraries.

    A long-running process (the API) keeps them for its whole life, and every full collection walked
    them all: about 240,000 objects and a 140 ms pause every few seconds, for nothing collected.
    Frozen, a full collection takes 2 ms. Called once the models are loaded, and again after a new
    snapshot replaces them: what an earlier call froze is unfrozen and collected first, so replaced
    models are freed. Reference counting frees frozen objects as usual.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
