"""Real Chroma (embedded and server), similarity not distance, embedder bookkeeping."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from tests.conftest import complaint, free_port, running_chroma_server
from tests.fakes.openai_server import ScriptedOpenAI
from triage.errors import EmbedderMismatchError, VectorStoreError
from triage.models import PastCase
from triage.pipeline import TriagePipeline
from triage.services import build_services
from triage.settings import Settings
from triage.workspace import Workspace
from vectorstore import VectorIndex, make_client
from vectorstore.store import CASES, HNSW_SYNC_THRESHOLD, PROBLEMS


def test_collections_use_cosine_and_return_similarity(tmp_path: Path) -> None:
    index = VectorIndex(make_client(path=tmp_path / "chroma"))
    index.recreate("unit", embedder="fake:1")
    vectors = np.eye(4, dtype=np.float32)
    vectors[3] = [-1, 0, 0, 0]  # opposite of the first
    index.upsert(
        "unit",
        embedder="fake:1",
        ids=list("abcd"),
        embeddings=vectors,
        documents=list("abcd"),
        metadatas=[{"department": "x"}] * 4,
    )
    hits = index.query("unit", embedder="fake:1", embeddings=vectors[:1], k=4)[0]
    assert hits[0].id == "a" and hits[0].similarity == pytest.approx(1.0, abs=1e-5)
    assert {h.id: h.similarity for h in hits}["b"] == pytest.approx(0.0, abs=1e-5)
    assert {h.id: h.similarity for h in hits}["d"] == 0.0  # distance 2 clipped, never negative
    col = index.check("unit", embedder="fake:1")
    assert col.configuration["hnsw"]["space"] == "cosine"
    assert col.configuration["hnsw"]["sync_threshold"] == HNSW_SYNC_THRESHOLD


def openai_embedding_settings(data_dir: Path, server: ScriptedOpenAI) -> Settings:
    return Settings(
        data_dir=data_dir,
        embeddings="openai",
        embedding_model="fake-embed",
        embedding_base_url=server.base_url,
        embedding_api_key="sk-test",
    )


def test_a_collection_built_with_chromas_default_sync_threshold_is_tuned_when_opened(tmp_path: Path) -> None:
    client = make_client(path=tmp_path / "chroma")
    old = client.create_collection(
        "triage_unit",
        configuration={"hnsw": {"space": "cosine"}},
        metadata={"embedder": "fake:1"},
        embedding_function=None,
    )
    assert old.configuration["hnsw"]["sync_threshold"] == 1000  # Chroma's default
    col = VectorIndex(client).check("unit", embedder="fake:1")
    assert col.configuration["hnsw"]["sync_threshold"] == HNSW_SYNC_THRESHOLD
    again = make_client(path=tmp_path / "chroma").get_collection("triage_unit", embedding_function=None)
    assert again.configuration["hnsw"]["sync_threshold"] == HNSW_SYNC_THRESHOLD  # stored, not only in memory


def test_querying_with_another_embedder_names_reindex(workspace_dir: Path, llm_server: ScriptedOpenAI) -> None:
    settings = openai_embedding_settings(workspace_dir, llm_server)
    pipeline = build_services(settings).pipeline
    with pytest.raises(EmbedderMismatchError) as info:
        pipeline.triage(complaint("社保卡补办太慢"))
    assert "triage kb reindex" in str(info.value)
    assert info.value.built_with.startswith("offline:") and info.value.configured.startswith("openai:fake-embed")


def test_openai_embeddings_after_reindex_and_no_pii_sent(workspace_dir: Path, llm_server: ScriptedOpenAI) -> None:
    settings = openai_embedding_settings(workspace_dir, llm_server)
    offline = Workspace.open(Settings(data_dir=workspace_dir))
    offline.add_past_cases([PastCase(id="C1", text="手机13912345678的张先生反映社保卡补办慢", department="市人社局")])
    ws = Workspace.open(settings)
    ws.reindex()  # re-embeds typical problems and the past case through the endpoint
    assert ws.models.index.count(CASES) == 1
    assert ws.models.index.built_with(PROBLEMS) == "openai:fake-embed@" + llm_server.base_url
    draft = TriagePipeline.from_settings(settings, ws).triage(complaint("我的电话13812345678，社保卡补办太慢"))
    assert draft.department in ws.kb.by_name
    sent = b"".join(llm_server.raw_bodies).decode()
    assert "13812345678" not in sent and "13912345678" not in sent
    assert any(r["path"].endswith("/embeddings") for r in llm_server.requests)


def test_past_cases_are_retrieved_as_evidence_and_stored_redacted(workspace_dir: Path) -> None:
    settings = Settings(data_dir=workspace_dir)
    ws = Workspace.open(settings)
    ws.add_past_cases(
        [
            PastCase(
                id="H1",
                text="小区电梯坏了三个月物业不修，联系13812345678",
                department="市住建委",
                root_cause="维修资金申请流程长",
                reply="已督促物业维修",
            ),
        ]
    )
    assert ws.past_cases()[0].text.endswith("13812345678")  # the database keeps the original
    indexed = list(ws.models.index.all_documents(CASES))
    assert indexed[0][1] == "小区电梯坏了三个月物业不修，联系[手机号]"  # the index holds redacted text
    draft = TriagePipeline.from_settings(settings, ws).triage(complaint("我们小区电梯坏了好几个月，物业一直拖着不修"))
    evidence = [e for e in draft.evidence if e.kind == "past_case"]
    assert evidence and evidence[0].id == "H1" and 0 < evidence[0].similarity <= 1


@pytest.fixture
def chroma_server(tmp_path: Path) -> Iterator[str]:
    with running_chroma_server(tmp_path / "server-data") as url:
        yield url


def test_chroma_server_mode(tmp_path: Path, chroma_server: str) -> None:
    settings = Settings(data_dir=tmp_path / "ws", chroma_url=chroma_server)
    ws = Workspace.open(settings, build=True)
    assert not (tmp_path / "ws" / "chroma").exists()  # nothing embedded
    assert ws.models.index.count(PROBLEMS) == len(ws.kb.problems)
    ws.add_past_cases([PastCase(id="S1", text="出入境预约暑假约不到号", department="市公安局")])
    assert ws.models.index.count(CASES) == 1
    cases = ws.models.index.check(CASES, embedder=ws.models.embedder.fingerprint)
    assert cases.configuration["hnsw"]["sync_threshold"] == HNSW_SYNC_THRESHOLD
    draft = TriagePipeline.from_settings(settings, ws).triage(complaint("暑假办护照预约不到号"))
    ws.close()
    assert draft.department == "市公安局"
    assert draft.typical_problem is not None and draft.typical_problem.id == "TP-GA-001"


def test_unreachable_chroma_server_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(VectorStoreError) as info:
        Workspace.open(Settings(data_dir=tmp_path, chroma_url=f"http://127.0.0.1:{free_port()}"))
    assert "vector store failed to connect" in str(info.value)
