"""A minimal Chrome DevTools Protocol client over `--remote-debugging-pipe`, for the page tests.

Chromium reads JSON commands on its fd 3 and writes replies and events on its
fd 4, each message ended by a NUL byte; that is all the protocol transport
there is, so no websocket library is needed. `load_page` opens one file in a
fresh headless Chromium and returns what a test asserts on: console messages,
uncaught exceptions, log entries, the URLs the page requested, the result of
a JavaScript expression and a full-page screenshot.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import json
import os
import select
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


@dataclass
class PageLoad:
    """What happened while a page loaded, and what a script found in it."""

    console: list[dict[str, Any]] = field(default_factory=list)  # Runtime.consoleAPICalled
    exceptions: list[dict[str, Any]] = field(default_factory=list)  # Runtime.exceptionThrown
    log: list[dict[str, Any]] = field(default_factory=list)  # Log.entryAdded entries
    requests: list[str] = field(default_factory=list)  # URLs of Network.requestWillBeSent
    value: Any = None  # the evaluated expression's JSON value
    screenshot: bytes = b""  # PNG of the whole page

    @property
    def errors(self) -> list[str]:
        """Every console error or warning, uncaught exception and error log entry, as text."""
        found = [
            f"console.{c['type']}: {[a.get('value', a.get('description')) for a in c['args']]}"
            for c in self.console
            if c.get("type") in ("error", "warning", "assert")
        ]
        found += [f"exception: {e['exceptionDetails'].get('text')}" for e in self.exceptions]
        found += [
            f"log {e['level']}: {e.get('text')} {e.get('url', '')}"
            for e in self.log
            if e.get("level") in ("error", "warning")
        ]
        return found


class _Pipe:
    def __init__(self, user_data_dir: Path) -> None:
        to_chrome_r, to_chrome_w = os.pipe()
        from_chrome_r, from_chrome_w = os.pipe()
        # Chromium expects its ends as fds 3 and 4: keep them above 10 here, so that
        # setting 3 and 4 in the child cannot overwrite one another.
        read_end = fcntl.fcntl(to_chrome_r, fcntl.F_DUPFD, 10)
        write_end = fcntl.fcntl(from_chrome_w, fcntl.F_DUPFD, 10)
        os.close(to_chrome_r)
        os.close(from_chrome_w)

        # bash (dash takes no fd above 9) moves them into place and execs Chromium: no
        # preexec_fn, which is unsafe in a process with threads (torch has a pool of them).
        self.process = subprocess.Popen(
            ["/bin/bash", "-c", 'exec 3<&"$1" 4>&"$2"; shift 2; exec "$@"', "sh",
             str(read_end), str(write_end), str(CHROMIUM), *FLAGS,
             f"--user-data-dir={user_data_dir}", "--remote-debugging-pipe", "about:blank"],
            pass_fds=(read_end, write_end),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip
        os.close(read_end)
        os.close(write_end)
        self.out, self.inp = to_chrome_w, from_chrome_r
        self.buffer = b""
        self.next_id = 0
        self.events: list[dict[str, Any]] = []

    def receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self.buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("chromium did not answer in time")
            ready, _, _ = select.select([self.inp], [], [], left)
            if ready:
                chunk = os.read(self.inp, 1 << 20)
                if not chunk:
                    raise EOFError("chromium closed the debugging pipe")
                self.buffer += chunk
        message, self.buffer = self.buffer.split(b"\0", 1)
        return json.loads(message)

    def call(self, method: str, params=None, *, session=None, timeout: float = 30.0):
        self.next_id += 1
        message: dict[str, Any] = {"id": self.next_id, "method": method, "params": params or {}}
        if session is not None:
            message["sessionId"] = session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout
        while True:
            reply = self.receive(deadline)
            if reply.get("id") != self.next_id:
                self.events.append(reply)
                continue
            if "error" in reply:
                raise RuntimeError(f"{method}: {reply['error']}")
            return reply.get("result", {})

    def wait_for(self, method: str, *, timeout: float = 30.0) -> None:
        if any(e.get("method") == method for e in self.events):
            return
        deadline = time.monotonic() + timeout
        while True:
            event = self.receive(deadline)
            self.events.append(event)
            if event.get("method") == method:
                return

    def close(self) -> None:
        with contextlib.suppress(OSError, EOFError, TimeoutError, RuntimeError):
            self.call("Browser.close", timeout=10)
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        os.close(self.out)
        os.close(self.inp)


def load_page(path: Path, user_data_dir: Path, *, expression: str, width: int = 1280) -> PageLoad:
    """Open `path` in headless Chromium, wait for its load event, then evaluate `expression`
    (its value must be JSON) and take a full-page screenshot."""
    pipe = _Pipe(user_data_dir)
    try:
        targets = pipe.call("Target.getTargets")["targetInfos"]
        page = next(t for t in targets if t["type"] == "page")
        session = pipe.call(
            "Target.attachToTarget", {"targetId": page["targetId"], "flatten": True}
        )["sessionId"]
        for domain in ("Page", "Runtime", "Log", "Network"):
            pipe.call(f"{domain}.enable", session=session)
        pipe.call(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": False},
            session=session,
        )
        pipe.call("Page.navigate", {"url": path.resolve().as_uri()}, session=session)
        pipe.wait_for("Page.loadEventFired")
        value = pipe.call(
            "Runtime.evaluate",
            {"expression": expression, "returnByValue": True},
            session=session,
        )["result"].get("value")
        shot = pipe.call(
            "Page.captureScreenshot",
            {"format": "png", "captureBeyondViewport": True},
            session=session,
        )
        result = PageLoad(value=value, screenshot=base64.b64decode(shot["data"]))
        for event in pipe.events:
            method, params = event.get("method"), event.get("params", {})
            if method == "Runtime.consoleAPICalled":
                result.console.append(params)
            elif method == "Runtime.exceptionThrown":
                result.exceptions.append(params)
            elif method == "Log.entryAdded":
                result.log.append(params["entry"])
            elif method == "Network.requestWillBeSent":
                result.requests.append(params["request"]["url"])
        return result
    finally:
        pipe.close()
