"""Headless Chromium (Debian's `chromium`) for the UI test: one-shot dumps and a DevTools session.

`--dump-dom` after a virtual-time budget shows a page as first rendered; the flow-run page's
Artifacts tab needs a click once the run has loaded, which the DevTools protocol does (Page.navigate,
Runtime.evaluate, Page.captureScreenshot) over the websocket Chromium opens on 127.0.0.1.
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from pathlib import Path

import requests

CHROMIUM = "/usr/bin/chromium"
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-dev-shm-usage",
         "--window-size=1400,1000"]


def available() -> bool:
    return Path(CHROMIUM).exists()


def dump_dom(url: str, profile: Path, budget_ms: int = 15000, timeout: float = 120) -> str:
    proc = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                           "--dump-dom", url], capture_output=True, text=True, timeout=timeout)
    return proc.stdout


def screenshot(url: str, profile: Path, out: Path, budget_ms: int = 15000, timeout: float = 120) -> None:
    subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={profile}", f"--virtual-time-budget={budget_ms}",
                    f"--screenshot={out}", url], capture_output=True, timeout=timeout)


class DevToolsPage:
    """A headless Chromium with one page, driven over the DevTools protocol."""

    def __init__(self, profile: Path):
        self.profile = profile
        self.proc: subprocess.Popen | None = None
        self.ws = None
        self._next_id = 0

    def __enter__(self) -> "DevToolsPage":
        from websockets.sync.client import connect

        shutil.rmtree(self.profile, ignore_errors=True)
        self.profile.mkdir(parents=True)
        self.proc = subprocess.Popen([CHROMIUM, *FLAGS, f"--user-data-dir={self.profile}",
                                      "--remote-debugging-address=127.0.0.1", "--remote-debugging-port=0",
                                      "about:blank"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                     start_new_session=True)
        port_file = self.profile / "DevToolsActivePort"
        deadline = time.monotonic() + 60
        while not (port_file.exists() and port_file.read_text().strip()):
            if time.monotonic() > deadline or self.proc.poll() is not None:
                raise RuntimeError("chromium did not open its DevTools port")
            time.sleep(0.2)
        port = int(port_file.read_text().split()[0])
        pages = [t for t in requests.get(f"http://127.0.0.1:{port}/json/list", timeout=10).json()
                 if t["type"] == "page"]
        self.ws = connect(pages[0]["webSocketDebuggerUrl"], max_size=64 * 1024 * 1024, open_timeout=30)
        return self

    def __exit__(self, *exc) -> None:
        if self.ws is not None:
            self.ws.close()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)

    def call(self, method: str, **params) -> dict:
        self._next_id += 1
        msg_id = self._next_id
        self.ws.send(json.dumps({"id": msg_id, "method": method, "params": params}))
        while True:
            reply = json.loads(self.ws.recv(timeout=60))
            if reply.get("id") == msg_id:  # events arrive in between; they are not needed here
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def navigate(self, url: str) -> None:
        self.call("Page.navigate", url=url)

    def evaluate(self, expression: str):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True)
        return result.get("result", {}).get("value")

    def text(self) -> str:
        return self.evaluate("document.body ? document.body.innerText : ''") or ""

    def wait_for_text(self, *needles: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while True:
            text = self.text()
            if all(n in text for n in needles):
                return text
            if time.monotonic() > deadline:
                raise TimeoutError(f"page never showed {needles}; it shows:\n{text[:3000]}")
            time.sleep(0.5)

    def click_text(self, label: str) -> bool:
        """Click the first button, tab or link whose own text is exactly ``label``."""
        script = ("(() => { const el = [...document.querySelectorAll('button, [role=tab], a, li.p-tab')]"
                  f".find(e => e.innerText && e.innerText.trim() === {json.dumps(label)});"
                  " if (el) { el.click(); return true; } return false; })()")
        return bool(self.evaluate(script))

    def screenshot(self, out: Path) -> None:
        data = self.call("Page.captureScreenshot", format="png")["data"]
        out.write_bytes(base64.b64decode(data))
