"""picows frames -> whole text messages for one venue connection, the same for every venue."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Protocol

from picows import WSFrame, WSListener, WSMsgType, WSTransport

if TYPE_CHECKING:
    from recorder.archive.tap import ConnTap


class FrameSink(Protocol):
    """The connection a ``TextListener`` feeds."""

    close_code: object
    last_frame_s: float  # monotonic time of the last sign of life (a text frame sets it in ``on_text``)

    def on_text(self, payload: bytes, recv_ms: float) -> None: ...

    def malformed(self, what: str, size: int) -> None: ...

    def on_disconnected(self) -> None: ...


class TextListener(WSListener):
    """Reassembles fragmented text messages (no venue fragments today, but one must not be
    misparsed), answers the venue's close, and reports binary frames as malformed.

    With the connection's archive ``tap``, every text frame is archived before the sink sees it,
    with the receive time the sink is given (so a replay gives the Feed the same time)."""

    def __init__(self, sink: FrameSink, tap: ConnTap | None = None, url: str = "") -> None:
        self._sink = sink
        self._parts: list[bytes] = []
        self._tap = tap
        self._url = url

    def on_ws_connected(self, transport: WSTransport) -> None:
        if self._tap is not None:
            self._tap.connect(self._url)

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
            tap = self._tap
            sink.on_text(payload, (tap.recv(payload) if tap is not None else time.time_ns()) / 1e6)
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
        if self._tap is not None:
            self._tap.close()
        self._sink.on_disconnected()
