"""Load a page in headless Debian chromium over the DevTools protocol and report what broke:
uncaught exceptions, console errors, failed resource loads, plus facts the page's DOM states."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import re
import shutil
import signal
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--remote-debugging-port=0",
    "--remote-allow-origins=*",
]

# What the page itself says about its figures: every SVG and image, rendered size, loaded or not.
PROBE = """JSON.stringify({
  title: document.title,
  svgs: Array.from(document.querySelectorAll('figure svg')).map(s => {
    const r = s.getBoundingClientRect();
    return {w: r.width, h: r.height, paths: s.querySelectorAll('path').length};
  }),
  images: Array.from(document.images).map(i => ({src: i.src, ok: i.complete && i.naturalWidth > 0})),
  page: {width: window.innerWidth, clientWidth: document.documentElement.clientWidth,
         scrollWidth: document.documentElement.scrollWidth},
  tables: Array.from(document.querySelectorAll('table')).map(t => {
    const r = t.getBoundingClientRect(), box = t.parentElement;
    return {right: r.right, width: r.width, scrolls: box.scrollWidth > box.clientWidth,
            header: t.rows[0] ? t.rows[0].innerText : ''};
  }),
  text: document.body ? document.body.innerText : ''
})"""


def chromium_path() -> str | None:
    return shutil.which("chromium") or shutil.which("chromium-browser")


@dataclass
class PageResult:
    errors: list[str] = field(default_factory=list)
    dom: dict[str, Any] = field(default_factory=dict)


def load_page(url: str, timeout_s: float = 60.0, width: int = 1400, screenshot: str | None = None) -> PageResult:
    """``width``: the viewport's CSS pixels; ``screenshot``: also save the whole page as PNG there."""
    exe = chromium_path()
    if not exe:
        # CI installs Debian's chromium and sets RECORDER_REQUIRE_CHROMIUM=1, so there a missing
        # browser fails; on a developer machine without it the browser checks are skipped, loudly.
        if os.environ.get("RECORDER_REQUIRE_CHROMIUM"):
            raise AssertionError("chromium is not installed (apt-get install -y chromium)")
        pytest.skip("chromium is not installed (apt-get install -y chromium)")
    # Chromium's helper processes (zygote, renderers) outlive a kill of the browser alone and
    # may still write the profile while it is removed: kill the whole group, and let a straggler's
    # last file not fail the cleanup of a throwaway directory.
    with tempfile.TemporaryDirectory(prefix="chromium-", ignore_cleanup_errors=True) as profile:
        proc = subprocess.Popen(
            [exe, *FLAGS, f"--user-data-dir={profile}", "about:blank"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            port = _devtools_port(proc, timeout_s)
            return asyncio.run(asyncio.wait_for(_drive(port, url, width, screenshot), timeout_s))
        finally:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def _devtools_port(proc: subprocess.Popen[str], timeout_s: float) -> int:
    assert proc.stderr is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            raise AssertionError(f"chromium exited before DevTools was up (code {proc.poll()})")
        m = re.search(r"DevTools listening on ws://[^:]+:(\d+)/", line)
        if m:
            return int(m.group(1))
    raise AssertionError("chromium DevTools did not come up")


async def _drive(port: int, url: str, width: int, screenshot: str | None) -> PageResult:
    result = PageResult()
    async with aiohttp.ClientSession() as http:
        targets: list[dict[str, Any]] = []
        for _ in range(100):
            async with http.get(f"http://127.0.0.1:{port}/json/list") as resp:
                targets = [t for t in await resp.json() if t.get("type") == "page"]
            if targets:
                break
            await asyncio.sleep(0.1)
        assert targets, "chromium has no page target"
        async with http.ws_connect(targets[0]["webSocketDebuggerUrl"], max_msg_size=0) as ws:
            ids = iter(range(1, 1_000_000))
            replies: dict[int, asyncio.Future[dict[str, Any]]] = {}
            loaded = asyncio.Event()

            async def listen() -> None:
                async for msg in ws:
                    data = json.loads(msg.data)
                    if "id" in data and data["id"] in replies:
                        replies.pop(data["id"]).set_result(data)
                        continue
                    method, params = data.get("method"), data.get("params", {})
                    if method == "Page.loadEventFired":
                        loaded.set()
                    elif method == "Runtime.exceptionThrown":
                        d = params["exceptionDetails"]
                        result.errors.append(f"exception: {d.get('exception', {}).get('description') or d['text']}")
                    elif method == "Runtime.consoleAPICalled" and params.get("type") in ("error", "assert"):
                        args = " ".join(str(a.get("value", a.get("description", ""))) for a in params["args"])
                        result.errors.append(f"console.{params['type']}: {args}")
                    elif method == "Log.entryAdded" and params["entry"]["level"] == "error":
                        e = params["entry"]
                        result.errors.append(f"log: {e['text']} {e.get('url', '')}".strip())

            async def call(method: str, **params: Any) -> dict[str, Any]:
                i = next(ids)
                fut: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
                replies[i] = fut
                await ws.send_json({"id": i, "method": method, "params": params})
                reply = await fut
                assert "error" not in reply, f"{method}: {reply['error']}"
                return reply.get("result", {})

            listener = asyncio.create_task(listen())
            for domain in ("Page", "Runtime", "Log"):
                await call(f"{domain}.enable")
            await call("Emulation.setDeviceMetricsOverride", width=width, height=900, deviceScaleFactor=1, mobile=False)
            await call("Page.navigate", url=url)
            await loaded.wait()
            await asyncio.sleep(0.3)  # late console messages and image decode errors
            probe = await call("Runtime.evaluate", expression=PROBE, returnByValue=True)
            result.dom = json.loads(probe["result"]["value"])
            if screenshot:
                shot = await call("Page.captureScreenshot", format="png", captureBeyondViewport=True)
                with open(screenshot, "wb") as fh:
                    fh.write(base64.b64decode(shot["data"]))
            listener.cancel()
    return result
