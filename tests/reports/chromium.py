"""Headless Chromium for the report tests: load a page from disk, screenshot it, and say what
it logged and which network requests it made.

Every request Chromium makes goes to a recording proxy on 127.0.0.1 (loopback included:
``--proxy-bypass-list=<-loopback>``), which answers 502 and keeps the request line
(``CONNECT host:443`` for https, ``GET http://...`` for http). A page opened from disk that
loads only its own relative files makes none. Chromium's own background traffic is switched
off at the source, so the proxy sees nothing when the page asks for nothing (the negative
control in test_reports.py shows that a remote image, script or fetch is caught):

* ``--disable-features=NetworkTimeServiceQuerying``: the network-time query (clients2.google.com);
* ``--component-updater=url-source=http://127.0.0.1:1/``: the component updater, which
  ``--disable-component-update`` leaves running for on-demand components (seen: the
  optimization guide's model manifest, update.googleapis.com), is pointed at a port Chromium
  refuses to connect to (1 is on its unsafe-port list), so no request leaves;
* ``--gaia-url=http://127.0.0.1:1/``: the sign-in account check (accounts.google.com), likewise;
* the usual ``--disable-background-networking``, ``--disable-component-update``,
  ``--disable-sync``, ``--disable-extensions``, ``--no-first-run``, ``--disable-default-apps``.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import socket
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

REQUIRE_TOOLS = os.environ.get("FOLDSTACK_REQUIRE_TOOLS") == "1"
QUIET = ("--disable-background-networking", "--disable-component-update", "--disable-sync", "--disable-extensions",
         "--no-first-run", "--disable-default-apps", "--disable-features=NetworkTimeServiceQuerying,Translate,"
         "MediaRouter,OptimizationHints", "--component-updater=url-source=http://127.0.0.1:1/",
         "--gaia-url=http://127.0.0.1:1/")


def chromium() -> str:
    path = os.environ.get("FOLDSTACK_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        message = "chromium is not installed (apt-get install chromium; or set FOLDSTACK_CHROMIUM)"
        if REQUIRE_TOOLS:
            pytest.fail(message)
        pytest.skip(message)
    return path


@dataclass
class Recorder:
    """What reached the proxy: one request line per connection."""

    port: int
    requests: list[str] = field(default_factory=list)


@contextlib.contextmanager
def recording_proxy() -> Iterator[Recorder]:
    """A proxy on an ephemeral 127.0.0.1 port that records each request's first line and
    answers 502 Bad Gateway (nothing is forwarded)."""
    server = socket.create_server(("127.0.0.1", 0))
    recorder = Recorder(port=server.getsockname()[1])
    lock = threading.Lock()

    def answer(conn: socket.socket) -> None:
        with conn:
            try:
                conn.settimeout(5)
                data = conn.recv(8192)
                if data:
                    with lock:
                        recorder.requests.append(data.split(b"\r\n", 1)[0].decode("latin-1"))
                conn.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            except OSError:
                pass

    stop = threading.Event()
    server.settimeout(0.2)  # accept() wakes to see `stop`
    answering: list[threading.Thread] = []

    def serve() -> None:
        while not stop.is_set():
            try:
                conn, _addr = server.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            worker = threading.Thread(target=answer, args=(conn,), daemon=True)
            worker.start()
            answering.append(worker)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        stop.set()
        thread.join(timeout=5)
        for worker in answering:  # every request line recorded before the list is read
            worker.join(timeout=5)
        server.close()


@dataclass
class Load:
    log: str  # Chromium's stderr (console messages included)
    requests: list[str]  # what reached the recording proxy


def load(page: Path, shot: Path, tmp_path: Path, *, budget_ms: int = 4000) -> Load:
    """Open `page` from disk in headless Chromium, every request sent to a recording proxy;
    screenshot to `shot`."""
    shot.parent.mkdir(parents=True, exist_ok=True)
    with recording_proxy() as proxy:
        cmd = [chromium(), "--headless", "--no-sandbox", "--disable-gpu-sandbox", "--use-gl=swiftshader",
               "--enable-unsafe-swiftshader", "--window-size=1280,1000", f"--proxy-server=http://127.0.0.1:{proxy.port}",
               "--proxy-bypass-list=<-loopback>", *QUIET, "--enable-logging=stderr", "--v=0",
               f"--virtual-time-budget={budget_ms}", f"--user-data-dir={tmp_path / 'profile'}",
               f"--screenshot={shot}", page.as_uri()]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-3000:]
    return Load(log=proc.stderr, requests=list(proxy.requests))


def console_problems(log: str) -> list[str]:
    bad = []
    for line in log.splitlines():
        if "GL Driver Message (OpenGL, Performance" in line:  # SwiftShader's own performance notes
            continue
        # Chromium's INFO line when a WebGL context is released (seen once, when the headless
        # browser tore the page down on a loaded machine); the drawn canvas is checked below
        if "CONTEXT_LOST_WEBGL: loseContext: context lost" in line:
            continue
        if "CONSOLE" in line or "net::ERR" in line or "Failed to load resource" in line:
            bad.append(line)
    return bad
