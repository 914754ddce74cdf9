"""Streaming server for Exec, Attach and PortForward (SPDY/3.1 and WebSocket).

The RPC handlers call `StreamingServer.get_exec/get_attach/get_port_forward` for a
one-time URL; the client then connects to it. The runtime plugs in through the
`StreamingBackend` Protocol (see `api.py`).
"""

from __future__ import annotations

from cri.streaming.api import ProcessStream, StreamingBackend
from cri.streaming.server import StreamingServer
from cri.streaming.tokens import TooManyRequests

__all__ = ["ProcessStream", "StreamingBackend", "StreamingServer", "TooManyRequests"]
