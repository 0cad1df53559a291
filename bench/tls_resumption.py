"""Connections per second to a local wss:// server, opened one after another by the sync
client, with and without TLS session resumption (issue 12).

    usage: python bench/tls_resumption.py [--connections N] [--rounds R] [--key ecdsa|rsa]

A ferrows sync server with a trustme certificate listens on 127.0.0.1; the client times
each ``connect()`` (TCP, TLS, the WebSocket handshake) and the process's CPU time during it (client
and server), then closes the connection outside the timing. The settings alternate
connection by connection; the figures are the medians of the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import threading
import time
from pathlib import Path

import ferrows.sync
import trustme


def drain(connection: ferrows.sync.ServerConnection) -> None:
    for _ in connection:
        pass


def measure(url: str, ca: Path, connections: int) -> dict[bool, tuple[float, float]]:
    """Wall and CPU seconds spent in ``connect()``, per setting. The settings alternate
    connection by connection, so both see the same load on a shared machine; each keeps its
    own TLS configuration, hence its own session cache."""
    spent = {True: [0.0, 0.0], False: [0.0, 0.0]}
    for _ in range(connections):
        for resumption in (True, False):
            wall, cpu = time.perf_counter(), time.process_time()
            client = ferrows.sync.connect(
                url,
                cafile=ca,
                use_system_roots=False,
                tls_session_resumption=resumption,
                proxy=None,
                compression=None,
            )
            spent[resumption][0] += time.perf_counter() - wall
            spent[resumption][1] += time.process_time() - cpu
            client.close()
    return {mode: (wall, cpu) for mode, (wall, cpu) in spent.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--key", choices=["ecdsa", "rsa"], default="ecdsa")
    args = parser.parse_args()
    key_type = trustme.KeyType.RSA if args.key == "rsa" else trustme.KeyType.ECDSA
    authority = trustme.CA(key_type=key_type)
    leaf = authority.issue_cert("127.0.0.1", key_type=key_type)
    with tempfile.TemporaryDirectory() as directory:
        ca, cert, key = (Path(directory) / name for name in ("ca.pem", "cert.pem", "key.pem"))
        authority.cert_pem.write_to_path(str(ca))
        cert.write_bytes(b"".join(blob.bytes() for blob in leaf.cert_chain_pems))
        leaf.private_key_pem.write_to_path(str(key))
        server = ferrows.sync.serve(drain, "127.0.0.1", 0, certfile=cert, keyfile=key)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        url = f"wss://127.0.0.1:{server.port}/"
        rounds = []
        try:
            for _ in range(args.rounds):
                rounds.append(measure(url, ca, args.connections))
        finally:
            server.shutdown()
            thread.join(10)
    for resumption, label in ((True, "with resumption"), (False, "without resumption")):
        rates = [args.connections / spent[resumption][0] for spent in rounds]
        cpu = [spent[resumption][1] / args.connections * 1e6 for spent in rounds]
        print(
            f"{label:20} {statistics.median(rates):6.0f} connects/s, "
            f"{statistics.median(cpu):6.0f} us CPU per connect (both ends) "
            f"(rounds: {', '.join(f'{v:.0f}' for v in rates)})"
        )
    ratios = [spent[True][0] and spent[False][0] / spent[True][0] for spent in rounds]
    print(f"resumption: {statistics.median(ratios):.2f}x the connects/s ({args.key} certificate)")


if __name__ == "__main__":
    main()
