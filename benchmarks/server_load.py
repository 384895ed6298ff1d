"""Load on `unstatic serve`, loopback only and bounded: N client threads send a mix of valid and invalid requests
(sync txt2img, job submissions polled to the end, status reads, bad bodies) for a fixed time, several rounds.

Prints per round: requests, throughput, p50/p95 latency, status counts, resident memory; then checks that no
response was a 5xx, no submitted job was lost (every accepted job reached done/failed/cancelled), and memory did
not keep growing across rounds. Uses tiny random-weight models unless --model NAME=FOLDER is given.

    .venv/bin/python -m benchmarks.server_load --clients 8 --seconds 20 --rounds 3
"""

from __future__ import annotations

import argparse
import random
import resource
import statistics
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import httpx
import uvicorn

from unstatic.server import create_app

FINISHED = {"done", "failed", "cancelled"}


def _rss_mib() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def _requests(prompt: str, size: int):
    good = {"prompt": prompt, "steps": 4, "width": size, "height": size, "seed": -1}
    return [
        ("sync", "POST", "/sdapi/v1/txt2img", good),
        ("job", "POST", "/v1/jobs", {"type": "txt2img", "request": {**good, "batch_size": 2}}),
        ("read", "GET", "/sdapi/v1/progress", None),
        ("read", "GET", "/sdapi/v1/samplers", None),
        ("bad", "POST", "/sdapi/v1/txt2img", {**good, "steps": -1}),
        ("bad", "POST", "/sdapi/v1/txt2img", {**good, "width": 100000}),
        ("bad", "POST", "/sdapi/v1/img2img", {**good, "init_images": ["not base64"]}),
        ("bad", "POST", "/sdapi/v1/txt2img", b"{not json"),
    ]


def _client(base: str, stop: float, mix, latencies: list, statuses: Counter, jobs: list, lock: threading.Lock):
    rng = random.Random(threading.get_ident())
    with httpx.Client(base_url=base, timeout=120) as http:
        while time.monotonic() < stop:
            kind, method, path, body = rng.choice(mix)
            start = time.perf_counter()
            if isinstance(body, bytes):
                response = http.request(method, path, content=body, headers={"content-type": "application/json"})
            else:
                response = http.request(method, path, json=body)
            elapsed = time.perf_counter() - start
            with lock:
                latencies.append(elapsed)
                statuses[response.status_code] += 1
                if kind == "job" and response.status_code == 202:
                    jobs.append(response.json()["id"])


def _wait_for_jobs(base: str, jobs: list[str], timeout: float = 600) -> Counter:
    states: Counter = Counter()
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=base, timeout=60) as http:
        for job_id in jobs:
            while True:
                response = http.get(f"/v1/jobs/{job_id}", params={"preview": "false"})
                state = response.json().get("state") if response.status_code == 200 else f"http {response.status_code}"
                if state in FINISHED or not state or state.startswith("http") or time.monotonic() > deadline:
                    states[state] += 1
                    if state in FINISHED:
                        http.delete(f"/v1/jobs/{job_id}")  # forget it, so kept results do not count as growth
                    break
                time.sleep(0.05)
    return states


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--queue-size", type=int, default=16)
    parser.add_argument("--model", default=None, help="NAME=FOLDER (default: a tiny random-weight class model)")
    parser.add_argument("--port", type=int, default=7861)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            name, _, folder = args.model.partition("=")
            models, prompt, size = {name: Path(folder)}, "a red circle", 32
        else:
            from tests.pipelines.tiny_models import tiny_model_folder

            models, prompt, size = {"tiny": tiny_model_folder(Path(tmp) / "tiny")}, "circle", 16
        app = create_app(models, queue_size=args.queue_size, preload=True)
        # keep every finished job until it is checked (then it is deleted); the default keeps the last 100
        app.state.server.queue.keep_finished = 10**6
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base, mix = f"http://127.0.0.1:{args.port}", _requests(prompt, size)
        print(f"{'round':>5} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'RSS MiB':>8}  statuses; jobs")
        all_statuses: Counter = Counter()
        memory, lost = [], 0
        for round_no in range(1, args.rounds + 1):
            latencies, statuses, jobs, lock = [], Counter(), [], threading.Lock()
            stop = time.monotonic() + args.seconds
            threads = [threading.Thread(target=_client, args=(base, stop, mix, latencies, statuses, jobs, lock))
                       for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            states = _wait_for_jobs(base, jobs)
            lost += sum(n for state, n in states.items() if state not in FINISHED)
            memory.append(_rss_mib())
            all_statuses += statuses
            q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [0.0] * 19
            print(f"{round_no:>5} {len(latencies):>8} {len(latencies) / args.seconds:>7.1f} {q[9] * 1e3:>8.1f} "
                  f"{q[18] * 1e3:>8.1f} {memory[-1]:>8.0f}  {dict(sorted(statuses.items()))}; {dict(states)}")
        server.should_exit = True
        thread.join(10)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    server_errors = sum(n for status, n in all_statuses.items() if status >= 500)
    growth = memory[-1] - memory[0] if len(memory) > 1 else 0.0
    print(f"peak RSS {peak:.0f} MiB; 5xx responses: {server_errors}; jobs lost: {lost}; "
          f"RSS change from round 1 to {len(memory)}: {growth:+.0f} MiB")


if __name__ == "__main__":
    main()
