"""The asyncio face of ferrows: the protocol core runs on the event-loop thread.

``connect()`` for clients, ``serve()`` for servers, :class:`Listener` for the callback API.
"""

from .broadcast import broadcast
from .client import ClientConnection, connect, unix_connect
from .connection import Connection, Listener
from .server import Server, ServerConnection, serve, unix_serve

__all__ = [
    "ClientConnection",
    "Connection",
    "Listener",
    "Server",
    "ServerConnection",
    "broadcast",
    "connect",
    "serve",
    "unix_connect",
    "unix_serve",
]
