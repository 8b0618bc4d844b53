"""The command line: JSON output, files with bad lines, knowledge-base commands, the demo."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from tests.conftest import ROOT
from triage.cli import cli


def run(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def test_triage_text_prints_a_draft_as_json(workspace_dir: Path) -> None:
    code, out, _ = run(workspace_dir, "triage", "车管所换驾照体检信息查不到", "--channel", "12345")
    assert code == 0
    draft = json.loads(out)
    assert draft["department"] == "市公安局"
    assert {
        "top_departments",
        "typical_problem",
        "root_cause",
        "reply",
        "confidence",
        "evidence",
        "drafted_by",
        "prompt_version",
        "fallback_reason",
        "tokens",
    } <= draft.keys()


def test_file_with_bad_lines_reports_them_processes_the_rest_and_fails(workspace_dir: Path, tmp_path: Path) -> None:
    lines = [
        json.dumps({"id": "A1", "text": "社保卡补办要等一个月"}, ensure_ascii=False),
        "{not json",
        json.dumps({"id": "A3", "text": "   "}, ensure_ascii=False),
        json.dumps({"id": "A4", "text": "公积金提取被退回", "channel": "微博"}, ensure_ascii=False),
        "",
        json.dumps({"id": "A6", "text": "个税退税一直在审核中", "channel": "好差评"}, ensure_ascii=False),
    ]
    path = tmp_path / "complaints.jsonl"
    path.write_bytes(("\n".join(lines) + "\n").encode() + b'{"text": "\xb9\xab\xbb\xfd\xbd\xf0"}\n')  # GBK line
    code, out, err = run(workspace_dir, "triage", "--file", str(path))
    assert code == 1
    drafts = [json.loads(line) for line in out.splitlines()]
    assert [(d["line"], d["external_id"]) for d in drafts] == [(1, "A1"), (6, "A6")]
    assert "line 2: malformed JSON" in err
    assert "line 3: field 'text': must not be empty" in err
    assert "line 4: field 'channel': unknown channel '微博'" in err
    assert "line 7: not valid UTF-8" in err
    assert "Traceback" not in err
    assert "4 line(s) skipped" in err


def test_missing_file_and_missing_text_are_clear_errors(workspace_dir: Path, tmp_path: Path) -> None:
    code, _, err = run(workspace_dir, "triage", "--file", str(tmp_path / "nope.jsonl"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(workspace_dir, "triage")
    assert code == 2 and "give either a complaint TEXT or --file" in err
    code, _, err = run(workspace_dir, "triage", "   ")
    assert code == 2 and "field 'text': must not be empty" in err


def test_kb_stats_search_and_reindex(workspace_dir: Path) -> None:
    code, out, _ = run(workspace_dir, "kb", "stats")
    stats = json.loads(out)
    assert code == 0 and stats["departments"] == 18 and stats["typical_problems"] >= 42
    assert stats["service_items"] >= 120 and stats["embedder"].startswith("offline:")
    code, out, _ = run(workspace_dir, "kb", "search", "港澳通行证预约不到号", "-k", "3")
    assert code == 0 and "TP-GA-001" in out.splitlines()[1]
    code, out, _ = run(workspace_dir, "kb", "reindex")
    assert code == 0 and "reindexed" in out


def test_kb_load_custom_taxonomy_without_typical_problems(workspace_dir: Path, tmp_path: Path) -> None:
    departments = [
        {"name": "城乡建设", "description": "住房、物业、城市建设、市政设施、拆迁安置"},
        {"name": "劳动和社会保障", "description": "社保、养老保险、工资拖欠、劳动合同、就业"},
        {"name": "教育文体", "description": "学校、入学、教师、培训机构、体育文化"},
        {"name": "商贸旅游", "description": "市场经营、消费、旅游景区、商户"},
        {"name": "卫生计生", "description": "医院、医疗、计划生育、疫苗"},
        {"name": "环境保护", "description": "污染、噪音、排污、空气、水质"},
        {"name": "交通运输", "description": "公交、出租车、道路、驾驶、货运"},
    ]
    path = tmp_path / "departments.json"
    path.write_text(json.dumps(departments, ensure_ascii=False), encoding="utf-8")
    code, out, _ = run(workspace_dir, "kb", "load", "--departments", str(path))
    assert code == 0 and "0 typical problems in use" in out
    code, out, _ = run(workspace_dir, "triage", "工厂晚上偷偷排污，河水发黑发臭")
    draft = json.loads(out)
    assert code == 0
    assert draft["department"] == "环境保护"
    assert {s["department"] for s in draft["top_departments"]} <= {d["name"] for d in departments}
    assert draft["typical_problem"] is None and draft["no_match_reason"] == "no typical problems in the knowledge base"
    assert draft["reply"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('[{"name": ""}]', "field 'name'"),
        ("departments: 3", "expected a list of departments"),
        ("[{'name': 'x'", "cannot parse"),
    ],
)
def test_kb_load_rejects_bad_files_and_keeps_the_old_kb(
    workspace_dir: Path, tmp_path: Path, content: str, message: str
) -> None:
    path = tmp_path / "deps.yaml"
    path.write_text(content, encoding="utf-8")
    code, _, err = run(workspace_dir, "kb", "load", "--departments", str(path))
    assert code == 3 and message in err
    _, out, _ = run(workspace_dir, "kb", "stats")
    assert json.loads(out)["departments"] == 18


def test_kb_load_rejects_a_problem_with_an_unknown_department(workspace_dir: Path, tmp_path: Path) -> None:
    deps = tmp_path / "d.yaml"
    deps.write_text("- name: 甲局\n- name: 乙局\n", encoding="utf-8")
    probs = tmp_path / "p.yaml"
    probs.write_text("- {id: P1, title: 问题, department: 丙局}\n", encoding="utf-8")
    code, _, err = run(workspace_dir, "kb", "load", "--departments", str(deps), "--problems", str(probs))
    assert code == 3 and "typical problem P1: department '丙局' is not in the departments file" in err


def test_demo_and_module_entry_point_on_a_fresh_data_dir(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "triage", "--data-dir", str(tmp_path / "fresh"), "demo"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=300,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].split()[:4] == ["id", "渠道", "投诉", "责任部门"]
    assert sum(1 for line in lines if line.startswith("DEMO-") and "根因" not in line) == 10
    assert "答复初稿" in proc.stdout


def test_users_add_list_key_and_revoke(workspace_dir: Path) -> None:
    code, key, err = run(workspace_dir, "users", "add", "李四", "--role", "caseworker", "--department", "公安局")
    assert code == 0 and key.strip().startswith("tk_") and "市公安局" in err  # alias resolved to the canonical name
    code, _, err = run(workspace_dir, "users", "add", "李四", "--role", "supervisor")
    assert code == 2 and "field 'name'" in err and "already exists" in err
    code, _, err = run(workspace_dir, "users", "add", "王五", "--role", "caseworker", "--department", "市魔法局")
    assert code == 2 and "field 'departments'" in err and "市公安局" in err
    code, _, err = run(workspace_dir, "users", "add", "赵六", "--role", "caseworker")
    assert code == 2 and "at least one department" in err
    for reserved in ("triage", "Triage", "cli", "system"):  # the system's own actors in the audit trail
        code, _, err = run(workspace_dir, "users", "add", reserved, "--role", "admin")
        assert code == 2 and "field 'name'" in err and "reserved" in err, err
    code, second, _ = run(workspace_dir, "users", "key", "李四")
    assert code == 0 and second.strip() != key.strip()
    code, out, _ = run(workspace_dir, "users", "list")
    assert code == 0 and "李四" in out and key.strip()[:11] in out and second.strip()[:11] in out
    code, out, _ = run(workspace_dir, "users", "revoke", "李四", "--prefix", key.strip()[:11])
    assert code == 0 and "revoked 1 key" in out
    code, out, _ = run(workspace_dir, "users", "list")
    assert key.strip()[:11] not in out and second.strip()[:11] in out
