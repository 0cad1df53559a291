"""permessage-deflate (RFC 7692) settings, the same for every face.

``compression="deflate"`` (the default) offers it as a client
(``permessage-deflate; client_max_window_bits``) and accepts it as a server with 12-bit
windows both ways; ``compression=None`` turns it off; a :class:`Deflate` gives every setting.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Union

__all__ = ["Compression", "Deflate"]


@dataclasses.dataclass(frozen=True)
class Deflate:
    """permessage-deflate settings, taken as given (no role defaults apply).

    ``level`` 0 to 9 and ``mem_level`` 1 to 9 as in zlib; messages shorter than
    ``min_size`` bytes are sent uncompressed. Window bits are 9 to 15 or None. As a client:
    ``server_max_window_bits`` is offered when set, ``client_max_window_bits`` offered with
    its value (None: the bare parameter, the server chooses). As a server:
    ``server_max_window_bits`` caps our window (None: 15), ``client_max_window_bits`` caps the
    client's when it offered the parameter. The ``*_no_context_takeover`` flags are asked for
    by a client and required by a server: that side's compressor restarts with each message
    (less compression, no compressor kept per idle connection).
    """

    level: int = 2
    mem_level: int = 5
    min_size: int = 32
    server_max_window_bits: int | None = None
    client_max_window_bits: int | None = None
    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False


Compression = Union[str, Deflate, None]
"""What the ``compression`` option takes: ``"deflate"``, a :class:`Deflate` or None."""


def compression_option(compression: Compression) -> Any:
    """The ``compression`` option as the native side takes it (ranges are checked there)."""
    if isinstance(compression, Deflate):
        return dataclasses.asdict(compression)
    if compression is None or compression == "deflate":
        return compression
    raise ValueError(
        f"unsupported compression {compression!r}: use 'deflate', a ferrows.Deflate or None"
    )
