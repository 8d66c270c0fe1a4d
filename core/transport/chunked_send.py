"""Sending a large message over a socket in pieces, so that the socket timeout bounds each
piece (progress) rather than the whole upload."""

from __future__ import annotations

import socket

__all__ = ["SEND_CHUNK", "sendall_chunked"]

#: Bytes per ``sendall``: a socket timeout bounds one whole sendall call, so a 25 MB message
#: on a slow uplink must go in pieces that each get the full timeout.
SEND_CHUNK = 64 * 1024


def sendall_chunked(sock: socket.socket, data: bytes | bytearray | memoryview) -> None:
    """``sock.sendall(data)`` in :data:`SEND_CHUNK` pieces, so the socket timeout limits
    each piece (progress) rather than the whole upload."""
    view = memoryview(data)
    for start in range(0, len(view), SEND_CHUNK):
        sock.sendall(view[start:start + SEND_CHUNK])
