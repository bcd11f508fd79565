"""`benchmarks/demo_soak.py` run short: 4 clients for 10 s against a demo on 127.0.0.1, every
endpoint and the bad requests of issue 14 mixed in. Asserts what must hold under load: no
5xx, every answer one the request may get, the server still answering, and its memory not
growing without bound (a generous bound: this checks for leaks of images or masks, not
speed)."""
import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_short_soak_has_no_server_errors_and_bounded_memory(tmp_path):
    out = tmp_path / "soak.json"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    done = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "demo_soak.py"), "--clients", "4", "--seconds", "10",
         "--max-requests", "200", "--json", str(out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    result = json.loads(out.read_text())
    assert result["requests"] > 0 and result["server_errors"] == 0 and result["unexpected"] == {}
    assert result["answers_at_end"] is True
    assert result["rss_end_mib"] - result["rss_start_mib"] < 512
    assert "requests served:" in done.stdout and "latency p50" in done.stdout
