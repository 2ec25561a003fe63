# SPDX-License-Identifier: Apache-2.0
"""A folder over ``http://127.0.0.1:PORT`` that answers each request ``LATENCY_MS`` late and sends
at most ``MBPS`` megabytes a second (a remote bucket in miniature, for ``bench_stream.py``).

    python benchmarks/slow_server.py FOLDER PORT LATENCY_MS MBPS
"""

from __future__ import annotations

import functools
import http.server
import sys
import time


class SlowHandler(http.server.SimpleHTTPRequestHandler):
    """Files of a folder, each answer ``latency`` seconds late and sent at ``rate`` bytes a second."""

    latency, rate = 0.02, 200e6

    def end_headers(self):
        time.sleep(self.latency)
        super().end_headers()

    def copyfile(self, source, outputfile):
        while block := source.read(2**20):
            outputfile.write(block)
            time.sleep(len(block) / self.rate)

    def log_message(self, *args):
        pass


if __name__ == "__main__":
    root, port, latency_ms, mbps = sys.argv[1], int(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
    SlowHandler.latency, SlowHandler.rate = latency_ms / 1000, mbps * 1e6
    http.server.ThreadingHTTPServer(("127.0.0.1", port), functools.partial(SlowHandler, directory=root)).serve_forever()
