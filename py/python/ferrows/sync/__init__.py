"""The threaded face of ferrows: ``connect()`` for clients, ``serve()`` for servers."""

from .client import ClientConnection, connect
from .connection import Connection
from .server import Server, ServerConnection, serve

__all__ = ["ClientConnection", "Connection", "Server", "ServerConnection", "connect", "serve"]
