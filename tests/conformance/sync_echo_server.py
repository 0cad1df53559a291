"""Echo server on the ferrows sync face, for the Autobahn fuzzingclient.

Usage: sync_echo_server.py PORT. Limits are raised as every project does for this suite
(section 9 sends 16 MiB messages); keepalive is off so pings don't mix into the cases.
"""

import sys

from ferrows.exceptions import ConnectionClosed
from ferrows.sync.server import ServerConnection, serve


def echo(connection: ServerConnection) -> None:
    try:
        for message in connection:
            connection.send(message)
    except ConnectionClosed:
        pass


def main() -> None:
    port = int(sys.argv[1])
    with serve(echo, "127.0.0.1", port, max_size=None, ping_interval=None) as server:
        print(f"listening on {server.port}", flush=True)
        server.serve_forever()


if __name__ == "__main__":
    main()
