"""An HTTP/1.1 app in Python's standard library that answers each request with the
port its client connected from, so a test sees which upstream connection carried it.
`close` as the first argument: close every connection after one answer, without
saying so (no `Connection: close`), as a server whose keep-alive timeout fired would.
Prints its port on the first line of stdout."""
import http.server
import sys

CLOSE = len(sys.argv) > 1 and sys.argv[1] == "close"


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = str(self.client_address[1]).encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
        self.wfile.flush()
        if CLOSE:
            self.close_connection = True

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
print(server.server_address[1], flush=True)
server.serve_forever()
