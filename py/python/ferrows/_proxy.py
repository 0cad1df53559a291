"""The ``proxy=`` option of both client faces, as ``websockets`` reads it."""

from __future__ import annotations

import os
from typing import Literal, Union

from . import _ferrows

ProxyOption = Union[str, Literal[True], None]
"""``True``: the proxy the environment names (the default); ``None``: none; or a URL."""


def proxy_url(proxy: ProxyOption, uri: str) -> str | None:
    """The proxy URL to connect to ``uri`` through, or None to connect directly. The
    environment is read by the core, with websockets' variables and order
    (docs/proxies.md)."""
    if proxy is True:
        return _ferrows.proxy_from_environment(uri, os.environ)
    if proxy is not None and not isinstance(proxy, str):
        raise TypeError(f"proxy must be True, None or a URL, not {proxy!r}")
    return proxy
