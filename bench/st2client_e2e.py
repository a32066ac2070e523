"""End-to-end throughput of the official Python client (st2client) against an st2 API.

Creates N `core.noop` executions with st2client.client.Client and follows each to a terminal
status by polling `executions.get_by_id`, the way a script on st2client does it (the st2 CLI's
own `st2 run` polls every 2 s; here the interval is --poll-interval, 10 ms by default, which is
kind to st2client). Runs sequentially and with a pool of threads, and prints executions/s.

    python bench/st2client_e2e.py --base-url http://127.0.0.1:PORT --api-key KEY
    (bench/st2client-e2e.sh starts an emulator and runs this in the pinned virtualenv)
"""

import argparse
import json
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from st2client.client import Client
from st2client.models import LiveAction

# st2's LIVEACTION_COMPLETED_STATES.
TERMINAL = {"succeeded", "failed", "timeout", "canceled", "abandoned"}

_local = threading.local()


def client(args):
    # One Client per thread: st2client keeps per-instance state and makes no thread-safety promise.
    if getattr(_local, "client", None) is None:
        base = args.base_url.rstrip("/")
        _local.client = Client(
            base_url=base,
            api_url=base + "/api/v1",
            auth_url=base + "/auth/v1",
            stream_url=base + "/stream/v1",
            api_key=args.api_key,
        )
    return _local.client


def run_one(args):
    """Create one execution and poll it to a terminal status; returns that status."""
    c = client(args)
    execution = c.executions.create(LiveAction(action=args.action, parameters={}))
    deadline = time.monotonic() + args.timeout
    while execution.status not in TERMINAL:
        if time.monotonic() > deadline:
            return "deadline exceeded"
        time.sleep(args.poll_interval)
        execution = c.executions.get_by_id(execution.id)
    return execution.status


def measure(args, concurrency):
    started = time.perf_counter()
    if concurrency == 1:
        statuses = [run_one(args) for _ in range(args.count)]
    else:
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            statuses = list(pool.map(lambda _: run_one(args), range(args.count)))
    elapsed = time.perf_counter() - started
    by_status = {}
    for s in statuses:
        by_status[s] = by_status.get(s, 0) + 1
    return {
        "client": "st2client",
        "concurrency": concurrency,
        "executions": args.count,
        "seconds": round(elapsed, 3),
        "executions_per_s": round(args.count / elapsed, 1),
        "statuses": by_status,
    }


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--base-url", required=True, help="st2 (or st2-emulator) base URL")
    p.add_argument("--api-key", required=True)
    p.add_argument("--action", default="core.noop")
    p.add_argument("--count", type=int, default=1000)
    p.add_argument(
        "--concurrency", default="1,32", help="comma-separated thread counts (1 = sequential)"
    )
    p.add_argument("--poll-interval", type=float, default=0.01, help="seconds between polls")
    p.add_argument("--timeout", type=float, default=60.0, help="per-execution deadline, seconds")
    p.add_argument("--json", action="store_true", help="print one JSON object per run")
    args = p.parse_args()

    ok = True
    # A few executions first so connections, imports and the server's caches are warm.
    for _ in range(5):
        run_one(args)
    for concurrency in [int(c) for c in args.concurrency.split(",")]:
        r = measure(args, concurrency)
        ok = ok and r["statuses"] == {"succeeded": args.count}
        if args.json:
            print(json.dumps(r), flush=True)
        else:
            mode = "sequential" if concurrency == 1 else "%d at a time" % concurrency
            print(
                "st2client  %-14s %5d executions  %8.2f s  %8.1f executions/s  %s"
                % (mode, r["executions"], r["seconds"], r["executions_per_s"], r["statuses"]),
                flush=True,
            )
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
