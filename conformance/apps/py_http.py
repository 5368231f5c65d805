"""The conformance app on Python's http.server (BaseHTTPRequestHandler).

Usage: py_http.py PORT [1.0|1.1]. With 1.0 it behaves as the stdlib default does:
HTTP/1.0 answers with close-delimited bodies and no keep-alive.
Endpoints (every app in conformance/apps speaks the same set):
  /echo            any method: JSON of what arrived (headers as sent, body length and sha256)
  /status/N        answers N with no body
  /big/N           N bytes (deterministic pattern), Content-Length
  /early           413 before reading the body, then closes
  /sse             3 server-sent events, 300 ms apart, the first at once
  /slow/MS         answers after MS milliseconds (long-poll)
  /trailers        chunked with a trailer x-checksum (HTTP/1.1 only)
  /die             promises 1000 bytes, sends 10, closes
With ROUTE_LOG set, every echo is also appended to that file as one JSON line, with
"route": the path as an app on http.server routes it (SimpleHTTPRequestHandler's
translate_path: the target's path, percent-decoded) -- for conformance/differential.py.
"""
import hashlib
import json
import os
import sys
import time
import urllib.parse
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

PATTERN = bytes(range(256)) * 4096


def pattern(n):
    out = bytearray()
    while len(out) < n:
        out += PATTERN[: n - len(out)]
    return bytes(out)


def log_route(echo):
    """One line per request routed, written before the answer (O_APPEND: whole lines)."""
    path = os.environ.get("ROUTE_LOG")
    if path:
        with open(path, "a") as f:
            f.write(json.dumps(echo) + "\n")


class Handler(BaseHTTPRequestHandler):
    def log_message(self, *args):
        pass

    def read_body(self):
        if self.headers.get("transfer-encoding", "").lower() == "chunked":
            data = bytearray()
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip(), 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    return bytes(data)
                data += self.rfile.read(size)
                self.rfile.readline()
        n = int(self.headers.get("content-length") or 0)
        return self.rfile.read(n) if n else b""

    def send_body(self, status, body, ctype="application/json", extra=()):
        self.send_response(status)
        self.send_header("content-type", ctype)
        self.send_header("content-length", str(len(body)))
        for k, v in extra:
            self.send_header(k, v)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def handle_any(self):
        path = self.path
        if path.startswith("/status/"):
            code = int(path.split("/")[2])
            self.send_response(code)
            if code not in (204, 304):
                self.send_header("content-length", "0")
            self.end_headers()
            return
        if path.startswith("/big/"):
            self.read_body()
            self.send_body(200, pattern(int(path.split("/")[2])), "application/octet-stream")
            return
        if path == "/early":
            self.send_body(413, b'{"error":"too big"}', extra=[("connection", "close")])
            self.close_connection = True
            return
        if path == "/sse":
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("cache-control", "no-cache")
            self.end_headers()
            for i in range(3):
                self.wfile.write(f"data: event {i}\n\n".encode())
                self.wfile.flush()
                time.sleep(0.3)
            self.close_connection = True
            return
        if path.startswith("/slow/"):
            time.sleep(int(path.split("/")[2]) / 1000)
            self.send_body(200, b"late")
            return
        if path == "/trailers" and self.request_version == "HTTP/1.1" and self.protocol_version == "HTTP/1.1":
            body = b"trailer body"
            self.send_response(200)
            self.send_header("transfer-encoding", "chunked")
            self.send_header("trailer", "x-checksum")
            self.end_headers()
            self.wfile.write(b"%x\r\n%s\r\n" % (len(body), body))
            self.wfile.write(b"0\r\nx-checksum: " + hashlib.sha256(body).hexdigest().encode() + b"\r\n\r\n")
            return
        if path == "/die":
            self.send_response(200)
            self.send_header("content-length", "1000")
            self.end_headers()
            self.wfile.write(b"x" * 10)
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)
            return
        body = self.read_body()
        echo = {
            "app": "py_http",
            "method": self.command,
            "route": urllib.parse.unquote(urllib.parse.urlsplit(self.path).path),
            "target": self.path,
            # The target as it arrived (http.server merges a leading "//" into self.path).
            "raw": self.requestline.split(" ")[1] if " " in self.requestline else "",
            "version": self.request_version,
            "headers": [[k, v] for k, v in self.headers.items()],
            "body_len": len(body),
            "body_sha256": hashlib.sha256(body).hexdigest(),
        }
        log_route(echo)
        self.send_body(200, json.dumps(echo).encode())

    do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = do_OPTIONS = do_HEAD = handle_any

    def __getattr__(self, name):
        # Any other method (PROPFIND, a lower-case one, ...) is handled alike, as
        # frameworks on WSGI do: the differential test sees what each stack accepts.
        if name.startswith("do_"):
            return self.handle_any
        raise AttributeError(name)


if __name__ == "__main__":
    port = int(sys.argv[1])
    if len(sys.argv) > 2 and sys.argv[2] == "1.1":
        Handler.protocol_version = "HTTP/1.1"
    ThreadingHTTPServer.daemon_threads = True
    ThreadingHTTPServer(("127.0.0.1", port), Handler).serve_forever()
