"""picows frames -> whole text messages for one venue connection, the same for every venue."""

from __future__ import annotations

import time
from typing import Protocol

from picows import WSFrame, WSListener, WSMsgType, WSTransport


class FrameSink(Protocol):
    """The connection a ``TextListener`` feeds."""

    close_code: object
    last_frame_s: float  # monotonic time of the last sign of life (a text frame sets it in ``on_text``)

    def on_text(self, payload: bytes, recv_ms: float) -> None: ...

    def malformed(self, what: str, size: int) -> None: ...

    def on_disconnected(self) -> None: ...


class TextListener(WSListener):
    """Reassembles fragmented text messages (no venue fragments today, but one must not be
    misparsed), answers the venue's close, and reports binary frames as malformed."""

    def __init__(self, sink: FrameSink) -> None:
        self._sink = sink
        self._parts: list[bytes] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        sink = self._sink
        mt = frame.msg_type
        if mt is WSMsgType.TEXT or mt is WSMsgType.CONTINUATION:
            if not frame.fin:
                self._parts.append(frame.get_payload_as_bytes())
                return
            payload = frame.get_payload_as_bytes()
            if self._parts:
                payload = b"".join(self._parts) + payload
                self._parts.clear()
            sink.on_text(payload, time.time() * 1000.0)
            return
        if mt is WSMsgType.CLOSE:  # not a sign of life: it may answer picows' keepalive giving up
            sink.close_code = frame.get_close_code()
            transport.send_close(frame.get_close_code())
            transport.disconnect()
            return
        sink.last_frame_s = time.monotonic()
        if mt is WSMsgType.BINARY:
            sink.malformed("binary frame", frame.payload_size)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self._sink.on_disconnected()
