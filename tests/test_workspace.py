"""The workspace: opening never builds, a build is a new generation swapped in by reference, and the
database is the source of truth."""

from __future__ import annotations

import gc
import json
import shutil
import threading
import weakref
from pathlib import Path

import pytest

from triage.cases.actions import CaseActions
from triage.cases.decisions import Decisions
from triage.drafting import DraftContext, DraftResult
from triage.errors import NotBuiltError, VectorStoreError
from triage.models import PastCase
from triage.pipeline import TriagePipeline
from triage.services import deadlines_from
from triage.settings import Settings
from triage.snapshot import settle_heap
from triage.workspace import Workspace
from vectorstore.store import CASES, PROBLEMS

from .conftest import complaint


def test_opening_a_new_workspace_builds_nothing_and_says_what_to_run(tmp_path: Path) -> None:
    with Workspace.open(Settings(data_dir=tmp_path)) as ws:
        assert not ws.built
        assert ws.kb.department_names  # the knowledge base the first build will use is readable
        with pytest.raises(NotBuiltError, match="triage kb reindex"):
            ws.models  # noqa: B018
    assert not (tmp_path / "models").exists()


def test_a_workspace_of_an_earlier_version_is_not_rebuilt_behind_the_users_back(tmp_path: Path) -> None:
    (tmp_path / "models").mkdir()
    (tmp_path / "models" / "state.json").write_text(json.dumps({"status": "building"}), encoding="utf-8")
    with Workspace.open(Settings(data_dir=tmp_path)) as ws, pytest.raises(NotBuiltError) as info:
        ws.models  # noqa: B018
    assert "earlier version" in str(info.value) and "triage kb reindex" in str(info.value)
    assert not (tmp_path / "models" / "current.json").exists()


def test_an_interrupted_build_leaves_the_live_one_serving(workspace_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(data_dir=workspace_dir)
    current = (workspace_dir / "models" / "current.json").read_text(encoding="utf-8")

    def killed(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt  # as if the process were stopped while training

    with Workspace.open(settings) as ws:
        live = ws.models.build
        monkeypatch.setattr("triage.workspace._train", killed)
        with pytest.raises(KeyboardInterrupt):
            ws.reindex()
        assert ws.models.build == live
    assert (workspace_dir / "models" / "current.json").read_text(encoding="utf-8") == current
    with Workspace.open(settings) as ws:
        assert ws.models.build == live
        ws.models.check_ready()


def test_lost_index_is_rebuilt_from_the_database(workspace_dir: Path) -> None:
    settings = Settings(data_dir=workspace_dir)
    with Workspace.open(settings) as ws:
        ws.add_past_cases(
            [PastCase(id=f"W{i}", text=f"第{i}次反映公积金提取被退回", department="市公积金中心") for i in range(3)]
        )
    shutil.rmtree(workspace_dir / "chroma")
    with Workspace.open(settings) as ws:
        with pytest.raises(VectorStoreError, match="triage kb reindex"):
            ws.models.check_ready()
        ws.reindex()
        assert ws.models.index.count(CASES) == 3
        assert {c.id for c in ws.past_cases()} == {"W0", "W1", "W2"}


def test_another_processs_build_is_picked_up_and_the_old_generation_outlives_one_build(workspace_dir: Path) -> None:
    settings = Settings(data_dir=workspace_dir)
    with Workspace.open(settings) as api, Workspace.open(settings) as admin:
        first = api.models
        second = admin.reindex()
        assert api.models is first  # until it looks
        assert api.refresh()  # swapped by reference
        assert api.models.build == second.build and api.models is not first
        # a call that took the old snapshot before the swap still finds its collections
        assert first.search(["公积金提取"], collection=PROBLEMS, k=1)[0]
        third = admin.reindex()
        api.refresh()
        assert api.models.build == third.build
        second.search(["公积金提取"], collection=PROBLEMS, k=1)  # the previous generation is kept
        with pytest.raises(VectorStoreError):  # the one before it is dropped
            first.search(["公积金提取"], collection=PROBLEMS, k=1)
        assert not (workspace_dir / "models" / first.build).exists()


def test_cases_approved_while_a_build_runs_are_in_the_new_index(workspace_dir: Path) -> None:
    settings = Settings(data_dir=workspace_dir)
    with Workspace.open(settings) as ws:
        old = ws.models
        built = threading.Event()
        original = ws.past_cases

        def read_then_approve() -> list[PastCase]:
            cases = original()  # the build has read the history ...
            ws.add_past_cases([PastCase(id="LATE", text="公积金提取被退回三次", department="市公积金中心")])
            built.set()  # ... and a case approved meanwhile went into the old generation
            return cases

        ws.past_cases = read_then_approve  # type: ignore[method-assign]
        new = ws.reindex()
        assert built.is_set() and new is not old
        assert "LATE" in {h.id for h in new.search(["公积金提取被退回三次"], collection=CASES, k=3)[0]}


class _HeldDrafter:
    """A drafter that holds its call until released, as a slow LLM endpoint does."""

    def __init__(self, inner: TriagePipeline) -> None:
        self.inner = inner
        self.entered = threading.Event()
        self.release = threading.Event()

    def prompt_tokens(self, ctx: DraftContext) -> int:
        return 0

    def draft(self, ctx: DraftContext) -> DraftResult:
        self.entered.set()
        assert self.release.wait(30)
        return self.inner.offline.draft(ctx)


def test_a_rebuild_and_a_department_check_never_wait_for_drafting_in_flight(workspace_dir: Path) -> None:
    settings = Settings(data_dir=workspace_dir)
    with Workspace.open(settings) as ws:
        held = _HeldDrafter(TriagePipeline(ws))
        pipeline = TriagePipeline(ws, llm=held)
        decisions = Decisions(ws.db, pipeline, ws, actions=CaseActions(ws.db), deadlines=deadlines_from(settings))
        before = ws.models
        drafts: list[object] = []
        drafting = threading.Thread(target=lambda: drafts.append(pipeline.triage(complaint("公积金提取被退回"))))
        drafting.start()
        try:
            assert held.entered.wait(30)
            rebuilt = ws.reindex()  # with the old read lock, this waited for the drafting call
            assert decisions.check_department("市公积金中心") == "市公积金中心"
            assert ws.models is rebuilt is not before
            assert drafting.is_alive()
        finally:
            held.release.set()
            drafting.join(30)
        assert len(drafts) == 1  # drafted on the snapshot it started with, to the end


class _Model:
    """Stands in for loaded models; it refers to itself, so only the cyclic collector can free it."""

    def __init__(self) -> None:
        self.me = self


def test_settle_heap_hides_what_is_alive_from_full_collections_and_frees_it_once_replaced() -> None:
    model = _Model()
    alive = weakref.ref(model)
    try:
        settle_heap()
        assert gc.get_freeze_count() > 0
        del model
        gc.collect()
        assert alive() is not None  # frozen: full collections no longer walk it
        settle_heap()  # as after loading new models: what was frozen before is collected first
        assert alive() is None
    finally:
        gc.unfreeze()
