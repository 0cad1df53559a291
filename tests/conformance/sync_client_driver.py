"""Client driver on the ferrows sync face, for the Autobahn fuzzingserver.

Usage: sync_client_driver.py URL AGENT. Runs every case: echoes each message back until
the server closes the connection, then asks the server to write its reports.
"""

import sys

from ferrows.exceptions import ConnectionClosed, WebSocketException
from ferrows.sync.client import connect

OPTIONS = {"max_size": None, "ping_interval": None, "open_timeout": 30}


def run_case(url: str) -> None:
    try:
        with connect(url, **OPTIONS) as connection:
            for message in connection:
                connection.send(message)
    except ConnectionClosed:
        pass  # the case ended: how is the suite's to judge
    except WebSocketException as exc:
        print(f"{url}: {exc!r}", file=sys.stderr)


def main() -> None:
    base, agent = sys.argv[1], sys.argv[2]
    with connect(f"{base}/getCaseCount", **OPTIONS) as connection:
        count = int(connection.recv(timeout=30))
    for case in range(1, count + 1):
        run_case(f"{base}/runCase?case={case}&agent={agent}")
    with connect(f"{base}/updateReports?agent={agent}", **OPTIONS) as connection:
        connection.wait_closed(timeout=60)
    print(f"ran {count} cases", flush=True)


if __name__ == "__main__":
    main()
