"""Public trades of the subscribe-based venues (Coinbase, Kraken, OKX, Bybit), one module each.

Every venue module has the same shape: msgspec wire structs of the venue's trade channel, the
subscribe request for it, and ``on_trades(...)``, which turns one decoded trade frame into
``recorder.model.Trade`` records handed to the Feed's :class:`~recorder.venues.trades.tape.TradeEmitter`
(dedupe, gap count, ``on_trade``). The venue's book Feed dispatches a frame to it on the channel
name, once, so book frames pay nothing for trades. Rules per venue: ../shared trades-protocols.md.
"""
