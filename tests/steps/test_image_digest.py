"""The container image's digest in every done record (``build.image_digest``, beside the tag
in ``build.image``), read from the ECS task metadata endpoint v4 — here a fake one on
127.0.0.1 — and nothing recorded, quickly, when there is no endpoint or it does not answer."""

from __future__ import annotations

import json
import socket
import threading
import time
import urllib.request
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from foldstack.core.provenance import IMAGE_ENV, run_provenance
from foldstack.steps import image_digest
from foldstack.steps.common import run_step

DIGEST = "sha256:" + "4f" * 32
TAG = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/foldstack-dev/predict:0a1b2c"


@pytest.fixture
def endpoint():
    """A fake ECS container metadata endpoint: GET <uri> -> this container's metadata."""
    answers = {"body": {"DockerId": "abc", "Name": "default", "Image": TAG, "ImageID": DIGEST}}
    paths: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            paths.append(self.path)
            data = json.dumps(answers["body"]).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    image_digest._image_id.cache_clear()
    try:
        yield {"uri": f"http://127.0.0.1:{server.server_address[1]}/v4/abc-123", "answers": answers, "paths": paths}
    finally:
        server.shutdown()
        server.server_close()
        image_digest._image_id.cache_clear()


def test_done_record_carries_the_image_digest_beside_the_tag(endpoint, tmp_path, monkeypatch):
    monkeypatch.setenv(image_digest.METADATA_ENV, endpoint["uri"])
    monkeypatch.setenv(IMAGE_ENV, TAG)
    out = run_step("msa", "r", "t", tmp_path, lambda ctx: (ctx.work_dir / "x.txt").write_text("x"))
    build = json.loads((out / "msa.done.json").read_text())["build"]
    assert (build["image"], build["image_digest"]) == (TAG, DIGEST)
    assert endpoint["paths"] == ["/v4/abc-123"]  # the container's own metadata, read once per process
    run_step("msa", "r", "t2", tmp_path, lambda ctx: None)
    assert endpoint["paths"] == ["/v4/abc-123"]
    # the manifest's run-level provenance names the image by tag and digest
    steps = run_provenance([{"provenance": {"msa": {"build": build}}}])["steps"]
    assert steps["msa"]["images"] == [f"{TAG}@{DIGEST}"]


def test_no_endpoint_or_a_bad_answer_records_nothing(endpoint, tmp_path, monkeypatch):
    monkeypatch.delenv(image_digest.METADATA_ENV, raising=False)
    assert image_digest.container_image() == {}  # a local run
    endpoint["answers"]["body"] = {"Image": TAG, "ImageID": "not-a-digest"}
    monkeypatch.setenv(image_digest.METADATA_ENV, endpoint["uri"])
    assert image_digest.container_image() == {}
    out = run_step("msa", "r", "t", tmp_path, lambda ctx: None)
    assert "image_digest" not in json.loads((out / "msa.done.json").read_text())["build"]


@pytest.mark.slow
def test_an_endpoint_that_never_answers_costs_at_most_the_timeout(monkeypatch):
    silent = socket.create_server(("127.0.0.1", 0))  # accepts, never answers
    try:
        monkeypatch.setenv(image_digest.METADATA_ENV, f"http://127.0.0.1:{silent.getsockname()[1]}/v4/x")
        image_digest._image_id.cache_clear()
        t0 = time.monotonic()
        assert image_digest.container_image() == {}
        assert time.monotonic() - t0 < image_digest.TIMEOUT_S + 1.0
    finally:
        silent.close()
        image_digest._image_id.cache_clear()


def test_the_endpoint_is_read_directly_even_when_a_proxy_is_set(endpoint, monkeypatch):
    """A job image that sets HTTP_PROXY (and no NO_PROXY) must still reach the link-local
    endpoint: here the proxy accepts and never answers, so going through it yields nothing."""
    silent = socket.create_server(("127.0.0.1", 0))
    try:
        for name in ("http_proxy", "HTTP_PROXY"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{silent.getsockname()[1]}")
        for name in ("no_proxy", "NO_PROXY"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv(image_digest.METADATA_ENV, endpoint["uri"])
        # urlopen's default opener reads the proxy settings once, when it is first built: as a
        # fresh job process would, build it now (public API; the next urlopen builds a new one)
        urllib.request.install_opener(None)
        assert image_digest.container_image() == {"image_digest": DIGEST}
        assert endpoint["paths"] == ["/v4/abc-123"]
    finally:
        silent.close()
        urllib.request.install_opener(None)


@pytest.mark.slow
def test_an_endpoint_that_trickles_its_answer_is_abandoned_at_the_deadline(monkeypatch):
    """Each byte arrives within the socket timeout, so only a deadline on the whole lookup
    stops it: the step goes on after DEADLINE_S with nothing recorded."""
    server = socket.create_server(("127.0.0.1", 0))
    done = threading.Event()

    def trickle():
        conn, _ = server.accept()
        with conn:
            conn.recv(4096)
            for byte in b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 200:  # ~60 s in all, if nobody gives up
                if done.wait(0.3):
                    return
                try:
                    conn.sendall(bytes([byte]))
                except OSError:
                    return

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(image_digest.METADATA_ENV, f"http://127.0.0.1:{server.getsockname()[1]}/v4/x")
        image_digest._image_id.cache_clear()
        t0 = time.monotonic()
        assert image_digest.container_image() == {}
        assert time.monotonic() - t0 < image_digest.DEADLINE_S + 1.0
    finally:
        done.set()
        thread.join(timeout=5)
        server.close()
        image_digest._image_id.cache_clear()
