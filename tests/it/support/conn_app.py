"""An HTTP/1.1 app in Python's standard library that answers each request with the
port its client connected from, so a test sees which upstream connection carried it.
First argument, the mode:
- `keep`: keep-alive, as usual;
- `close`: close every connection after one answer, without saying so (no
  `Connection: close`), as a server whose keep-alive timeout fired would;
- `drop`: answer the first request of each connection, then read the second one whole
  and close without answering (the request reached a connection that died under it).
Second argument (optional): a file that gets one line per request received,
`METHOD PATH PORT`, so that a test can count what arrived — a request sent again
arrives twice.
Prints its port on the first line of stdout."""
import http.server
import sys

MODE = sys.argv[1] if len(sys.argv) > 1 else "keep"
LOG = sys.argv[2] if len(sys.argv) > 2 else None


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self):
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        if LOG:
            with open(LOG, "a") as f:
                f.write(f"{self.command} {self.path} {self.client_address[1]}\n")
        self.seen = getattr(self, "seen", 0) + 1
        if MODE == "drop" and self.seen >= 2:
            self.close_connection = True
            return
        body = str(self.client_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if MODE == "close":
            self.close_connection = True

    do_GET = answer
    do_POST = answer

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
