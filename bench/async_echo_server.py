"""An asyncio echo server on uvloop, for the benchmarks: ``async_echo_server.py KIND PORT``."""

from __future__ import annotations

import sys
from typing import Any

import uvloop


async def ferrows_server(port: int) -> None:
    from ferrows.asyncio import Listener, serve

    class Echo(Listener):
        def on_message(self, connection: Any, message: Any) -> None:
            connection.send_nowait(message)

    async with serve(
        None, "127.0.0.1", port, listener=Echo, max_size=None, ping_interval=None
    ) as server:
        await server.serve_forever()


async def picows_server(port: int) -> None:
    from picows import WSListener, WSMsgType, ws_create_server

    class Echo(WSListener):
        def on_ws_frame(self, transport: Any, frame: Any) -> None:
            if frame.msg_type == WSMsgType.CLOSE:
                transport.send_close(frame.get_close_code())
                transport.disconnect()
            elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
                transport.send(frame.msg_type, frame.get_payload_as_bytes(), frame.fin)

    server = await ws_create_server(lambda _: Echo(), "127.0.0.1", port, max_frame_size=1 << 30)
    await server.serve_forever()


if __name__ == "__main__":
    kind, port = sys.argv[1], int(sys.argv[2])
    uvloop.run({"ferrows": ferrows_server, "picows": picows_server}[kind](port))
