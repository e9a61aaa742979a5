"""A source that answers slowly: 4 MiB of CSV rows over about 20 s, for the kill-the-worker tests.

Run as a script in the compose tests' container (`python /srv/slow_server.py`, port 8001);
`tests/stack` serves `Slow` on loopback itself.
"""

from __future__ import annotations

import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ROW = b"%08d,slow,1\n"
ROWS = 4 * 1024 * 1024 // len(ROW % 0)
CHUNK = 2000  # rows per write: ~100 writes, one every 0.2 s


class Slow(BaseHTTPRequestHandler):
    """A CSV source that sends 4 MiB over about 20 s."""

    def do_GET(self) -> None:
        header = b"n,kind,value\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/csv")
        self.send_header("Content-Length", str(len(header) + ROWS * len(ROW % 0)))
        self.end_headers()
        self.wfile.write(header)
        try:
            for start in range(0, ROWS, CHUNK):
                self.wfile.write(b"".join(ROW % i for i in range(start, min(start + CHUNK, ROWS))))
                self.wfile.flush()
                time.sleep(0.2)
        except OSError:
            pass  # the reader was killed: that is the point

    def log_message(self, *_args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer(("0.0.0.0", 8001), Slow).serve_forever()
