#!/usr/bin/env python3
"""Record, export, backtest, plot: a capture on the simulator straight into hftbacktest.

1. capture BTC-USDT from the embedded Binance simulator (recorder.api.Capture), for --seconds;
2. export it to hftbacktest's .npz (recorder.export.export);
3. run a small market maker in hftbacktest: every --step, quote one lot at the best bid and ask
   (post-only), holding at most --max-position lots;
4. plot mid price, position and equity to a PNG with matplotlib.

    pip install -e '.[export]'
    python examples/hftbacktest_market_maker.py --seconds 120 --out example-out
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout

from recorder.api import Capture  # noqa: E402
from recorder.export import export  # noqa: E402


def record(data: Path, seconds: float) -> None:
    with Capture(
        venue="binance", pairs=["BTC-USDT"], interval="100ms", duration=seconds, data_dir=data, simulate=True
    ) as cap:
        final = cap.wait(seconds + 180)
    print(f"captured {final['writer']['snapshots_written']} snapshots", flush=True)


def backtest(npz: Path, tick: float, lot: float, step_ns: int, max_position: float) -> dict[str, np.ndarray]:
    from hftbacktest import GTX, LIMIT, BacktestAsset, HashMapMarketDepthBacktest

    asset = (
        BacktestAsset()
        .data([str(npz)])
        .linear_asset(1.0)
        .constant_order_latency(1_000_000, 1_000_000)  # 1 ms each way
        .risk_adverse_queue_model()
        .no_partial_fill_exchange()
        .trading_value_fee_model(-0.00005, 0.0007)  # maker rebate, taker fee
        .tick_size(tick)
        .lot_size(lot)
    )
    hbt = HashMapMarketDepthBacktest([asset])
    rows: list[tuple[int, float, float, float]] = []
    order_id = 0
    while hbt.elapse(step_ns) == 0:
        hbt.clear_inactive_orders(0)
        depth = hbt.depth(0)
        if not (np.isfinite(depth.best_bid) and np.isfinite(depth.best_ask)):
            continue
        for order in list(_orders(hbt)):
            hbt.cancel(0, order, False)
        position = hbt.position(0)
        if position < max_position:
            order_id += 1
            hbt.submit_buy_order(0, order_id, depth.best_bid, lot, GTX, LIMIT, False)
        if position > -max_position:
            order_id += 1
            hbt.submit_sell_order(0, order_id, depth.best_ask, lot, GTX, LIMIT, False)
        mid = (depth.best_bid + depth.best_ask) / 2
        sv = hbt.state_values(0)
        rows.append((hbt.current_timestamp, mid, sv.position, sv.balance + sv.position * mid - sv.fee))
    trades = hbt.state_values(0).num_trades
    hbt.close()
    arr = np.array(rows, dtype=float).reshape(-1, 4)
    return {"t": arr[:, 0], "mid": arr[:, 1], "position": arr[:, 2], "equity": arr[:, 3], "trades": np.array(trades)}


def _orders(hbt: object) -> list[int]:
    values = hbt.orders(0).values()  # type: ignore[attr-defined]
    out = []
    while values.has_next():
        order = values.get()
        if order.cancellable:
            out.append(order.order_id)
    return out


def plot(result: dict[str, np.ndarray], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = (result["t"] - result["t"][0]) / 1e9
    fig, axes = plt.subplots(3, 1, sharex=True, figsize=(9, 7))
    axes[0].plot(t, result["mid"])
    axes[0].set_ylabel("mid")
    axes[1].step(t, result["position"], where="post")
    axes[1].set_ylabel("position (BTC)")
    axes[2].plot(t, result["equity"])
    axes[2].set_ylabel("equity (USDT)")
    axes[2].set_xlabel("seconds")
    fig.suptitle("market maker on a recorded (simulated) BTC-USDT book")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=120.0, help="how long to capture")
    ap.add_argument("--out", default="example-out", help="directory for data, export and plot")
    ap.add_argument("--step", type=float, default=0.1, help="strategy step in seconds")
    ap.add_argument("--max-position", type=float, default=0.01, help="BTC")
    args = ap.parse_args()
    out = Path(args.out)
    data = out / "data"
    record(data, args.seconds)
    res = export(data, to="hftbacktest", out=out / "hftbacktest", overwrite=True)
    inst = json.loads((res.out / "instruments.json").read_text())["binance:BTC-USDT"]
    npz = res.out / res.files[0]
    # From the capture's archive (every book change and trade): counts depth_events, trades, events.
    counts = ", ".join(f"{k} {v}" for k, v in res.counts.items())
    print(f"exported {counts} in {npz}", flush=True)
    result = backtest(npz, inst["tick_size"], 0.001, int(args.step * 1e9), args.max_position)
    png = out / "market_maker.png"
    plot(result, png)
    pnl = result["equity"][-1] if len(result["equity"]) else 0.0
    print(f"backtest: {len(result['t'])} steps, {int(result['trades'])} fills, equity {pnl:.4f} USDT; plot: {png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
