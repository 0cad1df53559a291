"""A ferrows sync echo server in a process of its own, for tests that watch the process.

    python server_process.py '{"max_connections": 100}'

Binds 127.0.0.1 on a free port with the given ``serve()`` options and prints the port, starts
``serve_forever()`` once a line arrives on stdin, and shuts the server down at EOF.
"""

from __future__ import annotations

import json
import sys
import threading

from ferrows.sync.server import ServerConnection, serve


def echo(connection: ServerConnection) -> None:
    for message in connection:
        connection.send(message)


def main() -> None:
    options = json.loads(sys.argv[1])
    with serve(echo, "127.0.0.1", 0, ping_interval=None, **options) as server:
        print(server.port, flush=True)
        if sys.stdin.readline():
            threading.Thread(target=server.serve_forever, daemon=True).start()
            sys.stdin.readline()


if __name__ == "__main__":
    main()
