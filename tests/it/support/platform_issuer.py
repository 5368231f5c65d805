"""Platform issuers trustgate did not write: Python's http.server over TLS, keys and
tokens by `cryptography` and PyJWT.

- A Kubernetes-like API server at https://localhost:PORT: OIDC discovery at
  /.well-known/openid-configuration and the JWKS at /openid/v1/jwks, both refusing a
  request without `Authorization: Bearer` and the reader token or a service-account
  token it issued (as the API server does by default); RS256 keys with kids as the API server makes them (base64url SHA-256 of the
  DER public key, not RFC 7638 thumbprints); tokens with the claim layout of a projected
  service-account token.
- A SPIFFE trust bundle at /spiffe/bundle: a JWT-SVID key (`use: jwt-svid`) beside an
  X.509-SVID key (`use: x509-svid`, with `x5c`), `spiffe_sequence`, no `kid` rules.
- A generic OIDC provider at https://localhost:PORT/oidc (discovery, JWKS, ES256).
- An OIDC provider at https://localhost:PORT/away whose discovery document names a
  jwks_uri on another origin (https://127.0.0.1:PORT/away/jwks, the same certificate): it
  counts the JWKS fetches ("away") and those that carried an Authorization header
  ("away_bearer").

Usage: platform_issuer.py CERT KEY READER_TOKEN [ADDRESS]
Listens on ADDRESS (default 127.0.0.1, issuer https://localhost:PORT; otherwise the
issuer is https://ADDRESS:PORT). Prints the port, then answers one command per stdin line, one line each:
  mint KIND SIGNER TTL CLAIMS_JSON   -> a token; KIND k8s|spiffe|oidc fills the usual
                                        claims, CLAIMS_JSON overrides them ("null" removes);
                                        SIGNER k8s|unpublished|spiffe|x509|oidc
  kid SIGNER KID                     -> "ok": tokens of SIGNER carry this kid from now on
  rotate                             -> a new k8s key is published (the old one too)
  stats                              -> "discovery=N jwks=N refused=N bundle=N oidc=N"
"""
import base64
import hashlib
import http.server
import json
import ssl
import sys
import threading
import time
import uuid

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

cert, keyfile, reader = sys.argv[1:4]
address = sys.argv[4] if len(sys.argv) > 4 else None
lock = threading.Lock()
stats = {"discovery": 0, "jwks": 0, "refused": 0, "bundle": 0, "oidc": 0, "away": 0, "away_bearer": 0}


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def api_server_kid(public):
    der = public.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return b64(hashlib.sha256(der).digest())


def jwk_of(private, **extra):
    jwk = json.loads(jwt.algorithms.get_default_algorithms()[
        "RS256" if isinstance(private, rsa.RSAPrivateKey) else "ES256"
    ].to_jwk(private.public_key()))
    jwk.update(extra)
    return jwk


class Signer:
    def __init__(self, private, alg, kid):
        self.private, self.alg, self.kid = private, alg, kid


def rsa_signer():
    k = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return Signer(k, "RS256", api_server_kid(k.public_key()))


def ec_signer(kid):
    return Signer(ec.generate_private_key(ec.SECP256R1()), "ES256", kid)


signers = {
    "k8s": rsa_signer(),
    "unpublished": rsa_signer(),
    "spiffe": ec_signer("svid-key-1"),
    "x509": ec_signer("x509-key-1"),
    "oidc": ec_signer("oidc-key-1"),
    # A provider of people's tokens (End users): ES256 and RS256, at /people.
    "people-ec": ec_signer("people-ec-1"),
    "people-rsa": Signer(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256", "people-rsa-1"),
}
published_k8s = [signers["k8s"]]

port_holder = {}


def issuer():
    return "https://%s:%d" % (address or "localhost", port_holder["port"])


def k8s_jwks():
    return {"keys": [jwk_of(s.private, kid=s.kid, alg="RS256", use="sig") for s in published_k8s]}


def bundle():
    x509 = jwk_of(signers["x509"].private, kid=signers["x509"].kid, use="x509-svid")
    x509["x5c"] = ["MIIBfake"]
    return {
        "spiffe_sequence": 7,
        "spiffe_refresh_hint": 300,
        "keys": [jwk_of(signers["spiffe"].private, kid=signers["spiffe"].kid, use="jwt-svid"), x509],
    }


class Handler(http.server.BaseHTTPRequestHandler):
    def authorized(self, value):
        """The reader token, or a service-account token this API server issued."""
        if not value.startswith("Bearer "):
            return False
        token = value[len("Bearer "):]
        if token == reader:
            return True
        for s in published_k8s:
            try:
                jwt.decode(token, s.private.public_key(), algorithms=["RS256"],
                           options={"verify_aud": False}, issuer=issuer())
                return True
            except jwt.PyJWTError:
                pass
        return False

    def answer(self, code, doc):
        body = json.dumps(doc).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        authorized = self.authorized(self.headers.get("Authorization") or "")
        with lock:
            if self.path in ("/.well-known/openid-configuration", "/openid/v1/jwks"):
                if not authorized:
                    stats["refused"] += 1
                    return self.answer(401, {"kind": "Status", "code": 401})
            if self.path == "/.well-known/openid-configuration":
                stats["discovery"] += 1
                doc = {
                    "issuer": issuer(),
                    "jwks_uri": issuer() + "/openid/v1/jwks",
                    "response_types_supported": ["id_token"],
                    "subject_types_supported": ["public"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                }
                return self.answer(200, doc)
            if self.path == "/openid/v1/jwks":
                stats["jwks"] += 1
                return self.answer(200, k8s_jwks())
            if self.path == "/spiffe/bundle":
                stats["bundle"] += 1
                return self.answer(200, bundle())
            if self.path == "/people/.well-known/openid-configuration":
                return self.answer(200, {"issuer": issuer() + "/people", "jwks_uri": issuer() + "/people/jwks"})
            if self.path == "/people/jwks":
                keys = [jwk_of(signers[n].private, kid=signers[n].kid, alg=signers[n].alg, use="sig")
                        for n in ("people-ec", "people-rsa")]
                return self.answer(200, {"keys": keys})
            if self.path == "/oidc/.well-known/openid-configuration":
                return self.answer(200, {"issuer": issuer() + "/oidc", "jwks_uri": issuer() + "/oidc/jwks"})
            if self.path == "/away/.well-known/openid-configuration":
                away = "https://127.0.0.1:%d/away/jwks" % port_holder["port"]
                return self.answer(200, {"issuer": issuer() + "/away", "jwks_uri": away})
            if self.path == "/away/jwks":
                stats["away"] += 1
                if self.headers.get("Authorization"):
                    stats["away_bearer"] += 1
            if self.path in ("/oidc/jwks", "/away/jwks"):
                stats["oidc"] += self.path == "/oidc/jwks"
                s = signers["oidc"]
                return self.answer(200, {"keys": [jwk_of(s.private, kid=s.kid, alg="ES256", use="sig")]})
        self.answer(404, {})

    def log_message(self, *args):
        pass


def claims_for(kind, ttl):
    now = int(time.time())
    base = {"iat": now, "nbf": now, "exp": now + ttl, "jti": str(uuid.uuid4())}
    if kind == "k8s":
        base.update({
            "iss": issuer(),
            "sub": "system:serviceaccount:shop:orders",
            "aud": ["billing"],
            "kubernetes.io": {
                "namespace": "shop",
                "node": {"name": "node-1", "uid": str(uuid.uuid4())},
                "pod": {"name": "orders-7d4b9c-x2x7q", "uid": str(uuid.uuid4())},
                "serviceaccount": {"name": "orders", "uid": str(uuid.uuid4())},
                "warnafter": now + ttl * 8 // 10,
            },
        })
    elif kind == "spiffe":
        # SPIRE: no iss by default, no jti.
        base = {"sub": "spiffe://example.org/ns/shop/sa/orders", "aud": ["billing"], "exp": now + ttl, "iat": now}
    else:
        base.update({"iss": issuer() + "/oidc", "sub": "client-123", "aud": "billing"})
    return base


def mint(kind, signer, ttl, overrides):
    claims = claims_for(kind, ttl)
    for k, v in overrides.items():
        if v is None:
            claims.pop(k, None)
        else:
            claims[k] = v
    s = signers[signer]
    return jwt.encode(claims, s.private, algorithm=s.alg, headers={"kid": s.kid, "typ": "JWT"})


server = http.server.ThreadingHTTPServer((address or "127.0.0.1", 0), Handler)
port_holder["port"] = server.server_address[1]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, keyfile)
server.socket = context.wrap_socket(server.socket, server_side=True)
threading.Thread(target=server.serve_forever, daemon=True).start()
print(port_holder["port"], flush=True)

for line in sys.stdin:
    words = line.strip().split(" ", 4)
    if not words or not words[0]:
        continue
    with lock:
        if words[0] == "mint":
            out = mint(words[1], words[2], int(words[3]), json.loads(words[4]) if len(words) > 4 else {})
        elif words[0] == "kid":
            signers[words[1]].kid = words[2]
            out = "ok"
        elif words[0] == "rotate":
            s = rsa_signer()
            signers["k8s"] = s
            published_k8s.append(s)
            out = s.kid
        elif words[0] == "stats":
            out = " ".join("%s=%d" % kv for kv in stats.items())
        else:
            out = "error unknown command"
    print(out, flush=True)
server.shutdown()
