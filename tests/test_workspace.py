"""The workspace: the database is the source of truth, an interrupted rebuild is redone."""

from __future__ import annotations

import gc
import json
import shutil
import weakref
from pathlib import Path

from triage.models import PastCase
from triage.settings import Settings
from triage.workspace import Workspace, settle_heap
from vectorstore.store import CASES


def test_interrupted_rebuild_is_redone_on_open(workspace_dir: Path) -> None:
    settings = Settings(data_dir=workspace_dir)
    with Workspace.open(settings) as ws:
        ws.add_past_cases([PastCase(id="W1", text="小区电梯坏了三个月物业不修", department="市住建委")])
    state = workspace_dir / "models" / "state.json"
    state.write_text(json.dumps({"status": "building"}), encoding="utf-8")  # as if killed mid-rebuild
    with Workspace.open(settings) as ws:
        assert json.loads(state.read_text(encoding="utf-8"))["status"] == "ready"
        assert ws.index.count(CASES) == 1


def test_lost_index_is_rebuilt_from_the_database(workspace_dir: Path) -> None:
    settings = Settings(data_dir=workspace_dir)
    with Workspace.open(settings) as ws:
        ws.add_past_cases(
            [PastCase(id=f"W{i}", text=f"第{i}次反映公积金提取被退回", department="市公积金中心") for i in range(3)]
        )
    shutil.rmtree(workspace_dir / "chroma")
    with Workspace.open(settings) as ws:
        assert ws.index.count(CASES) == 3
        assert {c.id for c in ws.past_cases()} == {"W0", "W1", "W2"}


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
