"""The Chroma-backed vector index: one collection for typical problems, one for past cases.

Every collection is created with the cosine space set explicitly and records the embedder that
built it; queries return similarity in 0..1 (1 - cosine distance, clipped), never distance.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import numpy as np

from triage.errors import EmbedderMismatchError, VectorStoreError
from vectorstore.embedders import Matrix

log = logging.getLogger(__name__)

PROBLEMS = "typical_problems"
CASES = "past_cases"
_BATCH = 2000
# Chroma persists its HNSW index every `sync_threshold` writes, and until then each write replays the
# log since the last persist: measured with the default (1,000), one-case upserts (an approval each)
# slowed from 8 to 52 ms over 600 writes and queries from 1.1 to 3.7 ms. Persisting every 100 writes
# kept upserts at 8-9 ms and queries at 1-1.6 ms, with 1,360 and with 50,000 items.
HNSW_SYNC_THRESHOLD = 100


@dataclass(frozen=True)
class Hit:
    id: str
    similarity: float
    document: str
    metadata: Mapping[str, Any]


@contextmanager
def _mapped_errors(action: str) -> Iterator[None]:
    """Chroma's exceptions become VectorStoreError at this boundary."""
    try:
        yield
    except (VectorStoreError, EmbedderMismatchError):
        raise
    except Exception as exc:
        raise VectorStoreError(f"vector store failed to {action}: {type(exc).__name__}: {exc}") from exc


def make_client(*, path: Path, url: str | None = None, api_key: str | None = None) -> Any:
    """An embedded PersistentClient under `path`, or an HttpClient when a server URL is given."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    settings = ChromaSettings(anonymized_telemetry=False)
    with _mapped_errors("connect"):
        if url:
            parsed = urlparse(url)
            if parsed.scheme not in {"http", "https"} or not parsed.hostname:
                raise VectorStoreError(f"chroma_url '{url}' is not an http(s) URL")
            headers = {"x-chroma-token": api_key} if api_key else None
            client = chromadb.HttpClient(
                host=parsed.hostname,
                port=parsed.port or (443 if parsed.scheme == "https" else 8000),
                ssl=parsed.scheme == "https",
                headers=headers,
                settings=settings,
            )
            try:
                client.heartbeat()
            except Exception:
                close_client(client)
                raise
            return client
        path.mkdir(parents=True, exist_ok=True)
        return chromadb.PersistentClient(path=str(path), settings=settings)


def close_client(client: Any) -> None:
    """Close a Chroma client, including the HTTP session that chromadb's own close() leaves open."""
    session = getattr(getattr(client, "_server", None), "_session", None)
    if session is not None:
        session.close()
    close = getattr(client, "close", None)
    if close is not None:
        close()


class VectorIndex:
    """Named collections with an embedder check; `prefix` namespaces a workspace on a shared server."""

    def __init__(self, client: Any, *, prefix: str = "triage") -> None:
        self._client = client
        self._prefix = prefix
        self._collections: dict[str, Any] = {}

    @property
    def prefix(self) -> str:
        return self._prefix

    def _name(self, name: str) -> str:
        return f"{self._prefix}_{name}"

    def _collection(self, name: str) -> Any | None:
        if name not in self._collections:
            with _mapped_errors(f"open collection '{name}'"):
                try:
                    col = self._client.get_collection(self._name(name), embedding_function=None)
                except Exception as exc:  # NotFoundError differs between embedded and HTTP clients
                    if "does not exist" in str(exc) or "NotFound" in type(exc).__name__:
                        return None
                    raise
                self._tune(col)
                self._collections[name] = col
        return self._collections[name]

    @staticmethod
    def _tune(col: Any) -> None:
        """Give a collection built by an earlier version (or by Chroma's defaults) our sync threshold.
        Best effort: a server that refuses the change still serves the collection, only slower."""
        hnsw = (col.configuration or {}).get("hnsw")
        if not hnsw or hnsw.get("sync_threshold") == HNSW_SYNC_THRESHOLD:
            return  # not an HNSW collection, or tuned already
        try:
            col.modify(configuration={"hnsw": {"sync_threshold": HNSW_SYNC_THRESHOLD}})
        except Exception as exc:
            log.warning("could not set sync_threshold=%d on '%s': %s", HNSW_SYNC_THRESHOLD, col.name, exc)

    def drop(self, name: str) -> None:
        """Delete a collection, if it exists."""
        self._collections.pop(name, None)
        with _mapped_errors(f"drop '{name}'"):
            try:
                self._client.delete_collection(self._name(name))
            except Exception as exc:
                if "does not exist" not in str(exc) and "NotFound" not in type(exc).__name__:
                    raise

    def built_with(self, name: str) -> str | None:
        col = self._collection(name)
        return None if col is None else str((col.metadata or {}).get("embedder"))

    def count(self, name: str) -> int:
        col = self._collection(name)
        with _mapped_errors(f"count '{name}'"):
            return 0 if col is None else int(col.count())

    def recreate(self, name: str, *, embedder: str) -> None:
        """Drop and create an empty collection bound to `embedder`, cosine space."""
        self.drop(name)
        with _mapped_errors(f"recreate '{name}'"):
            self._collections[name] = self._client.create_collection(
                self._name(name),
                configuration={"hnsw": {"space": "cosine", "sync_threshold": HNSW_SYNC_THRESHOLD}},
                metadata={"embedder": embedder},
                embedding_function=None,
            )

    def check(self, name: str, *, embedder: str) -> Any:
        col = self._collection(name)
        if col is None:
            raise VectorStoreError(f"collection '{name}' does not exist; run `triage kb reindex`")
        built = str((col.metadata or {}).get("embedder"))
        if built != embedder:
            raise EmbedderMismatchError(name, built, embedder)
        return col

    def upsert(
        self,
        name: str,
        *,
        embedder: str,
        ids: Sequence[str],
        embeddings: Matrix,
        documents: Sequence[str],
        metadatas: Sequence[Mapping[str, Any]],
    ) -> None:
        col = self.check(name, embedder=embedder)
        with _mapped_errors(f"write to '{name}'"):
            for start in range(0, len(ids), _BATCH):
                end = start + _BATCH
                col.upsert(
                    ids=list(ids[start:end]),
                    embeddings=embeddings[start:end],
                    documents=list(documents[start:end]),
                    metadatas=[_clean(m) for m in metadatas[start:end]],
                )

    def delete(self, name: str, *, ids: Sequence[str]) -> None:
        """Remove items by id (ids not there are ignored)."""
        col = self._collection(name)
        if col is None or not ids:
            return
        with _mapped_errors(f"delete from '{name}'"):
            col.delete(ids=list(ids))

    def query(
        self,
        name: str,
        *,
        embedder: str,
        embeddings: Matrix,
        k: int,
        where: Mapping[str, Any] | None = None,
    ) -> list[list[Hit]]:
        """Top-k hits per query vector, most similar first."""
        col = self.check(name, embedder=embedder)
        if k <= 0 or len(embeddings) == 0:
            return [[] for _ in range(len(embeddings))]
        with _mapped_errors(f"query '{name}'"):
            result = col.query(  # n_results above the collection size returns what there is
                query_embeddings=np.asarray(embeddings, dtype=np.float32),
                n_results=k,
                where=dict(where) if where else None,
                include=["documents", "metadatas", "distances"],
            )
        out: list[list[Hit]] = []
        for ids, dists, docs, metas in zip(
            result["ids"], result["distances"], result["documents"], result["metadatas"], strict=True
        ):
            out.append(
                [
                    Hit(
                        id=i,
                        similarity=float(min(1.0, max(0.0, 1.0 - d))),
                        document=doc or "",
                        metadata=m or {},
                    )
                    for i, d, doc, m in zip(ids, dists, docs, metas, strict=True)
                ]
            )
        return out

    def all_documents(self, name: str) -> Iterator[tuple[str, str, Mapping[str, Any]]]:
        """Every (id, document, metadata) in a collection, paged."""
        col = self._collection(name)
        if col is None:
            return
        offset = 0
        while True:
            with _mapped_errors(f"read '{name}'"):
                page = col.get(limit=_BATCH, offset=offset, include=["documents", "metadatas"])
            if not page["ids"]:
                return
            yield from zip(page["ids"], page["documents"] or [], page["metadatas"] or [], strict=False)
            offset += len(page["ids"])

    def close(self) -> None:
        """Release the client (HTTP connections, or the embedded system's files)."""
        self._collections.clear()
        close_client(self._client)

    def heartbeat(self) -> None:
        with _mapped_errors("answer a heartbeat"):
            self._client.heartbeat()


def _clean(meta: Mapping[str, Any]) -> dict[str, Any]:
    """Chroma metadata values must be scalars; None values are dropped."""
    return {k: v for k, v in meta.items() if v is not None}
