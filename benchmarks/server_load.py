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
import tracemalloc
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
    parser.add_argument("--trace", action="store_true",
                        help="also trace Python allocations (tracemalloc): a column of the Python heap per round and "
                             "the lines whose allocations grew most from round 1 to the last, which tells a Python-level "
                             "leak from native growth (allocator arenas, caches) when RSS rises")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        if args.model:
            name, _, folder = args.model.partition("=")
            models, prompt, size = {name: Path(folder)}, "a red circle", 32
        else:
            from tests.pipelines.tiny_models import tiny_model_folder

            models, prompt, size = {"tiny": tiny_model_folder(Path(tmp) / "tiny")}, "circle", 16
        app = create_app(models, queue_size=args.queue_size, preload=True)
        # During a round every finished job is kept until checked (then deleted), so none counts as lost for having
        # left the history; after it the history goes back to the default 100 before memory is read, so answered
        # synchronous jobs (kept, as a server keeps them) do not pile up as apparent growth.
        queue = app.state.server.queue
        history = queue.keep_finished
        server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=args.port, log_level="warning"))
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.05)
        base, mix = f"http://127.0.0.1:{args.port}", _requests(prompt, size)
        if args.trace:
            tracemalloc.start(8)
        heap = f" {'py MiB':>7}" if args.trace else ""
        print(f"{'round':>5} {'requests':>8} {'req/s':>7} {'p50 ms':>8} {'p95 ms':>8} {'RSS MiB':>8}{heap}  statuses; jobs")
        all_statuses: Counter = Counter()
        memory, lost, snapshots = [], 0, []
        for round_no in range(1, args.rounds + 1):
            latencies, statuses, jobs, lock = [], Counter(), [], threading.Lock()
            queue.keep(10**6)
            stop = time.monotonic() + args.seconds
            threads = [threading.Thread(target=_client, args=(base, stop, mix, latencies, statuses, jobs, lock))
                       for _ in range(args.clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
            states = _wait_for_jobs(base, jobs)
            lost += sum(n for state, n in states.items() if state not in FINISHED)
            queue.keep(history)
            memory.append(_rss_mib())
            if args.trace:
                snapshots.append(tracemalloc.take_snapshot())
                heap = f" {tracemalloc.get_traced_memory()[0] / 2**20:>7.1f}"
            all_statuses += statuses
            q = statistics.quantiles(latencies, n=20) if len(latencies) > 1 else [0.0] * 19
            print(f"{round_no:>5} {len(latencies):>8} {len(latencies) / args.seconds:>7.1f} {q[9] * 1e3:>8.1f} "
                  f"{q[18] * 1e3:>8.1f} {memory[-1]:>8.0f}{heap}  {dict(sorted(statuses.items()))}; {dict(states)}")
        server.should_exit = True
        thread.join(10)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    server_errors = sum(n for status, n in all_statuses.items() if status >= 500)
    growth = memory[-1] - memory[0] if len(memory) > 1 else 0.0
    # The first rounds fill allocator pools, thread pools and caches; a leak shows as growth that goes on after them.
    half = len(memory) // 2
    settled = f"; over rounds {half + 1} to {len(memory)}: {memory[-1] - memory[half]:+.0f} MiB" if half >= 2 else ""
    print(f"peak RSS {peak:.0f} MiB; 5xx responses: {server_errors}; jobs lost: {lost}; "
          f"RSS change from round 1 to {len(memory)}: {growth:+.0f} MiB{settled}")
    if len(snapshots) > 1:
        print("Python allocations that grew most from round 1 to the last:")
        for stat in snapshots[-1].compare_to(snapshots[0], "lineno")[:8]:
            print(f"  {stat.size_diff / 2**10:+9.1f} KiB  {stat.count_diff:+7d} blocks  {stat.traceback[0]}")


if __name__ == "__main__":
    main()
