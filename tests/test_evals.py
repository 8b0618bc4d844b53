"""`triage eval run | compare | rubric` on small labelled files, end to end."""

from __future__ import annotations

import base64
import itertools
import json
import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from evals.reply_quality import score_reply
from evals.report import cjk_font
from tests.conftest import ROOT, llm_settings
from tests.fakes.openai_server import ScriptedOpenAI, Step
from triage.cli import cli

TEST_SET = ROOT / "evals" / "datasets" / "shanghai_test.jsonl"
HISTORY_SET = ROOT / "evals" / "datasets" / "shanghai_history.jsonl"


def run(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def small_set(tmp_path: Path, n: int = 24) -> Path:
    rows = [json.loads(line) for line in TEST_SET.read_text(encoding="utf-8").splitlines()[:n]]
    rows.append({"id": "BAD1", "text": "  ", "gold_department": "市公安局"})
    rows.append({"id": "BAD2", "text": "有投诉", "gold_department": "市外星局"})
    path = tmp_path / "set.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def test_eval_run_writes_predictions_metrics_and_report(workspace_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    code, stdout, stderr = run(workspace_dir, "eval", "run", str(small_set(tmp_path)), "--out", str(out))
    assert code == 0, stderr
    assert re.search(r"n=24 accuracy=\d\.\d{4} macro_f1=", stdout)
    predictions = [json.loads(line) for line in (out / "predictions.jsonl").read_text("utf-8").splitlines()]
    assert len(predictions) == 24
    for p in predictions:
        assert {
            "id",
            "gold_department",
            "department",
            "confidence",
            "top_departments",
            "typical_problem_id",
            "drafted_by",
            "latency_ms",
        } <= p.keys()
        assert len(p["top_departments"]) == 3
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    for key in (
        "n",
        "accuracy",
        "macro_f1",
        "top3_accuracy",
        "per_department",
        "coverage_curve",
        "typical_problem",
        "reply_quality",
        "latency_ms",
        "tokens",
    ):
        assert key in metrics
    assert metrics["accuracy"] == round(sum(p["correct"] for p in predictions) / 24, 4)
    assert {"hit_at_1", "hit_at_3"} <= metrics["typical_problem"].keys()
    curve = metrics["coverage_curve"]
    assert curve[0]["threshold"] == 0.0 and curve[0]["coverage"] == 1.0
    assert all(a["coverage"] >= b["coverage"] for a, b in itertools.pairwise(curve))
    reasons = {i["id"]: i["reason"] for i in metrics["invalid"]}
    assert metrics["n_invalid"] == 2 and "unknown gold department '市外星局'" in reasons["BAD2"]
    assert "must not be empty" in reasons["BAD1"]
    report = (out / "report.html").read_text("utf-8")
    images = re.findall(r"data:image/png;base64,([A-Za-z0-9+/=]+)", report)
    assert len(images) == 4 and all(base64.b64decode(i).startswith(b"\x89PNG") for i in images)
    assert "Worst errors" in report


def test_workers_give_the_same_predictions_in_the_same_order(workspace_dir: Path, tmp_path: Path) -> None:
    path = small_set(tmp_path, n=8)
    for workers in ("1", "3"):
        code, _, err = run(
            workspace_dir, "eval", "run", str(path), "--out", str(tmp_path / workers), "--workers", workers
        )
        assert code == 0, err
    one, three = (
        [
            (p["id"], p["department"])
            for p in map(json.loads, (tmp_path / w / "predictions.jsonl").read_text("utf-8").splitlines())
        ]
        for w in ("1", "3")
    )
    assert one == three and len(one) == 8


def test_a_cjk_font_is_available_for_report_labels() -> None:
    assert cjk_font() is not None


def test_items_are_never_their_own_evidence(workspace_dir: Path, tmp_path: Path) -> None:
    path = small_set(tmp_path, n=10)
    rows = [json.loads(line) for line in path.read_text("utf-8").splitlines()[:10]]
    history = tmp_path / "overlap.jsonl"  # the same items as history, some under other ids
    history.write_text(
        "".join(
            json.dumps({**r, "id": r["id"] if i % 2 else f"other-{i}"}, ensure_ascii=False) + "\n"
            for i, r in enumerate(rows)
        ),
        encoding="utf-8",
    )
    run(workspace_dir, "history", "import", str(history))
    out = tmp_path / "run"
    run(workspace_dir, "eval", "run", str(path), "--out", str(out))
    metrics = json.loads((out / "metrics.json").read_text("utf-8"))
    assert metrics["run"]["history_overlap_excluded"] == 10
    assert metrics["run"]["history_cases"] == 0
    _code, stdout, _ = run(workspace_dir, "triage", rows[0]["text"])
    assert any(e["kind"] == "past_case" for e in json.loads(stdout)["evidence"])  # outside eval they are evidence


def test_missing_columns_name_the_field(workspace_dir: Path, tmp_path: Path) -> None:
    path = tmp_path / "x.csv"
    path.write_text("留言,标签\n文本,市公安局\n", encoding="utf-8")
    code, _, err = run(workspace_dir, "eval", "run", str(path), "--out", str(tmp_path / "r"))
    assert code == 2 and "missing required field(s) text, department; columns found: 留言, 标签" in err
    code, _, err = run(
        workspace_dir,
        "eval",
        "run",
        str(path),
        "--out",
        str(tmp_path / "r"),
        "--map",
        "text=留言",
        "--map",
        "department=标签",
        "--limit",
        "1",
    )
    assert code == 0, err


def test_compare_prints_deltas_changed_items_and_gates(workspace_dir: Path, tmp_path: Path) -> None:
    path = small_set(tmp_path, n=40)
    run(workspace_dir, "eval", "run", str(path), "--out", str(tmp_path / "a"))
    run(workspace_dir, "history", "import", str(HISTORY_SET))
    run(workspace_dir, "eval", "run", str(path), "--out", str(tmp_path / "b"))
    code, out, _ = run(workspace_dir, "eval", "compare", str(tmp_path / "a"), str(tmp_path / "b"))
    assert code == 0 and "macro_f1" in out and "item(s) changed department" in out
    a = json.loads((tmp_path / "a" / "metrics.json").read_text("utf-8"))
    b = json.loads((tmp_path / "b" / "metrics.json").read_text("utf-8"))
    changed = sum(
        1
        for x, y in zip(
            (
                json.loads(line)["department"]
                for line in (tmp_path / "a" / "predictions.jsonl").read_text("utf-8").splitlines()
            ),
            (
                json.loads(line)["department"]
                for line in (tmp_path / "b" / "predictions.jsonl").read_text("utf-8").splitlines()
            ),
            strict=True,
        )
        if x != y
    )
    assert f"{changed} item(s) changed department" in out
    # A gate that the runs cannot fail, and one they must: compare a run with itself after faking a drop.
    code, _, _ = run(
        workspace_dir, "eval", "compare", str(tmp_path / "a"), str(tmp_path / "a"), "--max-drop", "macro_f1=0"
    )
    assert code == 0
    worse = tmp_path / "worse"
    worse.mkdir()
    (worse / "predictions.jsonl").write_text((tmp_path / "a" / "predictions.jsonl").read_text("utf-8"), "utf-8")
    (worse / "metrics.json").write_text(json.dumps({**a, "macro_f1": a["macro_f1"] - 0.05}), "utf-8")
    code, _, err = run(workspace_dir, "eval", "compare", str(tmp_path / "a"), str(worse), "--max-drop", "macro_f1=0.02")
    assert code == 1 and "GATE FAILED: macro_f1 dropped by 0.0500" in err
    code, _, err = run(workspace_dir, "eval", "compare", str(tmp_path / "a"), str(worse), "--max-drop", "nonsense=1")
    assert code == 2 and "unknown metric 'nonsense'" in err
    assert b["n"] == a["n"]


@pytest.mark.parametrize(
    ("reply", "failed"),
    [
        (
            "您好！感谢您反映社保卡补办慢的问题。该事项由市人社局负责，我们将在5个工作日内核实并联系您，"
            "如有疑问可拨打12333咨询。",
            set(),
        ),
        (
            "已收到。",
            {
                "polite",
                "restates_issue",
                "names_department",
                "next_step_with_time",
                "contact_channel",
                "sensible_length",
            },
        ),
        (
            "您好，关于社保卡补办慢的问题，请联系[某部门]，该部门将在3个工作日内核实处理并回复您，咨询电话12345，谢谢您的反映和支持。",
            {"no_placeholder"},
        ),
        (
            "您好，您反映的社保卡补办慢问题已转市人社局核实，将在5个工作日内联系您的手机13812345678，您也可拨打12345查询。",
            {"no_pii"},
        ),
    ],
)
def test_reply_rubric(reply: str, failed: set[str]) -> None:
    complaint = "社保卡补办太慢了，要等一个月，我的手机13812345678"
    score = score_reply(reply, complaint, ["市人社局"])
    assert {k for k, ok in score.passed.items() if not ok} == failed
    assert score.score == pytest.approx(1 - len(failed) / 8, abs=1e-4)
    assert len(score.reasons) == len(failed)


def test_rubric_calibration_reports_agreement(workspace_dir: Path, tmp_path: Path) -> None:
    rows = [
        {
            "text": "小区电梯坏了",
            "reply": "您好！关于小区电梯坏了的问题，市住建委已督促物业在3个工作日内维修，如有疑问请拨打12345。",
            "ok": "是",
        },
        {"text": "小区电梯坏了", "reply": "您好，已转相关部门。", "ok": "否"},
    ]
    path = tmp_path / "replies.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    code, out, _ = run(workspace_dir, "eval", "rubric", str(path), "--label", "ok")
    result = json.loads(out)
    assert code == 0 and result["ok"]["auc"] == 1.0 and result["ok"]["n_yes"] == 1


def test_llm_mode_and_judge_against_the_scripted_server(
    workspace_dir: Path, tmp_path: Path, llm_server: ScriptedOpenAI
) -> None:
    from evals.runner import run_eval

    good = {
        "department": "市公安局",
        "typical_problem_id": None,
        "root_cause": "号源不足。",
        "reply": "您好！您反映的问题已转市公安局，将在5个工作日内答复，咨询请拨打12345。",
        "confidence": 0.8,
    }
    judged = {"relevance": 5, "logic": 4, "resolution": 3, "timeliness": 5, "attitude": 5, "comment": "较好"}
    llm_server.default = Step.answer(good)
    rows = [{"id": "L1", "text": "暑假办港澳通行证约不到号", "department": "市公安局"}]
    path = tmp_path / "one.jsonl"
    path.write_text(json.dumps(rows[0], ensure_ascii=False) + "\n", encoding="utf-8")
    llm_server.script.extend([Step.answer(good), Step.answer(judged)])
    metrics = run_eval(
        settings=llm_settings(workspace_dir, llm_server), dataset=path, out=tmp_path / "r", mode="llm", judge=True
    )
    assert metrics["drafted_by"] == {"llm:scripted-model": 1}
    assert metrics["tokens"]["prompt"] > 0
    assert metrics["reply_quality"]["llm_judge"]["relevance"] == 1.0
    assert metrics["reply_quality"]["llm_judge"]["logic"] == 0.75
