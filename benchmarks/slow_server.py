# SPDX-License-Identifier: Apache-2.0
"""A folder over ``http://127.0.0.1:PORT`` that answers each request ``--latency-ms`` late and sends
at most ``--mbps`` megabytes a second (a remote bucket in miniature, for ``bench_stream.py``); its
command line is ``python -m http.server``'s, plus those two.

    python benchmarks/slow_server.py PORT --bind 127.0.0.1 --directory FOLDER --latency-ms 20 --mbps 200
"""

from __future__ import annotations

import argparse
import functools
import http.server
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("port", type=int)
    parser.add_argument("--bind", default="127.0.0.1")
    parser.add_argument("--directory", required=True)
    parser.add_argument("--latency-ms", type=float, default=20.0)
    parser.add_argument("--mbps", type=float, default=200.0)
    args = parser.parse_args()
    SlowHandler.latency, SlowHandler.rate = args.latency_ms / 1000, args.mbps * 1e6
    handler = functools.partial(SlowHandler, directory=args.directory)
    http.server.ThreadingHTTPServer((args.bind, args.port), handler).serve_forever()


if __name__ == "__main__":
    main()
