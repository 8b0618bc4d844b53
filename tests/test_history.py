"""History import: formats, column mapping, idempotency, unknown departments, routing learns."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
from click.testing import CliRunner
from openpyxl import Workbook

from tests.conftest import complaint
from triage.cli import cli
from triage.services import build_services
from triage.settings import Settings

ROWS = [
    {
        "留言编号": "T1",
        "留言主题": "楼下烧烤店油烟",
        "留言详情": "小区楼下烧烤店每晚油烟直冲我家窗户",
        "一级标签": "市城管执法局",
    },
    {"留言编号": "T2", "留言主题": "社保卡", "留言详情": "社保局补卡要等一个月", "一级标签": "社保局"},  # alias
    {"留言编号": "T3", "留言主题": "无", "留言详情": "   ", "一级标签": "市公安局"},  # empty text
    {
        "留言编号": "T4",
        "留言主题": "无人机",
        "留言详情": "无人机航拍备案找不到部门",
        "一级标签": "市低空经济办",
    },  # unknown
]
MAP = ["--map", "id=留言编号", "--map", "title=留言主题", "--map", "text=留言详情", "--map", "department=一级标签"]


def run(data_dir: Path, *args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), *args], catch_exceptions=False)
    return result.exit_code, result.stdout, result.stderr


def write(path: Path, rows: list[dict[str, str]]) -> Path:
    if path.suffix == ".jsonl":
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    elif path.suffix == ".csv":
        with path.open("w", encoding="utf-8-sig", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=list(rows[0]))
            writer.writeheader()
            writer.writerows(rows)
    else:
        book = Workbook()
        sheet = book.active
        sheet.append(list(rows[0]))
        for r in rows:
            sheet.append(list(r.values()))
        book.save(path)
    return path


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".xlsx"])
def test_import_maps_columns_reports_bad_rows_and_is_idempotent(
    workspace_dir: Path, tmp_path: Path, suffix: str
) -> None:
    path = write(tmp_path / f"history{suffix}", ROWS)
    code, out, err = run(workspace_dir, "history", "import", str(path), *MAP)
    assert code == 1  # some rows skipped
    assert "imported 2 new past case(s) from 4 row(s)" in out
    line_of = {".jsonl": (3, 4), ".csv": (4, 5), ".xlsx": (4, 5)}[suffix]
    assert f"line {line_of[0]}: field 'text': is empty" in err
    assert f"line {line_of[1]}: field 'department': unknown department '市低空经济办'" in err
    code, out, _ = run(workspace_dir, "history", "import", str(path), *MAP)
    assert "imported 0 new past case(s)" in out and "2 already present" in out
    _, stats, _ = run(workspace_dir, "kb", "stats")
    assert json.loads(stats)["past_cases"] == 2


def test_rows_without_ids_are_deduplicated_by_content(workspace_dir: Path, tmp_path: Path) -> None:
    rows = [{"text": "公积金租房提取被退回三次", "department": "市公积金中心"}] * 2
    path = write(tmp_path / "h.jsonl", rows)
    _, out, _ = run(workspace_dir, "history", "import", str(path))
    assert "imported 1 new past case(s) from 2 row(s): 1 already present" in out


def test_add_departments_extends_the_taxonomy(workspace_dir: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "h.jsonl", [{"text": "无人机航拍备案找不到部门", "department": "市低空经济办"}])
    code, _out, err = run(workspace_dir, "history", "import", str(path), "--add-departments")
    assert code == 0 and "added 1 department(s): 市低空经济办" in err
    _, stats, _ = run(workspace_dir, "kb", "stats")
    assert json.loads(stats)["departments"] == 19


def test_missing_mapped_column_names_the_field_and_the_columns(workspace_dir: Path, tmp_path: Path) -> None:
    path = write(tmp_path / "h.jsonl", [{"内容": "文本", "部门": "市公安局"}])
    code, _, err = run(workspace_dir, "history", "import", str(path))
    assert code == 2
    assert "missing required field(s) text, department; columns found: 内容, 部门" in err
    code, _, err = run(workspace_dir, "history", "import", str(path), "--map", "txt=内容")
    assert code == 2 and "unknown field 'txt'" in err


def test_routing_learns_from_imported_history(tmp_path: Path) -> None:
    """A 3-department taxonomy whose descriptions say nothing of the topic: only history can teach it."""
    deps = tmp_path / "deps.json"
    deps.write_text(
        json.dumps([{"name": n, "description": "综合"} for n in ("甲部门", "乙部门", "丙部门")], ensure_ascii=False),
        encoding="utf-8",
    )
    ws_dir = tmp_path / "ws"
    run(ws_dir, "kb", "load", "--departments", str(deps))
    topics = {"甲部门": "电梯故障停运维修", "乙部门": "幼儿园入学报名", "丙部门": "医保报销结算"}
    rows = [
        {"text": f"第{i}次反映：{topic}问题一直没有解决，希望尽快处理", "department": dep}
        for dep, topic in topics.items()
        for i in range(30)
    ]
    path = write(tmp_path / "h.jsonl", rows)
    settings = Settings(data_dir=ws_dir)
    probe = complaint("小区电梯又故障停运了，维修一直拖着")
    before = build_services(settings).pipeline.triage(probe)
    code, out, _ = run(ws_dir, "history", "import", str(path))
    assert code == 0 and "imported 90 new past case(s)" in out
    after = build_services(settings).pipeline.triage(probe)
    assert after.department == "甲部门"
    assert after.confidence > before.top_departments[0].score or before.department != "甲部门"
    assert any(e.kind == "past_case" and e.department == "甲部门" for e in after.evidence)
