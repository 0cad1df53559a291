"""wss:// connects per second with the sync client, against a local ferrows TLS server.

Issues a trustme CA and a certificate for 127.0.0.1 (in a temporary directory), starts a
ferrows sync TLS server in its own process, then opens and closes CONNECTS connections one
after the other, twice per run: trusting the CA on top of the system roots (the default)
and trusting the CA alone (``use_system_roots=False``). Prints the median of RUNS runs,
then the median time of CONNECTS connects to a port where nothing listens: what the
client prepares before connecting.

    python bench/tls_connect.py [--connects 200] [--runs 5]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from sync_clients import free_port, pin, wait_listening


def serve(port: int, certfile: str, keyfile: str) -> None:
    """The server process: accepts connections and lets each close."""
    from ferrows.sync.server import serve

    def handler(connection):
        for _ in connection:
            pass

    with serve(handler, "127.0.0.1", port, certfile=certfile, keyfile=keyfile) as server:
        server.serve_forever()


def connects_per_second(url: str, connects: int, **tls: object) -> float:
    """Times `connects` sequential opening and closing handshakes."""
    from ferrows.sync.client import connect

    started = time.perf_counter()
    for _ in range(connects):
        connect(url, open_timeout=10, ping_interval=None, **tls).close()
    return connects / (time.perf_counter() - started)


def refused_connect_seconds(connects: int, **tls: object) -> float:
    """The median time of a wss:// connect to a port where nothing listens: the refusal is
    immediate, so this is what the client prepares before connecting (TLS setup included)."""
    from ferrows.sync.client import connect

    url = f"wss://127.0.0.1:{free_port()}/"
    times = []
    for _ in range(connects):
        started = time.perf_counter()
        try:
            connect(url, open_timeout=10, **tls)
        except ConnectionRefusedError:
            times.append(time.perf_counter() - started)
    return statistics.median(times)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connects", type=int, default=200)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    import trustme

    with tempfile.TemporaryDirectory() as directory:
        ca = trustme.CA()
        leaf = ca.issue_cert("127.0.0.1")
        ca_pem, cert_pem, key_pem = (Path(directory) / n for n in ("ca.pem", "c.pem", "k.pem"))
        ca.cert_pem.write_to_path(str(ca_pem))
        cert_pem.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key_pem))

        port = free_port()
        command = [sys.executable, __file__, "--serve", str(port), str(cert_pem), str(key_pem)]
        server = subprocess.Popen(command, preexec_fn=pin())
        try:
            wait_listening(port)
            url = f"wss://127.0.0.1:{port}/"
            modes = {
                "CA + system roots": {"cafile": ca_pem},
                "CA only": {"cafile": ca_pem, "use_system_roots": False},
            }
            results: dict[str, list[float]] = {name: [] for name in modes}
            for _ in range(args.runs):
                for name, tls in modes.items():
                    results[name].append(connects_per_second(url, args.connects, **tls))
            setup = {
                name: refused_connect_seconds(args.connects, **tls) for name, tls in modes.items()
            }
        finally:
            server.terminate()
            server.wait(10)
    print(
        f"sequential wss:// connects/s, ferrows sync client and server "
        f"(server CPU 0, client CPU 1), median of {args.runs} x {args.connects}"
    )
    for name, values in results.items():
        spread = f"{min(values):,.0f}-{max(values):,.0f}"
        print(f"  {name:18} {statistics.median(values):>8,.0f}  ({spread})")
    print(f"median time of a refused connect (client preparation), of {args.connects}")
    for name, seconds in setup.items():
        print(f"  {name:18} {seconds * 1000:>8.3f} ms")
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        serve(int(sys.argv[2]), sys.argv[3], sys.argv[4])
        sys.exit(0)
    sys.exit(main())
