"""Load benchmark of `bastion serve` against a bare model server: throughput, p50/p99 latency, CPU per request.

Servers, each a subprocess on a free 127.0.0.1 port (OMP_NUM_THREADS as given, 1 by default):
the guard with micro-batching (the default: dispatch at once when the model is idle, gather while
it is busy), the guard with --no-batching, and a bare FastAPI + uvicorn server that parses the
same OIP v2 request and runs the same model, without the guard (`bare_app`). zoo:mnist-cnn-at,
calibrated on its default held-out 1,000 images.

Load: at 1, 8, 32 and 64 concurrent clients, spread over several load-generator processes (so the
client is not the bottleneck), each an asyncio client with keep-alive connections that sends the
next one-image request when the last is answered, with pre-built request bytes. The CPU per
request is the server process's user + system time (/proc/PID/stat) over the measured load,
divided by the requests answered. The summary lines compare what issue 25 asks for: a lone
client's p50 with batching over --no-batching (<= 1.25), the throughput with batching over
without at 8+ clients (>= 1.3), and the guard's CPU per request over the bare server's (<= 1.5).

    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py [--requests 2000] [--clients 1 8 32 64] [--processes 4]
        [--server-cpus 0 --client-cpus 1 ...]   (pinning keeps the load generators off the server's CPU)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import torch
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from bastion.models import load_model

MODEL = "zoo:mnist-cnn-at"
PATH = f"/v2/models/{MODEL}/infer"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def bare_app(channels_last: bool = False) -> FastAPI:
    """A bare OIP v2 model server: parse the request, run the model, answer the labels. No guard.

    `channels_last`: the model in the layout the guard serves it in (`bastion.serve.layout`), for a
    comparison of the guard's own work alone.
    """
    model = load_model(MODEL, device="cpu").module.eval()
    if channels_last:
        from bastion.data import load_dataset
        from bastion.serve.layout import adopt_channels_last

        adopt_channels_last(model, load_dataset("mnist-sample:eval", limit=64).images.float() / 255.0)
    app = FastAPI()

    @app.post(PATH)
    async def infer(request: Request) -> JSONResponse:
        tensor = json.loads(await request.body())["inputs"][0]
        x = torch.from_numpy(np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"]))
        if tensor["datatype"] == "UINT8":
            x = x / 255.0
        with torch.no_grad():
            labels = model(x).argmax(dim=1).tolist()
        return JSONResponse({"model_name": MODEL, "outputs": [{"name": "label", "datatype": "INT64",
                                                               "shape": [len(labels)], "data": labels}]})

    return app


def start_server(kind: str, port: int) -> subprocess.Popen[str]:
    if kind == "bare":
        command = [sys.executable, __file__, "--bare-server", str(port), *(["--bare-channels-last"] if BARE_CL else [])]
    else:
        command = [sys.executable, "-m", "bastion", "serve", "--model", MODEL, "--device", "cpu", "--fpr", "0.05",
                   "--port", str(port), "--max-items", "64", *GUARD_ARGS] + (["--no-batching"] if kind ==
                                                                                "guard, no batching" else [])
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    if SERVER_CPUS:
        command = ["taskset", "-c", ",".join(map(str, SERVER_CPUS)), *command]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            response = httpx.post(f"http://127.0.0.1:{port}{PATH}", content=BODIES[0], timeout=2)
            if response.status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.3)
    proc.kill()
    raise SystemExit(f"the {kind} server did not start")


async def load(port: int, bodies: list[bytes], requests: int, connections: int) -> tuple[list[float], int]:
    """`connections` keep-alive connections sharing `requests` requests; each sends when its last is answered."""
    raw = [f"POST {PATH} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    latencies: list[float] = []
    failed = 0
    counter = iter(range(requests))

    async def client() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        try:
            for i in counter:
                start = time.perf_counter()
                writer.write(raw[i % len(raw)])
                await writer.drain()
                head = await reader.readuntil(b"\r\n\r\n")
                status = int(head.split(b" ", 2)[1])
                length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                              if line.lower().startswith(b"content-length:"))
                await reader.readexactly(length)
                latencies.append(time.perf_counter() - start)
                failed += status != 200
        except (OSError, asyncio.IncompleteReadError):
            failed += 1
        finally:
            writer.close()

    await asyncio.gather(*(client() for _ in range(connections)))
    return latencies, failed


def _generator(job: tuple[int, int, int, float]) -> tuple[list[float], int, float, float]:
    port, requests, connections, start_at = job
    time.sleep(max(0.0, start_at - time.time()))  # every process starts together
    start = time.time()
    latencies, failed = asyncio.run(load(port, BODIES, requests, connections))
    return latencies, failed, start, time.time()


def split(total: int, parts: int) -> list[int]:
    """`total` as `parts` near-equal whole shares (the larger first)."""
    return [total // parts + (i < total % parts) for i in range(parts)]


def measure(pool: Any, pid: int, port: int, requests: int, clients: int, processes: int) -> dict[str, float]:
    procs = min(processes, clients)
    start_at = time.time() + 0.5
    jobs = [(port, r, c, start_at) for r, c in zip(split(requests, procs), split(clients, procs), strict=True)]
    cpu = cpu_seconds(pid)
    results = pool.map(_generator, jobs)
    cpu = cpu_seconds(pid) - cpu
    latencies = sorted(v for r in results for v in r[0])
    wall = max(r[3] for r in results) - min(r[2] for r in results)
    return {"rps": len(latencies) / wall, "p50": 1000 * statistics.median(latencies),
            "p99": 1000 * latencies[min(len(latencies) - 1, int(0.99 * len(latencies)))],
            "cpu_ms": 1000 * cpu / max(1, len(latencies)), "failed": float(sum(r[1] for r in results))}


def _pin_clients() -> None:
    if CLIENT_CPUS:
        os.sched_setaffinity(0, CLIENT_CPUS)


def run(args: argparse.Namespace) -> None:
    pinned = (f"; server pinned to CPUs {SERVER_CPUS}, load generators to {CLIENT_CPUS}" if SERVER_CPUS or CLIENT_CPUS
              else "")
    print(f"{args.requests} one-image OIP requests per row, {args.processes} load-generator processes, loopback; "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', '1')}{pinned}"
          + (f"; guard flags: {' '.join(GUARD_ARGS)}" if GUARD_ARGS else "")
          + ("; bare model in channels-last layout" if BARE_CL else ""))
    print(f"{'server':<20}{'clients':>8}{'req/s':>9}{'p50 ms':>9}{'p99 ms':>9}{'CPU ms/req':>12}{'failed':>8}")
    table: dict[tuple[str, int], dict[str, float]] = {}
    with multiprocessing.get_context("fork").Pool(args.processes, initializer=_pin_clients) as pool:
        for kind in ("guard, batching", "guard, no batching", "bare"):
            port = free_port()
            proc = start_server(kind, port)
            try:
                measure(pool, proc.pid, port, min(200, args.requests), 8, args.processes)  # warm-up
                for clients in args.clients:
                    row = table[kind, clients] = measure(pool, proc.pid, port, args.requests, clients, args.processes)
                    print(f"{kind:<20}{clients:>8}{row['rps']:>9.1f}{row['p50']:>9.1f}{row['p99']:>9.1f}"
                          f"{row['cpu_ms']:>12.2f}{int(row['failed']):>8d}")
            finally:
                proc.send_signal(signal.SIGTERM)
                proc.wait(timeout=60)
    on, off, bare = "guard, batching", "guard, no batching", "bare"
    if 1 in args.clients:
        print(f"\nlone client p50, batching / no batching: {table[on, 1]['p50'] / table[off, 1]['p50']:.2f} "
              "(issue 25: <= 1.25)")
    for clients in (c for c in args.clients if c >= 8):
        speedup = table[on, clients]["rps"] / table[off, clients]["rps"]
        cost = table[on, clients]["cpu_ms"] / table[bare, clients]["cpu_ms"]
        print(f"{clients} clients: throughput batching / no batching {speedup:.2f} (>= 1.3); "
              f"CPU per request guard / bare {cost:.2f} (<= 1.5)")


def _bodies() -> list[bytes]:
    from bastion.data import load_dataset

    images = load_dataset("mnist-sample:eval").images
    # UINT8 pixels, as a camera sends them; encoded once, so the clients' CPU goes to HTTP, not JSON.
    return [json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "UINT8",
                                    "data": images[i].flatten().tolist()}]}).encode() for i in range(500)]


BODIES: list[bytes] = []
SERVER_CPUS: list[int] = []
GUARD_ARGS: list[str] = []
BARE_CL: list[bool] = []
CLIENT_CPUS: list[int] = []


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000, help="requests per row")
    parser.add_argument("--clients", type=int, nargs="+", default=[1, 8, 32, 64])
    parser.add_argument("--processes", type=int, default=4, help="load-generator processes")
    parser.add_argument("--server-cpus", type=int, nargs="+", default=[], help="pin the servers to these CPUs")
    parser.add_argument("--client-cpus", type=int, nargs="+", default=[], help="pin the load generators to these CPUs")
    parser.add_argument("--guard-args", default="", help="more `bastion serve` flags for the guard, e.g. "
                        "'--squeezers bit-depth:1'")
    parser.add_argument("--bare-channels-last", action="store_true", help="the bare server's model in the "
                        "channels-last layout the guard adopts (default: as loaded, NCHW)")
    parser.add_argument("--bare-server", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_channels_last:
        BARE_CL.append(True)
    GUARD_ARGS.extend(args.guard_args.split())
    SERVER_CPUS.extend(args.server_cpus)
    CLIENT_CPUS.extend(args.client_cpus)
    if args.bare_server is not None:
        import uvicorn

        torch.set_num_threads(1)
        uvicorn.run(bare_app(args.bare_channels_last), host="127.0.0.1", port=args.bare_server, log_level="warning")
        return
    BODIES.extend(_bodies())
    run(args)


if __name__ == "__main__":
    main()
