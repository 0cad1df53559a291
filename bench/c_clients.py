"""Echo round trips per second for C clients against one server: ferrows vs libwebsockets.

Builds bench/c/ferrows_rtt.c (against target/release/libferrows) and bench/c/lws_rtt.c
(against Debian's libwebsockets-dev), starts one echo server in its own process (ferrows'
Python sync server by default, or websockets' asyncio server), and runs both clients in
turn, interleaved, RUNS times. Prints medians and the ratio.

    python bench/c_clients.py [--size 256] [--rounds 10000] [--runs 5] [--server ferrows]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from pathlib import Path

from sync_clients import SERVERS, free_port, pin, wait_listening

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "target" / "bench"


def build() -> tuple[Path, Path]:
    OUT.mkdir(parents=True, exist_ok=True)
    lib = ROOT / "target" / "release"
    # Programs look the library up by its soname: give it that name beside them.
    soname = OUT / "libferrows.so.0.1"
    soname.unlink(missing_ok=True)
    soname.symlink_to(lib / "libferrows.so")
    flags = ["cc", "-O2", "-Wall", "-Wextra", "-Werror"]
    ferrows = OUT / "ferrows_rtt"
    subprocess.run(
        [
            *flags,
            f"-I{ROOT / 'include'}",
            "-o",
            str(ferrows),
            str(ROOT / "bench/c/ferrows_rtt.c"),
            f"-L{lib}",
            "-lferrows",
            f"-Wl,-rpath,{OUT}",
        ],
        check=True,
    )
    lws_flags = subprocess.run(
        ["pkg-config", "--cflags", "--libs", "libwebsockets"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    lws = OUT / "lws_rtt"
    subprocess.run(
        [*flags, "-o", str(lws), str(ROOT / "bench/c/lws_rtt.c"), *lws_flags], check=True
    )
    return ferrows, lws


def run(command: list[str]) -> float:
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, check=True)
    return float(result.stdout.strip())


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--rounds", type=int, default=10000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--server", choices=sorted(SERVERS), default="ferrows")
    args = parser.parse_args()
    ferrows, lws = build()
    port = free_port()
    server = subprocess.Popen([*SERVERS[args.server], str(port)], preexec_fn=pin())
    results: dict[str, list[float]] = {"ferrows (C)": [], "libwebsockets 4.1": []}
    try:
        wait_listening(port)
        for _ in range(args.runs):
            results["ferrows (C)"].append(
                run([str(ferrows), f"ws://127.0.0.1:{port}/", str(args.size), str(args.rounds)])
            )
            results["libwebsockets 4.1"].append(
                run([str(lws), "127.0.0.1", str(port), str(args.size), str(args.rounds)])
            )
    finally:
        server.terminate()
        server.wait(10)
    base = statistics.median(results["ferrows (C)"])
    print(
        f"{args.size}-byte echo round trips/s, {args.server} server (CPU 0, clients CPU 1), "
        f"median of {args.runs} x {args.rounds}"
    )
    for name, values in results.items():
        median = statistics.median(values)
        print(
            f"  {name:18} {median:>10,.0f}  ({min(values):,.0f}-{max(values):,.0f})"
            f"  ferrows/this = {base / median:.2f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
