"""Offline triage benchmark: 1,000 complaints against 10,000 indexed past cases.

    .venv/bin/python benchmarks/bench_triage.py [--cases 10000] [--complaints 1000] [--out FILE]

Past cases and complaints are synthesised from the built-in knowledge base (problem descriptions,
service items, districts and colloquial phrasing, shuffled with a fixed seed), so the run needs no
data beyond the package. The workspace is built by `triage history import` in a child process;
this process then opens it and prints p50/p95 latency per complaint (one call per complaint),
single-call and batched (64 per call, as `triage triage --file` does) throughput, and the peak RSS
of the serving process and of the build.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from triage.knowledge import builtin
from triage.models import Complaint
from triage.pipeline import TriagePipeline
from triage.settings import Settings
from triage.workspace import Workspace

DISTRICTS = [
    "浦东新区",
    "黄浦区",
    "徐汇区",
    "长宁区",
    "静安区",
    "普陀区",
    "虹口区",
    "杨浦区",
    "闵行区",
    "宝山区",
    "嘉定区",
    "金山区",
    "松江区",
    "青浦区",
    "奉贤区",
    "崇明区",
]
OPENERS = [
    "我想反映一个问题，",
    "真的太无语了，",
    "麻烦帮忙看看，",
    "已经第三次来了，",
    "作为企业经办人，",
    "",
    "请问",
    "上周去办事，",
    "家里老人让我问一下，",
    "投诉！",
]
CLOSERS = ["希望尽快解决。", "到底找谁？", "能不能改进一下？", "太折腾了。", "盼回复，谢谢。", "", "差评！"]


def synth(rng: random.Random, n: int) -> list[tuple[str, str, str]]:
    """(text, department, problem id) triples in the voice of a complaint."""
    kb = builtin()
    out = []
    for _ in range(n):
        p = rng.choice(kb.problems)
        sentences = [s for s in p.description.replace("！", "。").split("。") if s.strip()]
        rng.shuffle(sentences)
        body = "，".join(sentences[: rng.randint(1, len(sentences))])
        item = rng.choice(p.service_items) if p.service_items else ""
        text = f"{rng.choice(OPENERS)}在{rng.choice(DISTRICTS)}办{item}，{body}。{rng.choice(CLOSERS)}"
        out.append((text, p.department, p.id))
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def vacuum(url: str) -> None:
    """VACUUM ANALYZE a database, as PostgreSQL advises after a bulk write: fresh planner statistics and
    visibility map now, rather than autovacuum doing it during the next measurement on the same cores."""
    import sqlalchemy as sa

    engine = sa.create_engine(url, isolation_level="AUTOCOMMIT")
    with engine.connect() as conn:
        conn.execute(sa.text("VACUUM ANALYZE"))
    engine.dispose()


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=10_000)
    parser.add_argument("--complaints", type=int, default=1_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/triage.json"))
    args = parser.parse_args()
    rng = random.Random(20261201)

    with tempfile.TemporaryDirectory() as tmp:
        # The workspace is built the way a deployment builds it, by `triage history import` in a child
        # process, so the peak memory reported for triage is the serving process's alone.
        cases = Path(tmp) / "cases.jsonl"
        cases.write_text(
            "".join(
                json.dumps({"id": f"B{i}", "text": t, "department": d, "typical_problem_id": p}, ensure_ascii=False)
                + "\n"
                for i, (t, d, p) in enumerate(synth(rng, args.cases))
            ),
            encoding="utf-8",
        )
        settings = Settings(data_dir=Path(tmp) / "ws")
        t0 = time.perf_counter()
        subprocess.run(
            [sys.executable, "-m", "triage", "--data-dir", str(settings.data_dir), "history", "import", str(cases)],
            check=True,
            capture_output=True,
        )
        import_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        ws = Workspace.open(settings)
        open_s = time.perf_counter() - t0
        pipeline = TriagePipeline.from_settings(settings, ws)
        complaints = [Complaint(text=t, channel="好差评") for t, _, _ in synth(random.Random(7), args.complaints)]
        golds = [d for _, d, _ in synth(random.Random(7), args.complaints)]
        pipeline.triage_many(complaints[:20])  # warm-up

        latencies = []
        departments = []
        t0 = time.perf_counter()
        for c in complaints:
            start = time.perf_counter()
            departments.append(pipeline.triage(c).department)
            latencies.append((time.perf_counter() - start) * 1000)
        single_s = time.perf_counter() - t0

        t0 = time.perf_counter()
        for i in range(0, len(complaints), 64):
            pipeline.triage_many(complaints[i : i + 64])
        batch_s = time.perf_counter() - t0

    result = {
        "past_cases_indexed": args.cases,
        "complaints": args.complaints,
        "latency_ms_p50": round(statistics.median(latencies), 2),
        "latency_ms_p95": round(percentile(latencies, 0.95), 2),
        "throughput_single_per_s": round(args.complaints / single_s, 1),
        "throughput_batched_per_s": round(args.complaints / batch_s, 1),
        "build_workspace_s": round(import_s, 2),
        "open_workspace_s": round(open_s, 2),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "build_peak_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
        "routing_accuracy_synthetic": round(
            sum(a == b for a, b in zip(departments, golds, strict=True)) / len(golds), 3
        ),
        "python": sys.version.split()[0],
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    for key, value in result.items():
        print(f"{key:28} {value}")


if __name__ == "__main__":
    main()
