"""Load test of `bastion serve` on loopback: throughput and latency, micro-batching on and off; the guard's cost.

Starts `bastion serve` (zoo:mnist-cnn-at, feature squeezing calibrated on 1,000 held-out images) as
a subprocess on a free 127.0.0.1 port, sends a bounded number of one-image OIP infer requests from
a bounded number of concurrent clients, and prints throughput, p50/p99 latency, failed requests
and the server's resident memory before and after, for batching on (32 inputs, 10 ms) and off.
Then, in-process, the guard's time over the bare model's forward pass at the same batch size.

    OMP_NUM_THREADS=1 python benchmarks/bench_serve.py [--requests 2000] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx
import torch

from bastion.data import load_dataset


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def start_server(port: int, batching: bool) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "bastion", "serve", "--model", "zoo:mnist-cnn-at", "--device", "cpu",
               "--calibration", "mnist-sample:eval", "--calibration-limit", "1000", "--fpr", "0.01",
               "--port", str(port), "--max-items", "64", "--drift-window", "200"]
    command += ["--max-batch", "32", "--max-wait-ms", "10"] if batching else ["--no-batching"]
    env = {**os.environ, "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/v2/health/ready", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not start")


async def load(url: str, bodies: list[bytes], requests: int, concurrency: int) -> tuple[list[float], int, float]:
    """`concurrency` keep-alive connections, each sending its next request when the last is answered.

    A minimal HTTP/1.1 client on asyncio streams (pre-built request bytes, Content-Length framing):
    on a small machine a full client library spends more CPU per request than the server does.
    """
    host, port = url.removeprefix("http://").split(":")
    path = "/v2/models/zoo:mnist-cnn-at/infer"
    raw = [f"POST {path} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
           f"Content-Length: {len(b)}\r\n\r\n".encode() + b for b in bodies]
    latencies: list[float] = []
    failed = 0
    counter = iter(range(requests))

    async def client() -> None:
        nonlocal failed
        reader, writer = await asyncio.open_connection(host, int(port))
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

    start = time.perf_counter()
    await asyncio.gather(*(client() for _ in range(concurrency)))
    return latencies, failed, time.perf_counter() - start


def server_mean(metrics: str, name: str, labels: str) -> float:
    """Mean of a Prometheus histogram (sum / count) from the text format, over warm-up and load."""
    def value(suffix: str) -> float:
        for line in metrics.splitlines():
            if line.startswith(name + suffix) and labels in line:
                return float(line.rsplit(" ", 1)[1])
        return float("nan")
    return value("_sum") / value("_count")


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def run_load(args: argparse.Namespace, bodies: list[bytes]) -> None:
    print(f"load test: {args.requests} one-image requests, {args.concurrency} concurrent clients, loopback")
    print(f"{'batching':<22}{'req/s':>8}{'p50 ms':>9}{'p99 ms':>9}{'failed':>8}{'RSS MB start':>14}{'RSS MB end':>12}"
          f"{'server ms':>11}{'mean batch':>12}")
    for batching in (True, False):
        port = free_port()
        proc = start_server(port, batching)
        try:
            url = f"http://127.0.0.1:{port}"
            asyncio.run(load(url, bodies, min(200, args.requests), args.concurrency))  # warm-up
            before = rss_mb(proc.pid)
            latencies, failed, wall = asyncio.run(load(url, bodies, args.requests, args.concurrency))
            after = rss_mb(proc.pid)
            metrics = httpx.get(url + "/metrics").text
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=60)
        label = "on (32 inputs, 10 ms)" if batching else "off"
        server_ms = 1000 * server_mean(metrics, "bastion_request_duration_seconds", 'route="infer"')
        print(f"{label:<22}{args.requests / wall:>8.1f}{1000 * statistics.median(latencies):>9.1f}"
              f"{1000 * pct(latencies, 0.99):>9.1f}{failed:>8d}{before:>14.1f}{after:>12.1f}"
              f"{server_ms:>11.1f}"
              f"{server_mean(metrics, 'bastion_batch_size', ''):>12.1f}")


def guard_overhead(x: torch.Tensor) -> None:
    from bastion.serve import build_server, load_config

    server = build_server(load_config(None, {"guard": {"fpr": 0.01}, "model": {"device": "cpu"}}),
                          calibration=x[1000:])
    model, guard = server.guard.model, server.guard
    print("\nguard overhead (in-process, no HTTP): seconds per batch, median of 20")
    print(f"{'batch':>6}{'bare model ms':>15}{'guard ms':>10}{'ratio':>7}")
    for size in (1, 32):
        batch = x[:size]
        bare, guarded = [], []
        for _ in range(20):
            start = time.perf_counter()
            with torch.no_grad():
                model(batch)
            bare.append(time.perf_counter() - start)
            start = time.perf_counter()
            guard.run(batch)
            guarded.append(time.perf_counter() - start)
        b, g = statistics.median(bare), statistics.median(guarded)
        print(f"{size:>6}{1000 * b:>15.2f}{1000 * g:>10.2f}{g / b:>7.1f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=32)
    args = parser.parse_args()
    torch.set_num_threads(1)
    data = load_dataset("mnist-sample:eval")
    x = data.images.float() / 255.0
    # Bodies encoded once (UINT8 pixels, as a camera sends them): the client's CPU goes to HTTP, not JSON.
    bodies = [json.dumps({"inputs": [{"name": "input", "shape": [1, 1, 28, 28], "datatype": "UINT8",
                                      "data": data.images[i].flatten().tolist()}]}).encode() for i in range(500)]
    run_load(args, bodies)
    guard_overhead(x)


if __name__ == "__main__":
    main()
