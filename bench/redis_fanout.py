"""Messages per second end to end through Redis (ferrows.topics, issue 11): server processes
sharing one Redis, WebSocket clients subscribed on each, one process publishing.

    usage: python bench/redis_fanout.py [--messages N] [--processes P] [--clients C]
                                        [--size B] [--window W] [--loop asyncio|uvloop]

Starts Debian's redis-server on a loopback port and P server processes
(tests/asyncio/topics_server.py), opens C clients per process (in this process, on uvloop),
subscribed to one topic, then has process 0 publish N text messages of B bytes, W at a time
(``await publish()`` one after another when W is 1), and times from the command until every
client received all N. Then the same with the topics in one process (no Redis, P = 1) for
comparison. Prints messages/s (published and received by every client), deliveries/s, and the
CPU seconds each process used during the run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import uvloop
from ferrows.asyncio import ClientConnection, connect

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "asyncio"))

from redisserver import RedisServer
from topics_server import Control, ServerProcess

TOPIC = "bench"
TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU time of process ``pid`` so far (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICKS


async def receive(ws: ClientConnection, count: int, last: str) -> None:
    for _ in range(count):
        message = await ws.recv()
    assert message == last, f"last message {message!r}, expected {last!r}"


async def run(
    url: str | None, processes: int, clients: int, messages: int, size: int, window: int
) -> dict[str, float]:
    servers = [ServerProcess(url, "uvloop") for _ in range(processes)]
    try:
        subscribers = []
        for server in servers:
            for _ in range(clients):
                ws = await connect(f"ws://127.0.0.1:{server.port}/sub/{TOPIC}", max_size=None)
                assert (await ws.recv()).startswith("subscribed")
                subscribers.append(ws)
        control = await Control.open(servers[0].port)
        await control("wait_connected", timeout=30)
        prefix = "m" * (size - len(str(messages - 1)))
        pids = {f"server {i}": s.process.pid for i, s in enumerate(servers)}
        pids["bench clients"] = os.getpid()
        cpu_before = {name: cpu_seconds(pid) for name, pid in pids.items()}
        started = time.perf_counter()
        receivers = [
            asyncio.ensure_future(receive(ws, messages, f"{prefix}{messages - 1}"))
            for ws in subscribers
        ]
        answer = await control(
            "publish", timeout=600, topic=TOPIC, message=prefix, count=messages, window=window
        )
        published = time.perf_counter() - started
        await asyncio.wait_for(asyncio.gather(*receivers), 600)
        elapsed = time.perf_counter() - started
        cpu = {name: cpu_seconds(pid) - cpu_before[name] for name, pid in pids.items()}
        assert all(answer["published"]), "a publish was lost"
        stats = [await Control.open(s.port) for s in servers]
        for extra in stats:
            counters = await extra("stats")
            assert counters["skipped"] == counters["missed"] == 0, counters
        for ws in [*subscribers, control.ws, *(extra.ws for extra in stats)]:
            await ws.close()
        return {
            "published/s": messages / published,
            "end to end messages/s": messages / elapsed,
            "deliveries/s": messages * len(subscribers) / elapsed,
            **{f"CPU s {name}": seconds for name, seconds in cpu.items()},
        }
    finally:
        for server in servers:
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=20_000)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--clients", type=int, default=10, help="per process")
    parser.add_argument("--size", type=int, default=64, help="bytes per message")
    parser.add_argument("--window", type=int, default=1, help="publishes awaited at once")
    options = parser.parse_args()
    if options.size <= len(str(options.messages)):
        parser.error("--size must hold the message's index")
    with tempfile.TemporaryDirectory() as directory:
        redis_server = RedisServer(Path(directory)).start()
        redis_pid = redis_server.process.pid  # type: ignore[union-attr]
        try:
            redis_cpu = cpu_seconds(redis_pid)
            through_redis = uvloop.run(
                run(
                    redis_server.url,
                    options.processes,
                    options.clients,
                    options.messages,
                    options.size,
                    options.window,
                )
            )
            through_redis["CPU s redis-server"] = cpu_seconds(redis_pid) - redis_cpu
        finally:
            redis_server.stop()
    in_process = uvloop.run(
        run(None, 1, options.clients, options.messages, options.size, options.window)
    )
    print(
        f"{options.messages} messages of {options.size} B, {options.clients} clients per "
        f"process, {options.window} publish(es) awaited at once"
    )
    for name, figures in (
        (f"Redis, {options.processes} processes", through_redis),
        ("in one process, no Redis", in_process),
    ):
        print(f"\n{name}:")
        for key, value in figures.items():
            print(f"  {key:<28} {value:>12,.2f}")


if __name__ == "__main__":
    main()
