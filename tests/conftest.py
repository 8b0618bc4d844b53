from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.openai_server import ScriptedOpenAI
from triage.models import Complaint
from triage.pipeline import TriagePipeline
from triage.settings import Settings
from triage.workspace import Workspace

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("TRIAGE_SHARED_DIR", ROOT.parent / "shared"))


@pytest.fixture(scope="session", autouse=True)
def tiktoken_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path | None]:
    """A writable copy of the shared tiktoken encodings (tiktoken deletes files it distrusts)."""
    source = SHARED / "tiktoken"
    target = tmp_path_factory.mktemp("tiktoken")
    if source.is_dir():
        for f in source.iterdir():
            if f.is_file() and len(f.name) == 40:
                shutil.copy(f, target / f.name)
    old = os.environ.get("TIKTOKEN_CACHE_DIR")
    os.environ["TIKTOKEN_CACHE_DIR"] = str(target)
    yield target if any(target.iterdir()) else None
    if old is None:
        os.environ.pop("TIKTOKEN_CACHE_DIR", None)
    else:
        os.environ["TIKTOKEN_CACHE_DIR"] = old


@pytest.fixture(autouse=True)
def _no_triage_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests build Settings explicitly; a developer's TRIAGE_* variables or .env must not leak in."""
    for key in list(os.environ):
        if key.startswith("TRIAGE_") and key != "TRIAGE_SHARED_DIR":
            monkeypatch.delenv(key)
    monkeypatch.chdir(ROOT / "tests")  # no .env here


@pytest.fixture(scope="session")
def builtin_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workspace seeded with the built-in knowledge base, built once; copy it before mutating."""
    path = tmp_path_factory.mktemp("builtin-ws")
    Workspace.open(Settings(data_dir=path))
    return path


@pytest.fixture
def workspace_dir(builtin_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the built-in workspace."""
    target = tmp_path / "ws"
    shutil.copytree(builtin_dir, target)
    return target


@pytest.fixture(scope="session")
def offline_pipeline(builtin_dir: Path) -> TriagePipeline:
    """Read-only offline pipeline on the shared built-in workspace."""
    return TriagePipeline.from_settings(Settings(data_dir=builtin_dir))


@pytest.fixture
def llm_server() -> Iterator[ScriptedOpenAI]:
    server = ScriptedOpenAI().start()
    yield server
    server.stop()


def llm_settings(data_dir: Path, server: ScriptedOpenAI, **extra: object) -> Settings:
    values: dict[str, object] = {
        "data_dir": data_dir,
        "llm_model": "scripted-model",
        "llm_base_url": server.base_url,
        "llm_api_key": "sk-test",
        "llm_timeout_s": 2.0,
        "llm_max_retries": 1,
    }
    values.update(extra)
    return Settings(**values)  # type: ignore[arg-type]


def complaint(text: str, **fields: object) -> Complaint:
    return Complaint.model_validate({"text": text, **fields})
