"""History import benchmark: 5,000 rows into a fresh workspace, offline, end to end.

    .venv/bin/python benchmarks/bench_import.py [--rows 5000] [--out FILE]

Rows are synthesised from the built-in knowledge base (as in bench_triage.py) and written as a
JSONL file; the timed part is exactly `triage history import FILE`: reading and validating rows,
storing them, refitting the text model, embedding and indexing every case, and training the
router with cross-validated weights.
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from bench_triage import synth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=5_000)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/import.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "history.jsonl"
        rows = [
            {"id": f"R{i}", "text": t, "department": d, "typical_problem_id": p}
            for i, (t, d, p) in enumerate(synth(random.Random(5), args.rows))
        ]
        data.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
        ws = Path(tmp) / "ws"
        triage = [sys.executable, "-m", "triage", "--data-dir", str(ws)]
        subprocess.run([*triage, "kb", "reindex"], check=True, capture_output=True)  # build the workspace first
        start = time.perf_counter()
        done = subprocess.run([*triage, "history", "import", str(data)], check=True, capture_output=True, text=True)
        import_s = time.perf_counter() - start
        start = time.perf_counter()
        again = subprocess.run([*triage, "history", "import", str(data)], check=True, capture_output=True, text=True)
        reimport_s = time.perf_counter() - start
    result = {
        "rows": args.rows,
        "import_s": round(import_s, 1),
        "rows_per_s": round(args.rows / import_s, 1),
        "reimport_same_file_s": round(reimport_s, 1),
        "import_output": done.stdout.strip(),
        "reimport_output": again.stdout.strip(),
        "peak_child_rss_mb": round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    for key, value in result.items():
        print(f"{key:22} {value}")


if __name__ == "__main__":
    main()
