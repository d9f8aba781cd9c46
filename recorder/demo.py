"""The reliability demo: every simulated venue, a fault every ~30 s, then proof.

It starts one simulator per venue (subprocesses, each with fault injection), a real capture of
them (``start-capture``), and injects every fault kind at least once (simulator faults over
``POST /sim/fault``, plus kill -9 of venue processes and of the writer). Afterwards it checks:

* nothing sampled was lost: per pair, the snapshots the venue process pushed == the snapshots stored;
* every fault was detected: its counter moved after the injection (``recorder/demo_faults.py``); REST snapshot
  faults count only on venues that fetched REST snapshots (the others: "n/a", said so);
* every stored book equals the simulator's own book at the stored update id (``/sim/book``);
* every file is complete (Parquet footers, JSONL lines).

It exits non-zero if any of these fails. Layers: the demo sits beside the CLI, on top of
everything; nothing imports it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import defaultdict
from pathlib import Path
from typing import Any

from recorder.demo_faults import (
    AFFECTS,
    DETECTORS,
    FAULT_ORDER,
    SIM_FAULTS,
    DemoError,
    Injection,
    detector,
    schedule,
)

ROOT = Path(__file__).resolve().parent.parent
CLI = [sys.executable, str(ROOT / "cli.py")]
DEMO_PAIRS = ["BTC-USDT", "ETH-USDT"]
# venues whose pairs are spelled otherwise (or span two markets)
VENUE_PAIRS = {
    "binance-futures": ["BTC-USDT-PERP", "ETH-USDT-PERP"],
    "bybit": ["BTC-USDT", "ETH-USDT-PERP"],
    "coinbase": ["BTC-USD", "ETH-USD"],
    "kraken": ["BTC-USD", "ETH-USD"],
    "okx": ["BTC-USDT", "ETH-USDT-PERP"],
}
# The simulators serve just these (their default universes are larger: less CPU on a small machine).
SIM_SYMBOLS = {
    "binance": "BTCUSDT,ETHUSDT",
    "binance-futures": "BTCUSDT,ETHUSDT",
    "bybit": "spot:BTCUSDT,linear:ETHUSDT",
    "coinbase": "BTC-USD,ETH-USD",
    "kraken": "BTC/USD,ETH/USD",
    "okx": "BTC-USDT,ETH-USDT-SWAP",
}
INTERVAL_S = 1.0
DEPTH = 20
SESSION = "demo"


def pairs_of(venue: str) -> list[str]:
    return VENUE_PAIRS.get(venue, DEMO_PAIRS)


def sim_book_url(sim_url: str, venue: str, pair: str, snap: dict[str, Any], depth: int = DEPTH) -> str:
    """Where the simulator tells its own book at a stored snapshot's position (each names a
    published state its own way: update id, Bybit market + ``u``, Coinbase event time)."""
    from recorder.venues import venue_module

    symbol = getattr(venue_module(venue), "symbol_for", lambda p: p)(pair)
    base = f"{sim_url}/sim/book?limit={depth}"
    if venue == "bybit":
        category, sym = symbol
        return f"{base}&category={category}&symbol={sym}&update_id={snap['update_id']}"
    if venue == "coinbase":
        return f"{base}&symbol={symbol}&event_ms={snap['exchange_time_ms']}"
    return f"{base}&symbol={urllib.parse.quote(symbol)}&update_id={snap['update_id']}"


def demo_venues() -> tuple[list[str], list[str]]:
    """(venues in the demo, venues left out): every venue with both a connector and a simulator
    whose simulator takes scripted faults (``recorder/sim/faults.py``)."""
    from recorder.sim.faults import FaultInjector
    from recorder.sim.server import VENUES as SIM_VENUES
    from recorder.sim.server import SimOptions, load_venue
    from recorder.venues import VENUES

    used, left_out = [], []
    for v in SIM_VENUES:
        if v not in VENUES:
            continue
        takes_faults = isinstance(getattr(load_venue(SimOptions(venue=v)), "faults", None), FaultInjector)
        (used if takes_faults else left_out).append(v)
    return used, left_out


def _http_json(url: str, body: dict[str, Any] | None = None, timeout: float = 10.0) -> Any:
    data = json.dumps(body).encode() if body is not None else None
    req = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        return json.load(resp)


class Demo:
    def __init__(self, minutes: float, out_dir: Path, seed: int = 1) -> None:
        self.duration_s = minutes * 60.0
        self.out = out_dir
        self.data = out_dir / "data"
        self.seed = seed
        self.venues, self.left_out = demo_venues()
        self.sims: dict[str, subprocess.Popen[str]] = {}
        self.urls: dict[str, dict[str, str]] = {}
        self.capture: subprocess.Popen[str] | None = None
        self.injections: list[Injection] = []
        self.log_path = out_dir / "capture.log"

    # -- running ---------------------------------------------------------------------------

    def start_simulators(self) -> None:
        for i, venue in enumerate(self.venues):
            proc = subprocess.Popen(
                [
                    *CLI,
                    "simulate",
                    "--venue",
                    venue,
                    "--port",
                    "0",
                    "--seed",
                    str(self.seed + i),
                    "--ping-interval",
                    "5",
                    "--symbols",
                    SIM_SYMBOLS.get(venue, ""),
                ],
                stdout=subprocess.PIPE,
                stderr=open(self.out / f"sim-{venue}.log", "w"),  # noqa: SIM115 (the child owns it)
                text=True,
                cwd=ROOT,
            )
            self.sims[venue] = proc
            assert proc.stdout is not None
            line = proc.stdout.readline()
            if not line:
                raise DemoError(f"the {venue} simulator did not start (see {self.out}/sim-{venue}.log)")
            self.urls[venue] = json.loads(line)

    def write_config(self) -> Path:
        lines = [f'data_dir = "{self.data}"', f'session_id = "{SESSION}"', f"depth = {DEPTH}", 'format = "both"', ""]
        for venue in self.venues:
            lines += [
                f"[venues.{venue}]",
                f"pairs = {json.dumps(pairs_of(venue))}",
                f'ws_url = "{self.urls[venue]["ws_url"]}"',
                f'rest_url = "{self.urls[venue]["rest_url"]}"',
                "stall_timeout_s = 3.0",
                "lag_alert_s = 1.0",
                "rest_timeout_s = 2.0",
                "snapshot_limit = 1000",  # the whole book: a shallower snapshot leaves deep levels unknown
                "",
            ]
        lines += ["[writer]", "rotate_seconds = 20.0"]
        path = self.out / "demo.toml"
        path.write_text("\n".join(lines) + "\n")
        return path

    def status(self) -> dict[str, Any]:
        try:
            return json.loads((self.data / ".sessions" / SESSION / "status.json").read_text())  # type: ignore[no-any-return]
        except (FileNotFoundError, json.JSONDecodeError):
            return {}

    def counters(self, kind: str) -> dict[str, float]:
        return self._counters_from(self.status(), kind)

    def inject(self, kind: str) -> Injection:
        inj = Injection(kind, time.time(), before=self.counters(kind))
        # Evidence of the previous faults read at this moment, for the ones this one ends.
        for prev in self.injections:
            prev.at_next.setdefault(kind, self.counters(prev.kind))
        if kind in SIM_FAULTS:
            for venue in self.venues:
                for body in SIM_FAULTS[kind]:
                    _http_json(f"{self.urls[venue]['sim_url']}/sim/fault", body)
        elif kind == "kill_venue":
            for venue in self.venues:
                pid = self.status()["venues"][venue]["pid"]
                os.kill(pid, signal.SIGKILL)
        elif kind == "kill_writer":
            os.kill(self.status()["writer"]["pid"], signal.SIGKILL)
        print(f"  t+{inj.at - self.t0:5.1f}s  inject {kind}", flush=True)
        return inj

    def run(self) -> int:
        self.out.mkdir(parents=True, exist_ok=True)
        warmup = min(10.0, self.duration_s / 6)
        tail = min(15.0, self.duration_s / 5)
        plan = schedule(self.duration_s, warmup, tail)
        print(f"demo: venues {', '.join(self.venues)}; {len(plan)} faults over {self.duration_s:.0f}s; out {self.out}")
        if self.left_out:
            print(f"left out (their simulators take no scripted faults yet): {', '.join(self.left_out)}")
        try:
            self.start_simulators()
            cfg = self.write_config()
            self.t0 = time.time()
            self.capture = subprocess.Popen(
                [*CLI, "start-capture", "--config", str(cfg), "--interval", str(INTERVAL_S),
                 "--duration", f"{self.duration_s:.0f}s"],
                stdout=subprocess.DEVNULL, stderr=open(self.log_path, "w"), cwd=ROOT,  # noqa: SIM115
            )  # fmt: skip
            for at, kind in plan:
                while time.time() < self.t0 + at:
                    if self.capture.poll() is not None:
                        raise DemoError(f"the capture exited early ({self.capture.returncode}); see {self.log_path}")
                    time.sleep(0.1)
                if not self.status():
                    raise DemoError(f"the capture has no status yet; see {self.log_path}")
                self.injections.append(self.inject(kind))
            code = self.capture.wait(self.duration_s + 300)
            if code != 0:
                raise DemoError(f"the capture exited with {code}; see {self.log_path}")
            self._close_detection()
            report = self.verify()
        finally:
            if self.capture is not None and self.capture.poll() is None:
                self.capture.kill()
        self.print_report(report)
        (self.out / "report.json").write_text(json.dumps(report, indent=1, sort_keys=True))
        self.stop_simulators()
        return 0 if report["ok"] else 1

    def stop_simulators(self) -> None:
        for proc in self.sims.values():
            proc.send_signal(signal.SIGTERM)
        for proc in self.sims.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()

    def _close_detection(self) -> None:
        """A fault is detected if its counter moved before the next fault read by the same counter."""
        final = self.status()
        for i, inj in enumerate(self.injections):
            for key, before in inj.before.items():
                # Evidence counts until the next fault that can move the same counter.
                affects = AFFECTS[detector(key, inj.kind) if key != "writer" else DETECTORS[inj.kind][1]]
                nxt = next((j for j in self.injections[i + 1 :] if j.kind in affects), None)
                after = inj.at_next[nxt.kind] if nxt is not None else self._counters_from(final, inj.kind)
                inj.after[key] = after.get(key, 0.0)
                inj.detected[key] = inj.after[key] > before
            if inj.kind.startswith("rest_"):
                # Only venues that sync from a REST snapshot can be hurt by one refused or delayed;
                # the others never asked (their books start from a WebSocket snapshot).
                inj.not_applicable = {v for v in self.venues if not final["venues"][v]["snapshots_fetched"]}
                if inj.not_applicable:
                    inj.note = "n/a: " + ", ".join(sorted(inj.not_applicable)) + " take no REST snapshot"

    def _counters_from(self, st: dict[str, Any], kind: str) -> dict[str, float]:
        where, name = DETECTORS[kind]
        if where == "writer":
            return {"writer": float(st.get("writer", {}).get(name, 0))}
        return {v: float(st.get("venues", {}).get(v, {}).get(detector(v, kind), 0)) for v in self.venues}

    # -- verifying -------------------------------------------------------------------------

    def verify(self) -> dict[str, Any]:
        import pyarrow.dataset as ds
        import pyarrow.parquet as pq

        final = self.status()
        problems: list[str] = []
        if final.get("state") != "stopped" or not final.get("flushed"):
            problems.append("the capture did not stop with a clean flush")
        files = bytes_total = 0
        for path in sorted((self.data / "parquet").rglob("*.parquet")):
            pq.read_metadata(path)  # raises on a torn file
            files += 1
            bytes_total += path.stat().st_size
        stored: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
        for path in sorted((self.data / "jsonl").rglob("*.jsonl")):
            text = path.read_text()
            if not text.endswith("\n"):
                problems.append(f"torn file {path}")
            for line in text.splitlines():
                s = json.loads(line)
                stored[(s["exchange"], s["pair"])].append(s)
            files += 1
            bytes_total += path.stat().st_size
        temp = [p for p in self.data.rglob(".*.tmp")]
        if temp:
            problems.append(f"{len(temp)} temp files left behind")
        parquet_rows = ds.dataset(self.data / "parquet", format="parquet", partitioning="hive").count_rows()
        json_rows = sum(len(s["bids"]) + len(s["asks"]) for items in stored.values() for s in items)
        if parquet_rows != json_rows:
            problems.append(f"Parquet holds {parquet_rows} levels, JSONL {json_rows}")

        windows = [inj.window for inj in self.injections]
        pairs: dict[str, Any] = {}
        books_checked = books_differing = 0
        for venue in self.venues:
            v = final["venues"][venue]
            for pair in pairs_of(venue):
                items = sorted(stored.get((venue, pair), []), key=lambda s: s["sequence_number"])
                sampled = v["pairs"][pair]["samples"]
                missed = v["pairs"][pair]["missed_ticks"]
                if len(items) != sampled:
                    problems.append(f"{venue} {pair}: {sampled} sampled but {len(items)} stored")
                if [s["sequence_number"] for s in items] != list(range(len(items))):
                    problems.append(f"{venue} {pair}: sequence numbers have holes")
                for s in items:
                    books_checked += 1
                    if not self._book_matches(venue, s):
                        books_differing += 1
                        if books_differing <= 5:
                            problems.append(f"{venue} {pair}: stored book at update {s['update_id']} differs")
                ts = [s["timestamp_ms"] for s in items]
                expected = int((ts[-1] - ts[0]) // (INTERVAL_S * 1000) + 1) if ts else 0
                outside = [
                    t for t in range(ts[0], ts[-1] + 1, int(INTERVAL_S * 1000))
                    if not any(a <= t / 1000 <= b for a, b in windows)
                ] if ts else []  # fmt: skip
                stored_set = set(ts)
                ok_outside = sum(1 for t in outside if t in stored_set)
                pairs[f"{venue}/{pair}"] = {
                    "ticks_expected": expected,
                    "stored": len(items),
                    "missed": missed,
                    "unaccounted": expected - len(items) - missed,
                    "success_pct_outside_faults": round(100.0 * ok_outside / len(outside), 2) if outside else None,
                    "gaps": v["pairs"][pair]["gaps"],
                    "checksums_failed": v["pairs"][pair]["checksums_failed"],
                    "resyncs": v["pairs"][pair]["resyncs"],
                }
                if expected - len(items) - missed > 0:
                    problems.append(
                        f"{venue} {pair}: {expected - len(items) - missed} ticks neither stored nor counted"
                    )
        if books_differing:
            problems.append(f"{books_differing} stored books differ from the simulator")
        undetected = [
            (i.kind, k) for i in self.injections for k, ok in i.detected.items() if not ok and k not in i.not_applicable
        ]
        for kind, key in undetected:
            problems.append(f"fault {kind} went undetected on {key}")
        kinds = {i.kind for i in self.injections}
        if set(FAULT_ORDER) - kinds:
            problems.append(f"fault kinds never injected: {sorted(set(FAULT_ORDER) - kinds)}")
        injected_gaps = sum(1 for i in self.injections if i.kind in ("gap", "rest_refuse", "rest_delay"))
        return {
            "ok": not problems,
            "problems": problems,
            "duration_s": self.duration_s,
            "venues": self.venues,
            "left_out": self.left_out,
            "pairs": pairs,
            "faults": [
                {
                    "kind": i.kind,
                    "t_s": round(i.at - self.t0, 1),
                    "detected": {k: None if k in i.not_applicable else ok for k, ok in i.detected.items()},
                    "note": i.note,
                }
                for i in self.injections
            ],
            "faults_per_venue": self._fault_tally(),
            "gaps_injected_per_pair": injected_gaps,
            "gaps_detected": {v: final["venues"][v][detector(v, "gap")] for v in self.venues},
            "latency_ms": {v: final["venues"][v]["capture_latency_ms"] for v in self.venues},
            "ring_drops": {v: final["venues"][v]["ring_drops"] for v in self.venues},
            "missed_by_cause": {v: final["venues"][v]["missed_by_cause"] for v in self.venues},
            "books_verified": books_checked,
            "books_differing": books_differing,
            "files_verified": files,
            "bytes": bytes_total,
            "writer": {k: final["writer"].get(k) for k in ("snapshots_written", "restarts", "write_errors")},
        }

    def _fault_tally(self) -> dict[str, dict[str, int]]:
        """Per venue (and the writer): faults injected, detected, not applicable."""
        out: dict[str, dict[str, int]] = {}
        for inj in self.injections:
            for key, ok in inj.detected.items():
                t = out.setdefault(key, {"injected": 0, "detected": 0, "not_applicable": 0})
                if key in inj.not_applicable:
                    t["not_applicable"] += 1
                else:
                    t["injected"] += 1
                    t["detected"] += int(ok)
        return out

    def _book_matches(self, venue: str, s: dict[str, Any]) -> bool:
        url = sim_book_url(self.urls[venue]["sim_url"], venue, s["pair"], s, DEPTH)
        try:
            ref = _http_json(url)
        except urllib.error.HTTPError:
            return False
        return [(float(p), float(q)) for p, q in ref["bids"]] == [(lv["price"], lv["qty"]) for lv in s["bids"]] and [
            (float(p), float(q)) for p, q in ref["asks"]
        ] == [(lv["price"], lv["qty"]) for lv in s["asks"]]

    def print_report(self, r: dict[str, Any]) -> None:
        p = print
        p("")
        p(f"reliability demo: {r['duration_s'] / 60:.1f} min, venues {', '.join(r['venues'])}, interval {INTERVAL_S}s")
        if r["left_out"]:
            p(f"left out (simulators without scripted faults): {', '.join(r['left_out'])}")
        p("")
        p(f"{'venue/pair':<30}{'expected':>9}{'stored':>8}{'missed':>8}{'unacct':>8}{'ok% outside faults':>20}"
          f"{'gaps':>6}{'cksum':>7}{'resyncs':>9}")  # fmt: skip
        for key, x in r["pairs"].items():
            pct = "-" if x["success_pct_outside_faults"] is None else f"{x['success_pct_outside_faults']:.2f}"
            p(f"{key:<30}{x['ticks_expected']:>9}{x['stored']:>8}{x['missed']:>8}{x['unaccounted']:>8}{pct:>20}"
              f"{x['gaps']:>6}{x['checksums_failed']:>7}{x['resyncs']:>9}")  # fmt: skip
        p("")
        for v in r["venues"]:
            lat = r["latency_ms"][v]
            t = r["faults_per_venue"].get(v, {})
            gap_word = "gaps" if detector(v, "gap") == "gaps" else "checksum failures"
            p(f"{v}: faults injected {t.get('injected', 0)}, detected {t.get('detected', 0)}"
              f" (n/a {t.get('not_applicable', 0)}); missed by cause {r['missed_by_cause'][v]};"
              f" capture latency p50/p99 {lat['p50']}/{lat['p99']} ms; ring drops {r['ring_drops'][v]};"
              f" {gap_word} detected {r['gaps_detected'][v]}"
              f" (gaps injected {r['gaps_injected_per_pair']} per pair)")  # fmt: skip
        p("")
        p("faults (t = seconds after start; detected per venue / writer):")
        for f in r["faults"]:
            det = ", ".join(f"{k} {'n/a' if ok is None else 'yes' if ok else 'NO'}" for k, ok in f["detected"].items())
            p(f"  t+{f['t_s']:6.1f}s  {f['kind']:<12} detected: {det}" + (f"  ({f['note']})" if f["note"] else ""))
        p("")
        p(f"books verified against the simulators: {r['books_verified']} ({r['books_differing']} differ)")
        p(f"files verified: {r['files_verified']}  bytes: {r['bytes']}  writer: {r['writer']}")
        p("")
        if r["ok"]:
            p("RESULT: PASS — nothing sampled was lost, every fault was detected, every stored book is exact")
        else:
            p("RESULT: FAIL")
            for problem in r["problems"]:
                p(f"  - {problem}")


def run_demo(minutes: float, out_dir: Path) -> int:
    return Demo(minutes, out_dir).run()
