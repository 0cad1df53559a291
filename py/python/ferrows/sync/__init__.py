"""The threaded face of ferrows: ``connect()`` and ``reconnect()`` for clients, ``serve()``
for servers."""

from .broadcast import broadcast
from .client import ClientConnection, connect, reconnect
from .connection import Connection
from .server import Server, ServerConnection, serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "broadcast",
    "connect",
    "reconnect",
    "serve",
]
