"""The threaded face of ferrows: ``connect()`` and ``reconnect()`` for clients, ``serve()``
for servers."""

from .client import ClientConnection, connect, reconnect
from .connection import Connection
from .server import Server, ServerConnection, serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Server",
    "ServerConnection",
    "connect",
    "reconnect",
    "serve",
]
