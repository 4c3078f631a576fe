"""A small headless-Chromium driver over the DevTools protocol, with the standard library only.

A minimal WebSocket client (RFC 6455: text frames, masked from the client) speaks CDP to
one page; a minimal PNG reader tells whether a screenshot is more than one colour.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import tempfile
import time
import urllib.request
import zlib
from urllib.parse import urlparse

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
# WebGL pages (MapLibre) draw through Chromium's software renderer instead of no GPU at all.
WEBGL_FLAGS = ("--use-gl=swiftshader", "--enable-unsafe-swiftshader", "--ignore-gpu-blocklist")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
         "--disable-component-update", "--disable-sync", "--no-first-run",
         "--disable-default-apps", "--mute-audio", "--remote-debugging-port=0")


class WebSocket:
    """Text frames over a plain TCP connection (enough for CDP on loopback)."""

    def __init__(self, url: str, timeout: float = 30.0) -> None:
        parts = urlparse(url)
        self.sock = socket.create_connection((parts.hostname, parts.port), timeout=timeout)
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {parts.path} HTTP/1.1\r\nHost: {parts.hostname}:{parts.port}"
                           f"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                           ).encode())
        answer = b""
        while b"\r\n\r\n" not in answer:
            chunk = self.sock.recv(4096)
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            answer += chunk
        head, self._buffer = answer.split(b"\r\n\r\n", 1)
        if b" 101 " not in head.split(b"\r\n", 1)[0]:
            raise ConnectionError(head.decode(errors="replace"))

    def _read(self, n: int) -> bytes:
        while len(self._buffer) < n:
            chunk = self.sock.recv(max(65536, n - len(self._buffer)))
            if not chunk:
                raise ConnectionError("the browser closed the connection")
            self._buffer += chunk
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def _frame(self, opcode: int, payload: bytes) -> None:
        mask = os.urandom(4)
        n = len(payload)
        if n < 126:
            header = struct.pack("!BB", 0x80 | opcode, 0x80 | n)
        elif n < 65536:
            header = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, n)
        else:
            header = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, n)
        padded = mask * (n // 4 + 1)
        masked = (int.from_bytes(payload, "big") ^ int.from_bytes(padded[:n], "big")
                  ).to_bytes(n, "big") if n else b""
        self.sock.sendall(header + mask + masked)

    def send(self, text: str) -> None:
        self._frame(0x1, text.encode())

    def recv(self) -> str:
        message = b""
        while True:
            first, second = self._read(2)
            opcode, n = first & 0x0F, second & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._read(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._read(8))[0]
            payload = self._read(n)
            if opcode == 0x9:
                self._frame(0xA, payload)
                continue
            if opcode == 0x8:
                raise ConnectionError("the browser closed the WebSocket")
            message += payload
            if first & 0x80:
                return message.decode()

    def close(self) -> None:
        self.sock.close()


class Page:
    """One Chromium page driven through CDP; events are kept in ``events``."""

    def __init__(self, ws_url: str) -> None:
        self.ws = WebSocket(ws_url)
        self.events: list[dict] = []
        self._id = 0

    def call(self, method: str, **params) -> dict:
        self._id += 1
        self.ws.send(json.dumps({"id": self._id, "method": method, "params": params}))
        while True:
            message = json.loads(self.ws.recv())
            if message.get("id") == self._id:
                if "error" in message:
                    raise RuntimeError(f"{method}: {message['error']}")
                return message.get("result", {})
            self.events.append(message)

    def evaluate(self, expression: str, *, await_promise: bool = False):
        result = self.call("Runtime.evaluate", expression=expression, returnByValue=True,
                           awaitPromise=await_promise)
        if "exceptionDetails" in result:
            raise RuntimeError(str(result["exceptionDetails"]))
        return result["result"].get("value")

    def named(self, method: str) -> list[dict]:
        return [e["params"] for e in self.events if e.get("method") == method]

    def pending_requests(self) -> int:
        return len(self.pending_urls())

    def pending_urls(self) -> list[str]:
        """The URLs of the requests sent and not yet loaded or failed."""
        started = {e["requestId"]: e["request"]["url"]
                   for e in self.named("Network.requestWillBeSent")}
        done = {e["requestId"] for m in ("Network.loadingFinished", "Network.loadingFailed")
                for e in self.named(m)}
        return [url for request, url in started.items() if request not in done]

    def wait(self, predicate, timeout: float = 20.0, idle_s: float = 0.6,
             network: bool = True) -> bool:
        """Poll ``predicate()`` (a JS expression) until true and (``network``) all is loaded."""
        deadline = time.monotonic() + timeout
        quiet_since = None
        while time.monotonic() < deadline:
            ok = bool(self.evaluate(predicate)) and (not network or self.pending_requests() == 0)
            if ok:
                quiet_since = quiet_since or time.monotonic()
                if time.monotonic() - quiet_since >= idle_s:
                    return True
            else:
                quiet_since = None
            time.sleep(0.2)
        return False

    def errors(self) -> list[str]:
        found = [f"console.{e['type']}: {e.get('args')}"
                 for e in self.named("Runtime.consoleAPICalled") if e["type"] == "error"]
        found += [f"exception: {e['exceptionDetails']}"
                  for e in self.named("Runtime.exceptionThrown")]
        found += [f"log: {e['entry'].get('text')} {e['entry'].get('url', '')}"
                  for e in self.named("Log.entryAdded") if e["entry"]["level"] == "error"]
        return found

    def requested_urls(self) -> list[str]:
        return [e["request"]["url"] for e in self.named("Network.requestWillBeSent")]

    def screenshot(self, **params) -> bytes:
        return base64.b64decode(self.call("Page.captureScreenshot", format="png",
                                          **params)["data"])


class Chromium:
    """A headless Chromium with its own profile, removed when closed."""

    def __init__(self, *, webgl: bool = False) -> None:
        self.profile = tempfile.mkdtemp(prefix="twin-chromium-")
        self._page: tuple[Page, str] | None = None
        flags = [f for f in FLAGS if f != "--disable-gpu"] + list(WEBGL_FLAGS) if webgl else FLAGS
        self.process = subprocess.Popen(
            [CHROMIUM, *flags, f"--user-data-dir={self.profile}", "about:blank"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        deadline = time.monotonic() + 30
        self.port = None
        while time.monotonic() < deadline and self.port is None:
            line = self.process.stderr.readline()
            if not line and self.process.poll() is not None:
                break
            found = re.search(r"DevTools listening on ws://127\.0\.0\.1:(\d+)/", line)
            if found:
                self.port = int(found[1])
        if self.port is None:
            self.close()
            raise RuntimeError("Chromium did not start")

    def new_page(self) -> Page:
        """A page in a tab of its own; the previous page's tab is closed first.

        So no document, request or DevTools session of an earlier test carries over into the
        next (one profile: storage and the HTTP cache do, as in a crew member's browser).
        """
        self._close_page()
        opened = urllib.request.Request(f"http://127.0.0.1:{self.port}/json/new?about:blank",
                                        method="PUT")
        with urllib.request.urlopen(opened, timeout=10) as r:
            target = json.load(r)
        page = Page(target["webSocketDebuggerUrl"])
        self._page = (page, target["id"])
        for domain in ("Network", "Runtime", "Log", "Page"):
            page.call(f"{domain}.enable")
        page.call("Emulation.setDeviceMetricsOverride", width=1280, height=860,
                  deviceScaleFactor=1, mobile=False)
        return page

    def _close_page(self) -> None:
        if self._page is None:
            return
        page, target = self._page
        self._page = None
        page.ws.close()
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/json/close/{target}",
                                    timeout=10):
            pass

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.profile, ignore_errors=True)


def _png_image_data(png: bytes) -> tuple[int, int, int, bytes]:
    """Width, height, channels (3 RGB, 4 RGBA) and inflated image data of an 8-bit PNG."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, width, height, channels = 8, b"", 0, 0, 3
    while pos < len(png):
        n, kind = struct.unpack("!I4s", png[pos:pos + 8])
        body = png[pos + 8:pos + 8 + n]
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack("!IIBB", body[:10])
            assert depth == 8 and colour in (2, 6), (depth, colour)
            channels = 3 if colour == 2 else 4
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    return width, height, channels, zlib.decompress(idat)


def png_colours(png: bytes, limit: int = 50) -> int:
    """How many distinct colours a PNG (8-bit RGB or RGBA) holds, counting up to ``limit``."""
    width, _height, channels, raw = _png_image_data(png)
    stride = width * channels
    previous = bytearray(stride)
    colours: set[bytes] = set()
    for row in range(len(raw) // (stride + 1)):
        kind = raw[row * (stride + 1)]
        line = bytearray(raw[row * (stride + 1) + 1:(row + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - channels] if i >= channels else 0
            b = previous[i]
            c = previous[i - channels] if i >= channels else 0
            if kind == 1:
                line[i] = (line[i] + a) & 0xFF
            elif kind == 2:
                line[i] = (line[i] + b) & 0xFF
            elif kind == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xFF
            elif kind == 4:
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                           ) & 0xFF
        previous = line
        if row % 8 == 0:
            colours.update(bytes(line[i:i + 3]) for i in range(0, stride, channels * 4))
            if len(colours) >= limit:
                break
    return len(colours)


def png_pixels(png: bytes):
    """The RGB pixels of a PNG (8-bit RGB or RGBA) as a numpy array of (height, width, 3)."""
    import numpy as np

    width, height, channels, data = _png_image_data(png)
    raw = np.frombuffer(data, dtype=np.uint8).reshape(height, -1)
    stride = width * channels
    out = np.zeros((height, stride), dtype=np.uint8)
    previous = np.zeros(stride, dtype=np.int32)
    for row in range(height):
        kind, line = raw[row, 0], raw[row, 1:].astype(np.int32)
        if kind == 1:  # sub: a running sum per channel
            line = np.cumsum(line.reshape(width, channels), axis=0).reshape(-1) % 256
        elif kind == 2:
            line = (line + previous) % 256
        elif kind in (3, 4):  # average, Paeth: each byte needs the one before it
            values = line.tolist()
            above = previous.tolist()
            for i in range(stride):
                a = values[i - channels] if i >= channels else 0
                b = above[i]
                if kind == 3:
                    values[i] = (values[i] + (a + b) // 2) & 0xFF
                    continue
                c = above[i - channels] if i >= channels else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                values[i] = (values[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)
                             ) & 0xFF
            line = np.array(values, dtype=np.int32)
        out[row] = line
        previous = line
    return out.reshape(height, width, channels)[:, :, :3]
