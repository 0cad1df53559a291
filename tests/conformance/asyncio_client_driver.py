"""Client driver on the ferrows asyncio face, for the Autobahn fuzzingserver.

Usage: asyncio_client_driver.py URL AGENT. Runs every case, echoing each message until the
server closes the connection, then asks the server to write its reports.
"""

import asyncio
import sys

from ferrows.asyncio import connect
from ferrows.exceptions import ConnectionClosed, WebSocketException

OPTIONS = {"max_size": None, "ping_interval": None, "open_timeout": 30}


async def run_case(url: str) -> None:
    try:
        async with connect(url, **OPTIONS) as connection:
            async for message in connection:
                await connection.send(message)
    except ConnectionClosed:
        pass  # the case ended: how is the suite's to judge
    except WebSocketException as exc:
        print(f"{url}: {exc!r}", file=sys.stderr)


async def main() -> None:
    base, agent = sys.argv[1], sys.argv[2]
    async with connect(f"{base}/getCaseCount", **OPTIONS) as connection:
        count = int(await asyncio.wait_for(connection.recv(), 30))
    for case in range(1, count + 1):
        await run_case(f"{base}/runCase?case={case}&agent={agent}")
    connection = await connect(f"{base}/updateReports?agent={agent}", **OPTIONS)
    await asyncio.wait_for(connection.wait_closed(), 60)
    print(f"ran {count} cases", flush=True)


if __name__ == "__main__":
    asyncio.run(main())
