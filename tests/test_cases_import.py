"""`triage cases import`: 5,000 rows with bad lines, on SQLite and PostgreSQL, through the batch service,
drafted, idempotent on each row's id, complaint times kept as given."""

from __future__ import annotations

import csv
import json
import shutil
from collections.abc import Iterator
from contextlib import nullcontext
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from tests.conftest import fresh_postgres_database, local
from triage.cli import cli

TEMPLATES = [
    "社保卡丢了补办要等二十多天，还要再跑银行激活",
    "港澳通行证预约一个星期都约不到号",
    "租房提取公积金被退回三次说合同没有备案",
    "小区楼下搅拌站夜里施工噪音太大粉尘飞扬",
    "营业执照地址变更了税务登记没有同步",
]
BAD = {  # line (the header is line 1) -> what is wrong, and the message that says so
    7: ("text", "", "field 'text': is empty"),
    120: ("created_at", "昨天下午", "field 'created_at': '昨天下午' is not a time"),
    2500: ("rating", "9", "field 'rating': Input should be less than or equal to 5"),
    4999: ("channel", "微博", "field 'channel': unknown channel '微博'"),
}


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    sqlite = nullcontext(f"sqlite:///{tmp_path / 'import.db'}")
    with fresh_postgres_database() if request.param == "postgresql" else sqlite as url:
        yield url


def _rows(n: int) -> list[dict[str, str]]:
    rows = []
    for i in range(n):
        line = i + 2
        row = {
            "留言编号": f"M{i:05d}",
            "留言详情": f"{TEMPLATES[i % len(TEMPLATES)]}（第{i}条）",
            "留言时间": f"2019/{1 + i % 12}/{1 + i % 28} 11:25:05"
            if i % 2
            else f"2019-03-{1 + i % 28:02d}T09:00:00+08:00",
            "点赞数": str(i % 7),
            "反对数": str(i % 3),
            "主体类型": "enterprise" if i % 10 == 0 else "individual",
            "企业名称": "上海某某科技有限公司" if i % 10 == 0 else "",
            "channel": "12345",
            "rating": "",
        }
        if line in BAD:
            field, value, _ = BAD[line]
            row[{"text": "留言详情", "created_at": "留言时间"}.get(field, field)] = value
        rows.append(row)
    return rows


def test_import_of_5000_rows_with_bad_lines(builtin_dir: Path, tmp_path: Path, database_url: str) -> None:
    data_dir = tmp_path / "ws"
    shutil.copytree(builtin_dir, data_dir)
    file = tmp_path / "complaints.csv"
    rows = _rows(5000)
    with file.open("w", encoding="utf-8", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    args = ["--data-dir", str(data_dir), "cases", "import", str(file)]
    maps = ["--map", "likes=点赞数", "--map", "dislikes=反对数", "--map", "submitter_type=主体类型"]
    env = {"TRIAGE_DATABASE_URL": database_url}
    first = CliRunner(env=env).invoke(cli, [*args, *maps])
    assert first.exit_code == 1, first.output  # some lines were bad; the rest are in
    for line, (_, _, message) in BAD.items():
        assert f"line {line}: {message}" in first.stderr, first.stderr[-2000:]
    assert "imported 4996 new case(s) from 5000 row(s): 0 already present, 4 skipped, 4996 drafted" in first.stdout
    again = CliRunner(env=env).invoke(cli, [*args, *maps])
    assert "imported 0 new case(s) from 5000 row(s): 4996 already present, 4 skipped, 0 drafted" in again.stdout

    engine = sa.create_engine(database_url)
    try:
        with engine.connect() as conn:
            count, drafted = conn.execute(
                sa.text("SELECT count(*), sum(CASE WHEN draft_no = 1 THEN 1 END) FROM cases")
            ).one()
            assert (count, drafted) == (4996, 4996)
            one = conn.execute(
                sa.text(
                    "SELECT complained_at, likes, dislikes, submitter_type, enterprise_name, channel, due_at, status "
                    "FROM cases WHERE external_id = 'M00010'"
                )
            ).one()
            two = conn.execute(sa.text("SELECT complained_at FROM cases WHERE external_id = 'M00011'")).scalar_one()
    finally:
        engine.dispose()
    assert _utc(one[0]) == local("2019-03-11T09:00:00")  # the offset given, kept
    assert _utc(two) == local("2019-12-12T11:25:05")  # no offset: local time
    assert one[1:6] == (3, 1, "enterprise", "上海某某科技有限公司", "12345") and one[7] == "drafted"
    assert one[6] is not None  # a deadline, counted from the complaint's own time


def test_jsonl_import_keeps_ids_votes_and_times(builtin_dir: Path, tmp_path: Path) -> None:
    data_dir = tmp_path / "ws"
    shutil.copytree(builtin_dir, data_dir)
    file = tmp_path / "votes.jsonl"
    lines = [
        {
            "id": "M1",
            "title": "搅拌站噪音",
            "text": TEMPLATES[3],
            "created_at": "2019/2/28 11:25:05",
            "likes": 12,
            "dislikes": 1,
        },
        {"id": "M2", "text": TEMPLATES[0], "created_at": "2019-02-28 23:30"},
        "not json",
        {"id": "M3", "text": TEMPLATES[1], "likes": -1},
    ]
    file.write_text("\n".join(x if isinstance(x, str) else json.dumps(x, ensure_ascii=False) for x in lines), "utf-8")
    result = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "cases", "import", str(file), "--channel", "12345"])
    assert result.exit_code == 1
    assert "line 3: malformed JSON" in result.stderr and "line 4: field 'likes'" in result.stderr
    assert "imported 2 new case(s) from 4 row(s)" in result.stdout
    listing = CliRunner().invoke(cli, ["--data-dir", str(data_dir), "problems", "list", "--json"])
    assert listing.exit_code == 0 and isinstance(json.loads(listing.stdout), list)
    day = datetime(2019, 2, 28, 23, 30)
    engine = sa.create_engine(f"sqlite:///{data_dir / 'triage.db'}")
    try:
        with engine.connect() as conn:
            rows: dict[str, object] = dict(conn.execute(sa.text("SELECT external_id, complained_at FROM cases")).all())
            votes = conn.execute(sa.text("SELECT likes, dislikes, channel FROM cases WHERE external_id='M1'")).one()
    finally:
        engine.dispose()
    assert _utc(rows["M2"]) == local(day.isoformat())
    assert tuple(votes) == (12, 1, "12345")


def _utc(value: object) -> datetime:
    """A stored time as read back with plain SQL (SQLite: text in UTC without an offset)."""
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)
