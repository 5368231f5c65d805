"""DPoP proofs (RFC 9449) made by jwcrypto — never by trustgate — for the tests, with
every way a proof can be wrong. One JSON object on argv:
  {"dir": D, "key": "client", "htm": "GET", "htu": "...", "token": T, ...}
Keys are P-256 JWKs kept in D/<key>.json (made on first use). Prints the proof; with
{"thumbprint": true} prints the key's RFC 7638 thumbprint instead.
Options: "iat" (default now), "jti" (default random), "typ" (default dpop+jwt),
"alg" (default ES256; "none" for an unsigned proof, "HS256" for a MAC), "ath" (default
the token's), "private_jwk" (embed the private key), "jwk_key" (embed that key's public
half while signing with "key")."""
import base64
import hashlib
import json
import os
import sys
import time
import uuid

from jwcrypto import jwk, jws
from jwcrypto.common import json_encode

spec = json.loads(sys.argv[1])


def key(name):
    path = os.path.join(spec["dir"], name + ".json")
    if not os.path.exists(path):
        with open(path, "w") as f:
            f.write(jwk.JWK.generate(kty="EC", crv="P-256").export_private())
    with open(path) as f:
        return jwk.JWK.from_json(f.read())


def b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


k = key(spec.get("key", "client"))
if spec.get("thumbprint"):
    print(k.thumbprint())
    sys.exit(0)
claims = {
    "jti": spec.get("jti", str(uuid.uuid4())),
    "htm": spec["htm"],
    "htu": spec["htu"],
    "iat": spec.get("iat", int(time.time())),
}
if "token" in spec:
    claims["ath"] = spec.get("ath", b64(hashlib.sha256(spec["token"].encode()).digest()))
alg = spec.get("alg", "ES256")
header = {"typ": spec.get("typ", "dpop+jwt"), "alg": alg}
shown = key(spec["jwk_key"]) if "jwk_key" in spec else k
header["jwk"] = json.loads(
    shown.export_private() if spec.get("private_jwk") else shown.export_public()
)
payload = json_encode(claims)
if alg == "none":
    print(b64(json_encode(header).encode()) + "." + b64(payload.encode()) + ".")
    sys.exit(0)
signer = k
if alg == "HS256":
    signer = jwk.JWK.generate(kty="oct", size=256)
token = jws.JWS(payload.encode())
token.add_signature(signer, alg=alg, protected=json_encode(header))
print(token.serialize(compact=True))
