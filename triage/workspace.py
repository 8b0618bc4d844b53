"""A workspace: one data directory holding the knowledge base, the fitted models and the vector index.

<data_dir>/kb.json                    the active knowledge base (seeded from the built-in one)
<data_dir>/models/text_model.joblib   offline text model (TF-IDF + LSA) fitted on the corpus
<data_dir>/models/router.joblib       the department router
<data_dir>/models/state.json          "building" during a rebuild, "ready" after: an interrupted rebuild is redone
<data_dir>/triage.db                  SQLite: past cases and the unlabelled corpus (unless a database URL is set)
<data_dir>/chroma/                    embedded Chroma (unless a Chroma server URL is configured)

The database is the source of truth; the Chroma collections are an index rebuilt from it by reindex().
"""

from __future__ import annotations

import gc
import json
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from triage import knowledge
from triage.errors import VectorStoreError
from triage.knowledge import KnowledgeBase
from triage.models import PastCase, TypicalProblem
from triage.redaction import redact
from triage.routing import Router, kb_training_docs
from triage.settings import Settings
from triage.store import HistoryStore, content_hash, database_url, make_engine
from vectorstore import Embedder, Hit, OfflineEmbedder, OpenAIEmbedder, TextModel, VectorIndex, make_client
from vectorstore.embedders import Matrix, SparseMatrix
from vectorstore.store import CASES, PROBLEMS

log = logging.getLogger(__name__)


def settle_heap() -> None:
    """Hide the objects alive now from the cyclic garbage collector: the loaded models, the libraries.

    A long-running process (the API) keeps them for its whole life, and every full collection walked
    them all: measured in the API under load, about 240,000 objects and a 140 ms pause every few
    seconds, for nothing collected (a queue request's p99 was 170 ms with a p95 of 50 ms). Frozen, a
    full collection took 2 ms. Call it once the models are loaded, and again after replacing them:
    what an earlier call froze is unfrozen and collected first, so replaced models are freed.
    Reference counting frees frozen objects as usual.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()


Progress = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class Stats:
    kb_version: str
    departments: int
    typical_problems: int
    service_items: int
    past_cases: int
    embedder: str
    router: str
    router_history: int
    data_dir: str
    chroma: str


class Workspace:
    """Opened by `Workspace.open(settings)`; seeds the built-in knowledge base on first use."""

    def __init__(self, settings: Settings, kb: KnowledgeBase, index: VectorIndex, store: HistoryStore) -> None:
        self.settings = settings
        self.kb = kb
        self.index = index
        self.store = store
        self.data_dir = settings.data_dir
        self.text_model: TextModel | None = None
        self.router: Router | None = None
        self.embedder: Embedder | None = None
        self._loaded_state: str | None = None  # the state file as it was when these models were loaded

    def close(self) -> None:
        self.index.close()
        self.store.engine.dispose()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- paths -----------------------------------------------------------------------------
    @property
    def _kb_path(self) -> Path:
        return self.data_dir / "kb.json"

    @property
    def _model_path(self) -> Path:
        return self.data_dir / "models" / "text_model.joblib"

    @property
    def _router_path(self) -> Path:
        return self.data_dir / "models" / "router.joblib"

    @property
    def _state_path(self) -> Path:
        return self.data_dir / "models" / "state.json"

    def _ready(self) -> bool:
        if not (self._model_path.exists() and self._router_path.exists() and self._state_path.exists()):
            return False
        return bool(json.loads(self._state_path.read_text(encoding="utf-8")).get("status") == "ready")

    # -- opening ---------------------------------------------------------------------------
    @classmethod
    def open(cls, settings: Settings) -> Workspace:
        data_dir = settings.data_dir
        kb = active_kb(settings)
        key = settings.chroma_api_key.get_secret_value() if settings.chroma_api_key else None
        client = make_client(path=data_dir / "chroma", url=settings.chroma_url, api_key=key)
        store = HistoryStore(make_engine(database_url(settings.database_url, data_dir)))
        ws = cls(settings, kb, VectorIndex(client, prefix="triage"), store)
        if ws._ready() and ws.index.built_with(PROBLEMS) is not None:
            ws._load_models()
        else:
            ws.reindex()
        return ws

    def _load_models(self) -> None:
        """Load everything first, then swap it in at once; if the state changed meanwhile (a rebuild
        finished while loading), `stale()` stays true and the next check loads again."""
        state = self._state_path.read_text(encoding="utf-8")
        kb = active_kb(self.settings)
        text_model = TextModel.load(self._model_path)
        router = Router.load(self._router_path)
        embedder = self._make_embedder(text_model)
        self.kb, self.text_model, self.router, self.embedder = kb, text_model, router, embedder
        self._loaded_state = state

    # -- several processes on one workspace --------------------------------------------------
    def stale(self) -> bool:
        """Whether another process (a `triage kb …` command, another API worker) rebuilt the index or
        retrained routing since this one loaded its models. Reads one small file."""
        try:
            state = self._state_path.read_text(encoding="utf-8")
        except OSError:
            return False
        return state != self._loaded_state and json.loads(state).get("status") == "ready"

    def reload(self) -> None:
        """Load the knowledge base and models another process built (see `stale`), and reopen the
        collections it recreated."""
        self.index.forget()
        self._load_models()
        log.info("reloaded the knowledge base and models rebuilt by another process")

    def _mark_ready(self) -> None:
        assert self.embedder is not None
        state = {"status": "ready", "embedder": self.embedder.fingerprint, "build": uuid.uuid4().hex}
        _write_json(self._state_path, state)
        self._loaded_state = self._state_path.read_text(encoding="utf-8")

    def _make_embedder(self, model: TextModel) -> Embedder:
        s = self.settings
        if s.embeddings == "openai":
            return OpenAIEmbedder(
                model=s.embedding_model,
                base_url=s.embedding_base_url,
                api_key=s.embedding_api_key.get_secret_value() if s.embedding_api_key else None,
                timeout_s=s.llm_timeout_s,
                max_retries=s.llm_max_retries,
            )
        return OfflineEmbedder(model)

    # -- knowledge -------------------------------------------------------------------------
    def load_kb(self, kb: KnowledgeBase) -> None:
        """Replace the knowledge base; past cases whose department left the taxonomy are kept but unused."""
        self.kb = kb
        self.save_kb()
        self.reindex()

    def save_kb(self) -> None:
        _write_json(self._kb_path, self.kb.to_json())

    def past_cases(self) -> list[PastCase]:
        """Every past case, as stored (original text; redacted only where it leaves the process)."""
        return list(self.store.cases())

    def reindex(self, progress: Progress | None = None) -> None:
        """Refit the text model on all the workspace's text, rebuild both collections, retrain the router.

        A marker file says "building" until the end: a workspace whose rebuild was interrupted is
        rebuilt again when next opened, never used half-indexed.
        """
        report = progress or (lambda stage, done, total: None)
        _write_json(self._state_path, {"status": "building"})
        cases = self.past_cases()
        redacted = [case_text(c) for c in cases]
        curated = [t for t, _ in kb_training_docs(self.kb)] + sorted(self.kb.service_items())
        corpus = redacted + [redact(t).text for t in self.store.corpus()]
        report("fitting the text model", 0, 1)
        model = TextModel.fit(corpus, curated=curated, dim=self.settings.offline_embedding_dim)
        report("fitting the text model", 1, 1)
        embedder = self._make_embedder(model)
        self.index.recreate(PROBLEMS, embedder=embedder.fingerprint)
        if self.kb.problems:
            self._upsert_problems(self.kb.problems, embedder)
        self.index.recreate(CASES, embedder=embedder.fingerprint)
        self.text_model, self.embedder = model, embedder
        for start in range(0, len(cases), 1000):
            report("indexing past cases", start, len(cases))
            self.index_cases(cases[start : start + 1000], redacted[start : start + 1000])
        report("indexing past cases", len(cases), len(cases))
        model.save(self._model_path)
        report("training the router", 0, 1)
        self._train_router(cases, redacted)
        report("training the router", 1, 1)
        self._mark_ready()
        log.info(
            "reindexed: %d typical problems, %d past cases, %s",
            len(self.kb.problems),
            len(cases),
            embedder.fingerprint,
        )

    def retrain_router(self, cases: Sequence[PastCase] | None = None, texts: Sequence[str] | None = None) -> None:
        """Train routing on the knowledge base and the history (redacted texts, as at triage time)."""
        self._train_router(cases, texts)
        self._mark_ready()  # other processes on this workspace load the new router

    def _train_router(self, cases: Sequence[PastCase] | None = None, texts: Sequence[str] | None = None) -> None:
        assert self.text_model is not None
        cases = self.past_cases() if cases is None else cases
        texts = [case_text(c) for c in cases] if texts is None else texts
        history = [(t, c.department) for t, c in zip(texts, cases, strict=True)]
        self.router = Router.train(kb=self.kb, model=self.text_model, history=history)
        self.router.save(self._router_path)

    def _upsert_problems(self, problems: Sequence[TypicalProblem], embedder: Embedder) -> None:
        texts = [redact(p.search_text()).text for p in problems]
        self.index.upsert(
            PROBLEMS,
            embedder=embedder.fingerprint,
            ids=[p.id for p in problems],
            embeddings=embedder.embed(texts),
            documents=texts,
            metadatas=[{"department": p.department, "title": p.title, "status": p.status.value} for p in problems],
        )

    # -- history ---------------------------------------------------------------------------
    def add_past_cases(self, cases: Iterable[PastCase]) -> list[PastCase]:
        """Store resolved cases and index them for retrieval at once; returns those that were new.

        Routing learns them at the next retrain (`reindex`, `retrain_router`, or a history import).
        """
        fresh = self.store.add_cases(cases)
        for start in range(0, len(fresh), 1000):
            self.index_cases(fresh[start : start + 1000])
        return fresh

    def import_history(self, cases: Iterable[PastCase], progress: Progress | None = None) -> list[PastCase]:
        """Store a batch of history and rebuild: refit the text model, reindex, retrain routing."""
        fresh = self.store.add_cases(cases)
        if fresh:
            self.reindex(progress)
        return fresh

    def import_corpus(self, texts: Iterable[str]) -> int:
        """Store unlabelled texts for the text model; they take effect at the next reindex."""
        return self.store.add_corpus(texts)

    def index_cases(self, cases: Sequence[PastCase], texts: Sequence[str] | None = None) -> int:
        """Make stored past cases retrievable (texts: their case_text, if already computed)."""
        assert self.embedder is not None
        texts = [case_text(c) for c in cases] if texts is None else texts
        redacted = [
            c.model_copy(
                update={
                    "text": t,
                    "reply": redact(c.reply).text if c.reply else None,
                    "root_cause": redact(c.root_cause).text if c.root_cause else None,
                }
            )
            for c, t in zip(cases, texts, strict=True)
        ]
        self.index.upsert(
            CASES,
            embedder=self.embedder.fingerprint,
            ids=[c.id for c in redacted],
            embeddings=self.embedder.embed([c.text for c in redacted]),
            documents=[c.text for c in redacted],
            metadatas=[_case_meta(c, content_hash(o.text)) for c, o in zip(redacted, cases, strict=True)],
        )
        return len(redacted)

    # -- retrieval -------------------------------------------------------------------------
    def embed_queries(self, texts: Sequence[str], sparse_rows: SparseMatrix | None = None) -> Matrix:
        """Query vectors for redacted texts; reuses TF-IDF rows already computed for routing."""
        assert self.embedder is not None and self.text_model is not None
        if sparse_rows is not None and isinstance(self.embedder, OfflineEmbedder):
            return self.text_model.dense_from_sparse(sparse_rows)
        return self.embedder.embed(texts)

    def search_vectors(self, vectors: Matrix, *, collection: str, k: int) -> list[list[Hit]]:
        assert self.embedder is not None
        return self.index.query(collection, embedder=self.embedder.fingerprint, embeddings=vectors, k=k)

    def search(self, texts: Sequence[str], *, collection: str, k: int) -> list[list[Hit]]:
        """Nearest items per text (texts must already be redacted)."""
        return self.search_vectors(self.embed_queries(texts), collection=collection, k=k)

    def stats(self) -> Stats:
        assert self.embedder is not None and self.router is not None
        return Stats(
            kb_version=self.kb.version,
            departments=len(self.kb.departments),
            typical_problems=len(self.kb.problems),
            service_items=len(self.kb.service_items()),
            past_cases=self.store.count_cases(),
            embedder=self.embedder.fingerprint,
            router=self.router.fingerprint,
            router_history=self.router.n_history,
            data_dir=str(self.data_dir),
            chroma=self.settings.chroma_url or str(self.data_dir / "chroma"),
        )

    def check_ready(self) -> None:
        """Raise VectorStoreError unless both collections answer with the configured embedder."""
        assert self.embedder is not None
        for name in (PROBLEMS, CASES):
            self.index.check(name, embedder=self.embedder.fingerprint)
        if self.index.count(PROBLEMS) != len(self.kb.problems):
            raise VectorStoreError("typical problem collection is out of date; run `triage kb reindex`")


def active_kb(settings: Settings) -> KnowledgeBase:
    """The workspace's knowledge base, seeded from the built-in one on first use (no index needed)."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    kb_path = settings.data_dir / "kb.json"
    if kb_path.exists():
        return KnowledgeBase.from_json(json.loads(kb_path.read_text(encoding="utf-8")))
    kb = knowledge.builtin()
    _write_json(kb_path, kb.to_json())
    log.info("seeded the built-in knowledge base (%s) into %s", kb.version, settings.data_dir)
    return kb


def case_text(case: PastCase) -> str:
    """What routing and retrieval see of a past case: redacted title and text, as for a complaint."""
    text = redact(case.text).text
    return f"{redact(case.title).text}。{text}" if case.title else text


def _case_meta(c: PastCase, text_hash: str) -> dict[str, Any]:
    return {
        "department": c.department,
        "title": c.title,
        "typical_problem_id": c.typical_problem_id,
        "root_cause": c.root_cause,
        "reply": c.reply,
        "channel": c.channel,
        "created_at": c.created_at,
        "source": c.source,
        "text_hash": text_hash,
    }


def case_from_hit_meta(case_id: str, document: str, meta: Any) -> PastCase:
    m = dict(meta or {})
    return PastCase(
        id=case_id,
        text=document,
        department=str(m.get("department", "")),
        title=m.get("title"),
        typical_problem_id=m.get("typical_problem_id"),
        root_cause=m.get("root_cause"),
        reply=m.get("reply"),
        channel=m.get("channel"),
        created_at=m.get("created_at"),
        source=m.get("source", "imported"),
    )


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
