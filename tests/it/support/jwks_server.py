"""A JWKS server trustgate did not write: Python's http.server over TLS (ssl), serving a
JWKS made by jwcrypto, plus a token signed by jwcrypto with that key.

Usage: jwks_server.py CERT KEY ISS AUD
Prints one line: `<port> <token>`, then serves until stdin closes.
"""
import http.server
import json
import ssl
import sys
import threading
import time

from jwcrypto import jwk, jwt

cert, keyfile, iss, aud = sys.argv[1:5]

key = jwk.JWK.generate(kty="EC", crv="P-256")
kid = key.thumbprint()  # RFC 7638, SHA-256, base64url
public = json.loads(key.export_public())
public.update({"kid": kid, "alg": "ES256", "use": "sig"})
JWKS = json.dumps({"keys": [public]}).encode()

now = int(time.time())
token = jwt.JWT(
    header={"alg": "ES256", "typ": "JWT", "kid": kid},
    claims={"iss": iss, "sub": iss, "aud": aud, "iat": now, "exp": now + 120, "jti": "py-1"},
)
token.make_signed_token(key)


class Handler(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        if self.path != "/jwks.json":
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/jwk-set+json")
        self.send_header("Cache-Control", "public, max-age=300")
        self.send_header("Content-Length", str(len(JWKS)))
        self.end_headers()
        self.wfile.write(JWKS)

    def log_message(self, *args):
        pass


server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, keyfile)
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(server.server_address[1], token.serialize(), flush=True)
sys.stdin.read()
server.shutdown()
