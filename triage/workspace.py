"""A workspace: one data directory holding the knowledge base, the built models and the vector index.

<data_dir>/kb.json                       the knowledge base the next build uses (seeded from the built-in one)
<data_dir>/models/current.json           the live build: its id, its collections, its embedder, when it started
<data_dir>/models/<build>/               that build's kb.json, text_model.joblib and router.joblib
<data_dir>/triage.db                     SQLite: cases, past cases, the corpus (unless a database URL is set)
<data_dir>/chroma/                       embedded Chroma (unless a Chroma server URL is configured)

Opening a workspace loads the live build, or none: it never builds. Building is an explicit step
(`triage kb reindex`, a history or corpus import, `triage serve --demo` on a new workspace), and
`Workspace.models` on a workspace never built raises NotBuiltError saying what to run. A build
writes a new generation beside the live one and switches `current.json` to it in one rename, so an
interrupted build leaves the live one untouched. Other processes on the workspace pick the new
build up through `refresh()` (a watcher thread in long-running processes).

The database is the source of truth; the Chroma collections are an index rebuilt from it.
"""

from __future__ import annotations

import json
import logging
import shutil
import threading
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from triage import knowledge
from triage.access.policy import SYSTEM_ACTOR
from triage.database import Database, database_url
from triage.errors import NotBuiltError, TriageError
from triage.knowledge import KnowledgeBase
from triage.models import PastCase, TypicalProblem
from triage.problems import sync as problem_sync
from triage.redaction import redact
from triage.routing import Router, kb_training_docs
from triage.settings import Settings
from triage.snapshot import Models, settle_heap
from triage.store import HistoryStore, content_hash
from vectorstore import Embedder, OfflineEmbedder, OpenAIEmbedder, TextModel, VectorIndex, make_client
from vectorstore.store import CASES, PROBLEMS, close_client

log = logging.getLogger(__name__)
Progress = Callable[[str, int, int], None]  # (stage, done, total)
BUILD_CATCH_UP = timedelta(minutes=1)  # cases approved this long before a build started are indexed again
WATCH_S = 1.0  # how often a long-running process looks for a build made by another


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
    build: str


class Workspace:
    """Opened by `Workspace.open(settings)`; thread-safe. `models` is the live snapshot."""

    def __init__(self, settings: Settings, client: Any, store: HistoryStore) -> None:
        self.settings = settings
        self.data_dir = settings.data_dir
        self.store = store
        self._client = client
        self._models: Models | None = None
        self._loaded: str | None = None  # current.json as it was when `_models` was loaded
        self._build_lock = threading.Lock()  # one build (or one refresh) at a time in this process
        self._watcher: threading.Thread | None = None
        self._closing = threading.Event()

    @classmethod
    def open(cls, settings: Settings, *, build: bool = False) -> Workspace:
        """Open the workspace (migrating its database) and load its live build; with `build`, build one
        if there is none (the demo and first-time set-up)."""
        active_kb(settings)  # seeds kb.json on first use
        key = settings.chroma_api_key.get_secret_value() if settings.chroma_api_key else None
        db = Database.connect(database_url(settings.database_url, settings.data_dir))
        try:
            client = make_client(path=settings.data_dir / "chroma", url=settings.chroma_url, api_key=key)
        except BaseException:
            db.close()
            raise
        ws = cls(settings, client, HistoryStore(db))
        try:
            ws.refresh()
            if build and ws._models is None:
                ws.reindex()
            # a database new to this workspace gets its typical problems from the live knowledge base
            problem_sync.seed_if_empty(db, ws.kb.problems, actor=SYSTEM_ACTOR)
        except BaseException:
            ws.close()
            raise
        return ws

    def close(self) -> None:
        self._closing.set()
        if self._watcher is not None:
            self._watcher.join(5)
        close_client(self._client)
        self.store.db.close()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- the live snapshot -----------------------------------------------------------------
    @property
    def built(self) -> bool:
        return self._models is not None

    @property
    def models(self) -> Models:
        """The live snapshot; read it once per call and use that one throughout."""
        models = self._models
        if models is None:
            raise NotBuiltError(self._not_built_reason())
        return models

    @property
    def kb(self) -> KnowledgeBase:
        """The live build's knowledge base; before the first build, the one it will use."""
        models = self._models
        return models.kb if models is not None else active_kb(self.settings)

    @property
    def db(self) -> Database:
        return self.store.db

    def _not_built_reason(self) -> str:
        legacy = (self._models_dir / "state.json").exists()
        why = "was built by an earlier version" if legacy else "has not been built"
        return (
            f"the workspace {self.data_dir} {why}; build it with `triage kb reindex` "
            "(or `triage serve --demo`, or `triage history import FILE`)"
        )

    def refresh(self) -> bool:
        """Load the live build if it is not the one loaded (another process built it); True if swapped.
        Cheap when nothing changed: one small file is read."""
        if self._read_current() in (None, self._loaded):
            return False
        with self._build_lock:
            current = self._read_current()  # again: a build of this process may have landed meanwhile
            if current is None or current == self._loaded:
                return False
            state = json.loads(current)
            models = self._load(state)
            first = self._models is None
            self._swap(models, current)
        if not first:  # this process served the replaced build: its approvals may have gone there
            self._catch_up(models, state)
        return True

    def _read_current(self) -> str | None:
        try:
            return (self._models_dir / "current.json").read_text(encoding="utf-8")
        except FileNotFoundError:
            return None

    def watch(self, interval_s: float = WATCH_S) -> None:
        """Refresh on a thread of its own, so no request ever loads models on its way through."""
        if self._watcher is not None:
            return

        def run() -> None:
            while not self._closing.wait(interval_s):
                try:
                    if self.refresh():
                        log.info("loaded build %s made by another process", self.models.build)
                except Exception:
                    log.exception("could not load the workspace's new build; keeping the current one")

        self._watcher = threading.Thread(target=run, name="triage-build-watcher", daemon=True)
        self._watcher.start()

    def use(self, models: Models) -> None:
        """Serve a snapshot made in memory (an evaluation's router without its own test items); not saved."""
        self._models = models

    def _swap(self, models: Models, current: str) -> None:
        self._models, self._loaded = models, current
        settle_heap()  # the new snapshot lives long; the replaced one is freed

    def _load(self, state: dict[str, Any]) -> Models:
        folder = self._models_dir / state["build"]
        kb = KnowledgeBase.from_json(json.loads((folder / "kb.json").read_text(encoding="utf-8")))
        text_model = TextModel.load(folder / "text_model.joblib")
        return Models.assemble(
            build=state["build"],
            kb=kb,
            text_model=text_model,
            router=Router.load(folder / "router.joblib"),
            embedder=self._make_embedder(text_model),
            index=VectorIndex(self._client, prefix=state["collections"]),
        )

    def _catch_up(self, models: Models, state: dict[str, Any]) -> None:
        """Index the cases approved while the build ran: their approval indexed them into the snapshot
        it had, which may have been the one this build replaces."""
        started = datetime.fromisoformat(state["started"]) - BUILD_CATCH_UP
        try:
            recent = self.store.cases_since(started)
            if recent:
                self._index(models, recent)
        except TriageError as exc:  # they stay in the database; the next build indexes them
            log.warning("could not index the cases approved during build %s: %s", models.build, exc)

    # -- building --------------------------------------------------------------------------
    @property
    def _models_dir(self) -> Path:
        return self.data_dir / "models"

    def reindex(self, progress: Progress | None = None) -> Models:
        """Build a new generation from the knowledge base file and the database: refit the text model,
        index typical problems and past cases into new collections, train the router; then switch."""
        report = progress or (lambda stage, done, total: None)
        with self._build_lock:
            started = datetime.now(UTC)
            build = uuid.uuid4().hex[:12]
            kb = self._kb_for_build()
            cases = self.past_cases()
            redacted = [case_text(c) for c in cases]
            curated = [t for t, _ in kb_training_docs(kb)] + sorted(kb.service_items())
            corpus = redacted + [redact(t).text for t in self.store.corpus()]
            report("fitting the text model", 0, 1)
            text_model = TextModel.fit(corpus, curated=curated, dim=self.settings.offline_embedding_dim)
            report("fitting the text model", 1, 1)
            embedder = self._make_embedder(text_model)
            index = VectorIndex(self._client, prefix=f"triage-{build}")
            try:
                index.recreate(PROBLEMS, embedder=embedder.fingerprint)
                index.recreate(CASES, embedder=embedder.fingerprint)
                if kb.problems:
                    _upsert_problems(index, kb.problems, embedder)
                for start in range(0, len(cases), 1000):
                    report("indexing past cases", start, len(cases))
                    _index_into(index, embedder, cases[start : start + 1000], redacted[start : start + 1000])
                report("indexing past cases", len(cases), len(cases))
                report("training the router", 0, 1)
                router = _train(kb, text_model, cases, redacted)
                report("training the router", 1, 1)
                models = Models.assemble(
                    build=build, kb=kb, text_model=text_model, router=router, embedder=embedder, index=index
                )
            except BaseException:  # the live build is untouched; this one's collections go
                self._drop({"build": build, "collections": index.prefix}, keep=set(), keep_collections=set())
                raise
            state = self._publish(models, collections=index.prefix, started=started)
        self._catch_up(models, state)
        log.info("built %s: %d typical problems, %d past cases, %s", build, len(kb.problems), len(cases), embedder)
        return models

    def _kb_for_build(self) -> KnowledgeBase:
        """The knowledge base file's departments with the typical problems of the case database (seeded
        from the file on the first build)."""
        file_kb = active_kb(self.settings)
        problem_sync.seed_if_empty(self.db, file_kb.problems, actor=SYSTEM_ACTOR)
        problems = problem_sync.matchable(self.db, file_kb.department_names)
        return KnowledgeBase(departments=file_kb.departments, problems=problems, version=file_kb.version)

    def refresh_problems(self) -> Models:
        """A new build with the typical problems as the database has them now (after a person confirmed,
        edited, merged or archived one), sharing the live text model, router and collections: only the
        problems that changed are embedded again."""
        with self._build_lock:
            live = self.models
            started = datetime.now(UTC)
            kb = self._kb_for_build()
            old = {p.id: p for p in live.kb.problems}
            changed = [p for p in kb.problems if old.get(p.id) != p]
            gone = [pid for pid in old if pid not in kb.problems_by_id]
            if changed:
                _upsert_problems(live.index, changed, live.embedder)
            if gone:
                live.index.delete(PROBLEMS, ids=gone)
            models = Models.assemble(
                build=uuid.uuid4().hex[:12],
                kb=kb,
                text_model=live.text_model,
                router=live.router,
                embedder=live.embedder,
                index=live.index,
            )
            state = self._publish(models, collections=live.index.prefix, started=started)
        self._catch_up(models, state)
        return models

    def _publish(self, models: Models, *, collections: str, started: datetime) -> dict[str, Any]:
        """Save the build's files, switch current.json to it, swap the snapshot, drop the generation
        before the previous one."""
        folder = self._models_dir / models.build
        folder.mkdir(parents=True, exist_ok=True)
        _write_json(folder / "kb.json", models.kb.to_json())
        models.text_model.save(folder / "text_model.joblib")
        models.router.save(folder / "router.joblib")
        path = self._models_dir / "current.json"
        old = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
        state = {
            "build": models.build,
            "collections": collections,
            "embedder": models.embedder.fingerprint,
            "started": started.isoformat(),
            "previous": {"build": old["build"], "collections": old["collections"]} if old else None,
        }
        text = _write_json(path, state)
        self._swap(models, text)  # what this process wrote, even if another process publishes right after
        (self._models_dir / "state.json").unlink(missing_ok=True)  # an earlier version's marker
        if old and old.get("previous"):
            self._drop(
                old["previous"], keep={models.build, old["build"]}, keep_collections={collections, old["collections"]}
            )
        return state

    def _drop(self, generation: dict[str, str], *, keep: set[str], keep_collections: set[str]) -> None:
        if generation["build"] not in keep:
            shutil.rmtree(self._models_dir / generation["build"], ignore_errors=True)
        if generation["collections"] not in keep_collections:
            old = VectorIndex(self._client, prefix=generation["collections"])
            for name in (PROBLEMS, CASES):
                try:
                    old.drop(name)
                except Exception as exc:  # an index left behind costs disk, not correctness
                    log.warning("could not drop the old collection %s of %s: %s", name, generation["collections"], exc)

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

    # -- knowledge and history -------------------------------------------------------------
    def load_kb(
        self, kb: KnowledgeBase, progress: Progress | None = None, *, with_problems: bool = True
    ) -> problem_sync.SyncReport:
        """Replace the knowledge base and build. With `with_problems`, the typical problems in the case
        database are made to match the file's (see triage.problems.sync); past cases whose department
        left the taxonomy are kept but unused."""
        self.save_kb(kb)
        report = problem_sync.SyncReport()
        if with_problems:
            report = problem_sync.upsert(self.db, kb.problems, actor=SYSTEM_ACTOR)
        self.reindex(progress)
        return report

    def save_kb(self, kb: KnowledgeBase) -> None:
        """The knowledge base the next build uses."""
        _write_json(self.data_dir / "kb.json", kb.to_json())

    def past_cases(self) -> list[PastCase]:
        """Every past case, as stored (original text; redacted only where it leaves the process)."""
        return list(self.store.cases())

    def add_past_cases(self, cases: Iterable[PastCase]) -> list[PastCase]:
        """Store resolved cases and index them for retrieval at once; returns those that were new.

        Routing learns them at the next build (`reindex` or a history import).
        """
        fresh = self.store.add_cases(cases)
        if fresh:
            self.index_cases(fresh)
        return fresh

    def import_history(self, cases: Iterable[PastCase], progress: Progress | None = None) -> list[PastCase]:
        """Store a batch of history and build: refit the text model, reindex, retrain routing."""
        fresh = self.store.add_cases(cases)
        if fresh or not self.built:
            self.reindex(progress)
        return fresh

    def import_corpus(self, texts: Iterable[str]) -> int:
        """Store unlabelled texts for the text model; they take effect at the next build."""
        return self.store.add_corpus(texts)

    def index_cases(self, cases: Sequence[PastCase]) -> int:
        """Make stored past cases retrievable in the live build."""
        return self._index(self.models, cases)

    @staticmethod
    def _index(models: Models, cases: Sequence[PastCase]) -> int:
        for start in range(0, len(cases), 1000):
            _index_into(models.index, models.embedder, cases[start : start + 1000])
        return len(cases)

    def stats(self) -> Stats:
        m = self.models
        return Stats(
            kb_version=m.kb.version,
            departments=len(m.kb.departments),
            typical_problems=len(m.kb.problems),
            service_items=len(m.kb.service_items()),
            past_cases=self.store.count_cases(),
            embedder=m.embedder.fingerprint,
            router=m.router.fingerprint,
            router_history=m.router.n_history,
            data_dir=str(self.data_dir),
            chroma=self.settings.chroma_url or str(self.data_dir / "chroma"),
            build=m.build,
        )


def active_kb(settings: Settings) -> KnowledgeBase:
    """The knowledge base the next build uses, seeded from the built-in one on first use."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    kb_path = settings.data_dir / "kb.json"
    if kb_path.exists():
        return KnowledgeBase.from_json(json.loads(kb_path.read_text(encoding="utf-8")))
    kb = knowledge.builtin()
    _write_json(kb_path, kb.to_json())
    log.info("seeded the built-in knowledge base (%s) into %s", kb.version, settings.data_dir)
    return kb


def _train(kb: KnowledgeBase, model: TextModel, cases: Sequence[PastCase], texts: Sequence[str]) -> Router:
    """Routing trained on the knowledge base and the history (redacted texts, as at triage time)."""
    history = [(t, c.department) for t, c in zip(texts, cases, strict=True)]
    return Router.train(kb=kb, model=model, history=history)


def _upsert_problems(index: VectorIndex, problems: Sequence[TypicalProblem], embedder: Embedder) -> None:
    texts = [redact(p.search_text()).text for p in problems]
    index.upsert(
        PROBLEMS,
        embedder=embedder.fingerprint,
        ids=[p.id for p in problems],
        embeddings=embedder.embed(texts),
        documents=texts,
        metadatas=[{"department": p.department, "title": p.title, "status": p.status.value} for p in problems],
    )


def _index_into(
    index: VectorIndex, embedder: Embedder, cases: Sequence[PastCase], texts: Sequence[str] | None = None
) -> None:
    """Upsert past cases, redacted (texts: their case_text, if already computed)."""
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
    index.upsert(
        CASES,
        embedder=embedder.fingerprint,
        ids=[c.id for c in redacted],
        embeddings=embedder.embed([c.text for c in redacted]),
        documents=[c.text for c in redacted],
        metadatas=[_case_meta(c, content_hash(o.text)) for c, o in zip(redacted, cases, strict=True)],
    )


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


def _write_json(path: Path, data: Any) -> str:
    """Write JSON atomically (a rename); returns the text written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".{uuid.uuid4().hex[:8]}.tmp")
    text = json.dumps(data, ensure_ascii=False, indent=1)
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)
    return text
