"""Validation of every name that becomes part of a path or a subscription."""

from __future__ import annotations

import re

# BASE-QUOTE, a perpetual BASE-QUOTE-PERP, or a dated future BASE-QUOTE-YYMMDD (OKX BTC-USD-220527).
PAIR_RE = re.compile(r"^[A-Z0-9]{1,20}-[A-Z0-9]{1,20}(-PERP|-[0-9]{6})?$")
SESSION_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.\-]{0,127}$")
VENUE_RE = re.compile(r"^[a-z][a-z0-9\-]{0,31}$")


class NameError_(ValueError):
    """A user-supplied name is not acceptable (kept distinct from the builtin NameError)."""


def normalize_pair(raw: str) -> str:
    """Normalize a user pair spelling (``btc/usdt``, ``btc-usdt``) to ``BTC-USDT``."""
    pair = raw.strip().upper().replace("/", "-").replace("_", "-")
    if not PAIR_RE.fullmatch(pair):
        raise NameError_(f"invalid pair {raw!r}: expected BASE-QUOTE like BTC-USDT")
    return pair


def check_session_id(session_id: str) -> str:
    if not SESSION_RE.fullmatch(session_id) or ".." in session_id:
        raise NameError_(f"invalid session id {session_id!r}: use letters, digits, '_', '-', '.' (max 128)")
    return session_id


def check_venue_id(venue: str) -> str:
    if not VENUE_RE.fullmatch(venue):
        raise NameError_(f"invalid venue id {venue!r}")
    return venue
