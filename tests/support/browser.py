"""Headless Debian Chromium, driven by playwright-core in a node process (tests/e2e/js/browser_driver.mjs).

One node process (and one Chromium) per test session; each :class:`Page` is its own browser
context (cookies, storage). The node process and Chromium end when :meth:`Browser.close`
runs, and also if this Python process dies (the driver exits when its stdin closes).
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
DRIVER = ROOT / "tests" / "e2e" / "js" / "browser_driver.mjs"
VIEWER = ROOT / "viewer"
ARTIFACTS = ROOT / "test-artifacts"


class BrowserError(RuntimeError):
    pass


def missing_tools() -> str:
    """Why the browser cannot run here ("" when it can)."""
    chromium = os.environ.get("CHROMIUM", "/usr/bin/chromium")
    if not Path(chromium).exists():
        return f"{chromium} is missing (scripts/install installs the Debian chromium package)"
    if shutil.which("node") is None:
        return "node is missing"
    if not (VIEWER / "node_modules" / "playwright-core").is_dir():
        return "viewer/node_modules is missing (scripts/install runs npm ci in viewer/)"
    if not (VIEWER / "ohif" / "dist" / "index.html").is_file():
        return "viewer/ohif/dist is missing (viewer/fetch-ohif)"
    return ""


class Browser:
    def __init__(self, timeout: float = 90.0) -> None:
        self._process = subprocess.Popen(
            ["node", str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
            start_new_session=True, cwd=str(VIEWER),
        )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._stderr: list[str] = []
        self._lock = threading.Lock()
        self._next_id = 1
        threading.Thread(target=self._read, args=(self._process.stdout, self._lines.put), daemon=True).start()
        threading.Thread(target=self._read, args=(self._process.stderr, self._stderr.append), daemon=True).start()
        ready = self._wait_for(0, timeout)
        self.version = str(ready.get("version", ""))

    @staticmethod
    def _read(stream: Any, sink: Any) -> None:
        for raw in iter(stream.readline, b""):
            sink(raw.decode("utf-8", "replace").rstrip("\n"))
        sink(None)

    def _wait_for(self, request_id: int, timeout: float) -> Any:
        while True:
            try:
                line = self._lines.get(timeout=timeout)
            except queue.Empty as exc:
                raise BrowserError(f"the browser driver did not answer in {timeout} s") from exc
            if line is None:
                raise BrowserError("the browser driver exited:\n" + "\n".join(s for s in self._stderr if s)[-3000:])
            try:
                message = json.loads(line)
            except ValueError:
                continue  # not ours (e.g. a library printing)
            if message.get("id") != request_id:
                continue
            if "error" in message:
                raise BrowserError(str(message["error"]))
            return message.get("result")

    def call(self, method: str, rpc_timeout: float = 180.0, **params: Any) -> Any:
        with self._lock:
            request_id = self._next_id
            self._next_id += 1
            assert self._process.stdin is not None
            try:
                self._process.stdin.write((json.dumps({"id": request_id, "method": method, "params": params}) + "\n")
                                          .encode())
                self._process.stdin.flush()
            except BrokenPipeError as exc:
                raise BrowserError("the browser driver is gone") from exc
            return self._wait_for(request_id, rpc_timeout)

    def page(self, artifacts: Path | None = None) -> Page:
        return Page(self, int(self.call("newContext")["context"]), artifacts or ARTIFACTS)

    def close(self) -> None:
        if self._process.poll() is None:
            try:
                assert self._process.stdin is not None
                self._process.stdin.close()  # the driver closes Chromium and exits
                self._process.wait(timeout=20)
            except (subprocess.TimeoutExpired, OSError):
                # Our own process group (start_new_session): the driver and its Chromium.
                os.killpg(self._process.pid, signal.SIGKILL)
                self._process.wait(timeout=10)


class Page:
    """One isolated browser context with one page."""

    def __init__(self, browser: Browser, context: int, artifacts: Path) -> None:
        self.browser = browser
        self.context = context
        self.artifacts = artifacts
        self.closed = False

    def __call__(self, method: str, **params: Any) -> Any:
        return self.browser.call(method, context=self.context, **params)

    def goto(self, url: str, **params: Any) -> dict[str, Any]:
        return dict(self("goto", url=url, **params))

    def wait_for_image(self, timeout_ms: int = 30000, since: int | None = None) -> dict[str, Any]:
        return dict(self("waitForImage", timeout=timeout_ms, since=since))

    def evaluate(self, expression: str, arg: Any = None) -> Any:
        return self("evaluate", expression=expression, arg=arg)

    def wait_for_function(self, expression: str, arg: Any = None, timeout_ms: int = 30000) -> Any:
        return self("waitForFunction", expression=expression, arg=arg, timeout=timeout_ms)

    def text(self, selector: str = "body") -> str:
        return str(self("text", selector=selector))

    def screenshot(self, name: str) -> Path:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        path = self.artifacts / f"{name}.png"
        try:
            self("screenshot", path=str(path))
        except BrowserError as exc:
            # Chromium now and then refuses one capture ("Unable to capture screenshot",
            # seen once in CI on a page that had rendered): the picture is taken again, once.
            if "Unable to capture screenshot" not in str(exc):
                raise
            time.sleep(0.5)
            self("screenshot", path=str(path))
        return path

    def network(self, clear: bool = False) -> list[dict[str, Any]]:
        return list(self("network", clear=clear))

    def console(self) -> list[dict[str, Any]]:
        return list(self("console"))

    def click_popup(self, selector: str) -> Page:
        """Click what opens a new tab, and return that tab (close it before this page)."""
        return Page(self.browser, int(self("clickPopup", selector=selector)["context"]), self.artifacts)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self("closeContext")
