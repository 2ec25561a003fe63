# SPDX-License-Identifier: Apache-2.0
"""A local HTTP server laid out like the Hugging Face hub (``/OWNER/REPO/resolve/main/FILE``,
reached through ``HF_ENDPOINT``), NGC's public files (``/v2/models/...``, reached through
``CLIMAX_NGC_ENDPOINT``) and a plain host, with HTTP ranges and cut connections; the cache in
the test's folder. ``conftest.py`` loads this module as a plugin: the ``server`` fixture reaches
every test module, the helpers are imported by name."""

import hashlib
import threading
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from physicsnemo_climax import hub


class RangeHandler(SimpleHTTPRequestHandler):
    """Files of a folder with HTTP ranges; ``cut`` (bytes) ends the first response of each file early."""

    cut: dict = {}
    requests: list = []

    def log_message(self, *args):
        pass

    def do_GET(self):
        start = int(self.headers["Range"].split("=")[1].rstrip("-")) if "Range" in self.headers else 0
        self.requests.append((self.path, start))
        try:
            data = open(self.translate_path(self.path), "rb").read()
        except OSError:
            self.send_error(404)
            return
        if start >= len(data) > 0:
            self.send_error(416)  # as real servers answer a range past the end
            return
        self.send_response(206 if start else 200)
        self.send_header("Content-Length", str(len(data) - start))
        self.end_headers()
        limit = self.cut.pop(self.path, None)  # the connection drops after `limit` bytes, once
        self.wfile.write(data[start : start + limit] if limit is not None else data[start:])


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A server of ``tmp_path/site``; the cache in ``tmp_path/cache``, the hub and NGC at the server."""
    site = tmp_path / "site"
    site.mkdir()
    RangeHandler.cut, RangeHandler.requests = {}, []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), partial(RangeHandler, directory=str(site)))
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    monkeypatch.setenv("CLIMAX_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("HF_ENDPOINT", url)
    monkeypatch.setenv("CLIMAX_NGC_ENDPOINT", url)
    monkeypatch.setattr(hub, "BACKOFF_S", 0.0)
    yield site, url
    httpd.shutdown()


def put(site, relative, data: bytes):
    path = site / relative
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
