"""WebSocket echo endpoints for FastAPI and Starlette, served by uvicorn on ferrows.

    uvicorn echo:app --ws ferrows.asgi:FerrowsProtocol              (FastAPI)
    uvicorn echo:starlette_app --ws ferrows.asgi:FerrowsProtocol    (Starlette)
    python echo.py                                                  (FastAPI, uvicorn.run)

Each serves ``ws://127.0.0.1:8000/echo``: text comes back as text, bytes as bytes.
"""

from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute

app = FastAPI()


@app.websocket("/echo")
async def echo(websocket: WebSocket) -> None:
    await websocket.accept()
    try:
        while True:
            message = await websocket.receive()
            if message["type"] == "websocket.disconnect":
                return
            if message.get("text") is not None:
                await websocket.send_text(message["text"])
            else:
                await websocket.send_bytes(message["bytes"])
    except WebSocketDisconnect:
        pass


# The same endpoint in a plain Starlette application.
starlette_app = Starlette(routes=[WebSocketRoute("/echo", echo)])


if __name__ == "__main__":
    import uvicorn

    from ferrows.asgi import FerrowsProtocol

    uvicorn.run(app, host="127.0.0.1", port=8000, ws=FerrowsProtocol)
