"""Binance's wire shapes the simulators' REST and WebSocket sides share: price levels as decimal
text, error bodies (REST ``{"code", "msg"}``, WebSocket ``{"error", "id"}``), replies, clock."""

from __future__ import annotations

import time
from typing import Any

import msgspec
from aiohttp import web

from recorder.sim.book import Level, fmt_units


def levels(levels: list[Level]) -> list[list[str]]:
    return [[fmt_units(p), fmt_units(q)] for p, q in levels]


def now_ms() -> int:
    return int(time.time() * 1000)


def json_error(status: int, code: int, msg: str) -> web.Response:
    body = msgspec.json.encode({"code": code, "msg": msg})
    return web.Response(status=status, body=body, content_type="application/json")


def mandatory(param: str) -> web.Response:
    return json_error(400, -1102, f"Mandatory parameter '{param}' was not sent, was empty/null, or malformed.")


def illegal_symbol() -> web.Response:
    msg = "Illegal characters found in parameter 'symbol'; legal range is '^[A-Z0-9-_.]{1,20}$'."
    return json_error(400, -1100, msg)


def ws_result(result: Any, rid: Any) -> str:
    return msgspec.json.encode({"result": result, "id": rid}).decode()


def ws_error(code: int, msg: str, rid: Any) -> str:
    return msgspec.json.encode({"error": {"code": code, "msg": msg}, "id": rid}).decode()
