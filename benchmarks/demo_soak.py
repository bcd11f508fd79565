"""Soak test of the web demo: many clients, every endpoint and some bad requests, for a while.

    python benchmarks/demo_soak.py --clients 8 --seconds 60 [--json soak.json]

Starts `regionvlm demo --model-type tiny --sam-type tiny` in a child process on 127.0.0.1
(loopback only) and runs `--clients` client threads for `--seconds` (each stops after
`--max-requests` too). Every client keeps one session and, chosen by a seeded generator,
adds and removes regions, captions, asks, scores, chats, segments, draws attention, reads,
resets and exports, re-uploads now and then, and sends bad requests from issue 14: a polygon
vertex at 1e9, a question of 8,000 words, a 16000x16000 RLE, a truncated PNG, a JPEG cut in
its header, invalid JSON, an unknown route, a foreign Host header. Each request has the
statuses it may get (a bad one: its 4xx); any other is counted as unexpected.

Reports requests served, answers by status, unexpected answers, p50/p99 latency (all
requests, and per action in the JSON), and the server's resident memory (RSS) after a
warm-up round and at the end, and its peak. Exit status 1 when a 5xx or an unexpected
answer was seen or the server stopped answering.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import subprocess
import sys
import threading
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any, Callable, Optional

import httpx
import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parents[1]
MIB = 2**20


def scene(seed: int, size=(320, 240)) -> bytes:
    """A PNG of coloured shapes on a light background, fixed by seed."""
    rng = random.Random(seed)
    image = Image.new("RGB", size, (235, 235, 225))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = rng.randrange(size[0] - 60), rng.randrange(size[1] - 60)
        draw.ellipse((x, y, x + rng.randrange(20, 60), y + rng.randrange(20, 60)),
                     fill=(rng.randrange(256), rng.randrange(256), rng.randrange(256)))
    return _encode(image, "PNG")


def _encode(image: Image.Image, fmt: str) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return buffer.getvalue()


def bad_files() -> dict[str, bytes]:
    noisy = Image.fromarray((np.random.default_rng(0).random((64, 64, 3)) * 255).astype(np.uint8))
    png, jpeg = _encode(noisy, "PNG"), _encode(noisy, "JPEG")
    return {"truncated.png": png[: len(png) // 2], "header.jpg": jpeg[:200]}


class Client:
    """One simulated user: a session, a seeded mix of actions, results appended to `log`."""

    def __init__(self, url: str, seed: int, log: list, deadline: float, max_requests: int):
        self.http = httpx.Client(base_url=url, timeout=120)
        self.rng = random.Random(seed)
        self.seed, self.log, self.deadline, self.max_requests = seed, log, deadline, max_requests
        self.sid: Optional[str] = None
        self.regions = 0
        self.bad = bad_files()

    def call(self, action: str, expected: set[int], method: str, path: str, **kwargs) -> Optional[httpx.Response]:
        began = time.perf_counter()
        try:
            response = self.http.request(method, path, **kwargs)
            status = response.status_code
        except httpx.HTTPError as exc:
            response, status = None, f"{type(exc).__name__}"
        self.log.append((action, status, time.perf_counter() - began, status in expected))
        return response

    def upload(self) -> None:
        if self.sid:
            self.call("delete_session", {204}, "DELETE", f"/api/sessions/{self.sid}")
        response = self.call("upload", {201}, "POST", "/api/sessions",
                             files={"image": ("scene.png", scene(self.rng.randrange(1000)), "image/png")})
        self.sid = response.json()["session"] if response is not None and response.status_code == 201 else None
        self.regions = 0

    def region(self) -> dict:
        kind = self.rng.choice(("points", "box", "scribble"))
        x, y = self.rng.uniform(0.1, 0.7), self.rng.uniform(0.1, 0.7)
        if kind == "points":
            return {"points": [[x, y], [x + 0.05, y + 0.05]]}
        if kind == "box":
            return {"box": [x, y, x + 0.2, y + 0.2]}
        return {"scribble": [[x, y], [x + 0.1, y + 0.02], [x + 0.15, y + 0.1]]}

    def actions(self) -> list[tuple[float, Callable[[], None]]]:
        s = lambda: f"/api/sessions/{self.sid}"  # noqa: E731
        region = lambda: self.rng.choice([None, self.region()] + ([0] if self.regions else []))  # noqa: E731
        ok = {200}
        return [
            (6, lambda: self._add_region()),
            (2, lambda: self._remove_region()),
            (6, lambda: self.call("caption", ok, "POST", s() + "/caption", json={"region": region()})),
            (6, lambda: self.call("ask", ok, "POST", s() + "/ask", json={"question": "what colour is it?",
                                                                             "region": region()})),
            (5, lambda: self.call("score", ok, "POST", s() + "/score",
                                  json={"texts": ["a red ball", "a blue square", "grass"], "region": region()})),
            (5, lambda: self.call("chat", {200, 400}, "POST", s() + "/chat",
                                  json={"message": "what is [0]?" if self.regions else "what is in the picture?"})),
            (2, lambda: self.call("segment", ok, "POST", s() + "/segment", json={"expression": "the round thing"})),
            (3, lambda: self.call("attention", ok, "POST", s() + "/attention", json={"region": region()})),
            (4, lambda: self.call("get", ok, "GET", s())),
            (1, lambda: self._reset()),
            (1, lambda: self.call("export", ok, "GET", s() + "/export")),
            (1, lambda: self.call("info", ok, "GET", "/api/info")),
            (1, lambda: self.upload()),
            # bad requests (issue 14): each must get its 4xx
            (1, lambda: self.call("bad_polygon", ok, "POST", s() + "/caption", json={
                "region": {"polygons": [[1, 1, 1e9, 1, 5, 5]], "height": 10, "width": 10}})),
            (1, lambda: self.call("bad_long_question", {413}, "POST", s() + "/ask",
                                  json={"question": " ".join(["word"] * 8000)})),
            (1, lambda: self.call("bad_huge_rle", {413}, "POST", s() + "/regions",
                                  json={"region": {"rle": {"size": [16000, 16000], "counts": [128_000_000] * 2}}})),
            (1, lambda: self._bad_file()),
            (1, lambda: self.call("bad_json", {422}, "POST", s() + "/chat", content=b"{not json",
                                  headers={"content-type": "application/json"})),
            (1, lambda: self.call("bad_route", {404}, "GET", "/api/nowhere")),
            (1, lambda: self.call("bad_host", {400}, "GET", "/api/info", headers={"host": "evil.example"})),
        ]

    def _add_region(self) -> None:
        response = self.call("add_region", {201, 409}, "POST", f"/api/sessions/{self.sid}/regions",
                             json={"region": self.region()})
        if response is not None and response.status_code == 201:
            self.regions += 1

    def _remove_region(self) -> None:
        response = self.call("remove_region", {200, 400, 409}, "DELETE", f"/api/sessions/{self.sid}/regions/last")
        if response is not None and response.status_code == 200:
            self.regions = response.json()["regions"]

    def _reset(self) -> None:
        keep = self.rng.random() < 0.5
        response = self.call("reset", {200}, "POST", f"/api/sessions/{self.sid}/reset", json={"keep_regions": keep})
        if response is not None and response.status_code == 200:
            self.regions = len(response.json()["regions"])

    def _bad_file(self) -> None:
        name = self.rng.choice(sorted(self.bad))
        self.call("bad_image", {400}, "POST", "/api/sessions", files={"image": (name, self.bad[name], "image/png")})

    def run(self) -> None:
        self.upload()
        actions = self.actions()
        weights = [w for w, _ in actions]
        done = 0
        while time.monotonic() < self.deadline and done < self.max_requests:
            if self.sid is None:
                self.upload()
            else:
                self.rng.choices(actions, weights)[0][1]()
            done += 1
        self.http.close()


def rss_mib(pid: int) -> dict[str, float]:
    """The process's resident memory now (VmRSS) and its peak (VmHWM), MiB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return {key: int(re.search(rf"{key}:\s+(\d+) kB", status).group(1)) / 1024 for key in ("VmRSS", "VmHWM")}


def start_demo(extra: list[str], threads: int) -> tuple[subprocess.Popen, str]:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "OMP_NUM_THREADS": str(threads),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    process = subprocess.Popen(
        [sys.executable, "-m", "lavis_regionvlm.cli", "demo", "--model-type", "tiny", "--sam-type", "tiny",
         "--host", "127.0.0.1", "--port", "0", *extra],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT,
    )
    lines = []
    for line in process.stdout:
        lines.append(line)
        found = re.search(r"RegionVLM demo on (http://127\.0\.0\.1:\d+)", line)
        if found:
            threading.Thread(target=_drain, args=(process.stdout,), daemon=True).start()
            return process, found.group(1)
    raise RuntimeError("the demo did not start:\n" + "".join(lines)[-3000:])


SERVER_LOG: list[str] = []  # the server's log lines (tracebacks of any 500 are here)


def _drain(stream) -> None:
    for line in stream:  # keep the server's log pipe from filling up
        SERVER_LOG.append(line)
        del SERVER_LOG[:-2000]


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


def soak(clients: int, seconds: float, max_requests: int, seed: int, threads: int, extra: list[str]) -> dict[str, Any]:
    process, url = start_demo(extra, threads)
    try:
        warm: list = []
        warmup = Client(url, seed - 1, warm, time.monotonic() + 3600, 0)
        warmup.upload()
        for _, action in warmup.actions():  # every action once, so the start figure is after warm-up
            action()
        rss_start = rss_mib(process.pid)
        log: list = []
        deadline = time.monotonic() + seconds
        workers = [threading.Thread(target=Client(url, seed + i, log, deadline, max_requests).run)
                   for i in range(clients)]
        began = time.monotonic()
        for worker in workers:
            worker.start()
        series = []  # (seconds since the start, RSS MiB) every 5 s: does it level off?
        next_sample = 0.0
        while any(worker.is_alive() for worker in workers):
            if time.monotonic() - began >= next_sample:
                series.append((round(time.monotonic() - began, 1), round(rss_mib(process.pid)["VmRSS"], 1)))
                next_sample += 5.0
            time.sleep(0.2)
        elapsed = time.monotonic() - began
        rss_end = rss_mib(process.pid)
        answers = httpx.get(url + "/api/info", timeout=60).status_code == 200
    finally:
        process.terminate()
        process.wait(30)
    latencies = [t for _, _, t, _ in log]
    per_action: dict[str, list[float]] = defaultdict(list)
    for action, _, t, _ in log:
        per_action[action].append(t)
    statuses = Counter(str(status) for _, status, _, _ in log)
    unexpected = Counter(f"{action} {status}" for action, status, _, fine in log if not fine)
    return {
        "clients": clients, "seconds": round(elapsed, 1), "requests": len(log),
        "requests_per_s": round(len(log) / elapsed, 2), "statuses": dict(sorted(statuses.items())),
        "server_errors": sum(n for s, n in statuses.items() if s.startswith("5") or not s.isdigit()),
        "unexpected": dict(unexpected), "p50_ms": round(percentile(latencies, 50) * 1000, 1),
        "p99_ms": round(percentile(latencies, 99) * 1000, 1),
        "per_action": {a: {"n": len(v), "p50_ms": round(percentile(v, 50) * 1000, 1),
                           "p99_ms": round(percentile(v, 99) * 1000, 1)} for a, v in sorted(per_action.items())},
        "rss_start_mib": round(rss_start["VmRSS"], 1), "rss_end_mib": round(rss_end["VmRSS"], 1),
        "rss_peak_mib": round(rss_end["VmHWM"], 1), "rss_series_mib": series, "answers_at_end": answers,
    }


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--seconds", type=float, default=60.0, help="how long the clients run (default 60)")
    parser.add_argument("--max-requests", type=int, default=100_000, help="most requests per client")
    parser.add_argument("--seed", type=int, default=0, help="seed of the clients' choices")
    parser.add_argument("--threads", type=int, default=1, help="the server's torch threads (OMP_NUM_THREADS)")
    parser.add_argument("--json", help="write the figures here too")
    parser.add_argument("demo_options", nargs=argparse.REMAINDER, help="after --: options for `regionvlm demo`")
    args = parser.parse_args(argv)
    if args.clients < 1 or args.seconds <= 0 or args.max_requests < 1:
        parser.error("--clients, --seconds and --max-requests must be positive")
    extra = [a for a in args.demo_options if a != "--"]
    result = soak(args.clients, args.seconds, args.max_requests, args.seed, args.threads, extra)
    print(f"demo soak: {result['clients']} clients for {result['seconds']} s on 127.0.0.1")
    print(f"requests served: {result['requests']} ({result['requests_per_s']}/s)")
    print("answers by status: " + ", ".join(f"{s}: {n}" for s, n in result["statuses"].items()))
    print(f"5xx or no answer: {result['server_errors']}; unexpected: {result['unexpected'] or 'none'}")
    print(f"latency p50 {result['p50_ms']} ms, p99 {result['p99_ms']} ms")
    print(f"server RSS: {result['rss_start_mib']} MiB after warm-up, {result['rss_end_mib']} MiB at the end "
          f"(peak {result['rss_peak_mib']} MiB); answers at the end: {result['answers_at_end']}")
    print("server RSS every 5 s (s, MiB): " + " ".join(f"{t:g}:{m:.0f}" for t, m in result["rss_series_mib"]))
    if result["server_errors"]:
        print("the server's log (last 80 lines):\n" + "".join(SERVER_LOG[-80:]))
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0 if result["answers_at_end"] and not result["server_errors"] and not result["unexpected"] else 1


if __name__ == "__main__":
    sys.exit(main())
