"""Message conversions shared by the sync and asyncio faces."""

from __future__ import annotations

from typing import Union

Data = Union[str, bytes]
"""A message: ``str`` for text, ``bytes`` for binary."""


def payload(data: object) -> Data:
    """str and bytes as they are; other bytes-like objects copied to bytes."""
    if isinstance(data, (str, bytes)):
        return data
    if isinstance(data, (bytearray, memoryview)):
        return bytes(data)
    raise TypeError(f"data must be str or a bytes-like object, not {type(data).__name__}")


def decoded(data: Data, decode: bool | None) -> Data:
    """Applies ``recv(decode=)``: False gives text as bytes, True binary as str."""
    if decode is False and isinstance(data, str):
        return data.encode()
    if decode is True and isinstance(data, bytes):
        return data.decode()
    return data


def typed(data: Data, text: bool | None) -> Data:
    """Applies ``send(text=)``: True sends bytes as text (UTF-8), False str as binary."""
    if text is True and isinstance(data, bytes):
        return data.decode()
    if text is False and isinstance(data, str):
        return data.encode()
    return data


def fragment(item: object, text: bool | None, first_type: type | None) -> Data:
    """One fragment of a message sent from an iterable: all must be of the first's type."""
    data = typed(payload(item), text)
    if first_type is not None and type(data) is not first_type:
        raise TypeError("all fragments of a message must be str, or all bytes-like")
    return data
