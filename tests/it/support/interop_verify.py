#!/usr/bin/env python3
"""Verifies tokens made by trustgate with PyJWT, an implementation we did not write.

    interop_verify.py --jwks JWKS.json --aud NAME --iss NAME [TOKEN ...]

Tokens come from the arguments or, without any, one per line on stdin. The JWKS is what
trustgate publishes (`/.well-known/jwks.json`, or a JWK written by `trustgate keygen
--format jwk` wrapped in {"keys": [...]}). Prints one JSON line per token:
{"ok": true, "kid": ..., "claims": {...}} or {"ok": false, "error": "..."}; exits 0 only
if every token verified.
"""
import argparse
import json
import sys

import jwt


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--jwks", required=True)
    ap.add_argument("--aud", required=True)
    ap.add_argument("--iss", required=True)
    ap.add_argument("tokens", nargs="*")
    args = ap.parse_args()
    with open(args.jwks) as f:
        jwks = jwt.PyJWKSet.from_dict(json.load(f))
    keys = {k.key_id: k for k in jwks.keys}
    tokens = args.tokens or [line.strip() for line in sys.stdin if line.strip()]
    all_ok = bool(tokens)
    for token in tokens:
        try:
            header = jwt.get_unverified_header(token)
            key = keys[header["kid"]]
            # The algorithm comes from the published key, never from the token.
            claims = jwt.decode(
                token,
                key.key,
                algorithms=[key.algorithm_name],
                audience=args.aud,
                issuer=args.iss,
                leeway=30,
                options={"require": ["exp", "iat", "iss", "aud", "sub", "jti"]},
            )
            if claims["sub"] != args.iss:
                raise ValueError("sub differs from iss")
            print(json.dumps({"ok": True, "kid": header["kid"], "alg": header["alg"], "claims": claims}))
        except Exception as e:  # report every failure as data, not a traceback
            all_ok = False
            print(json.dumps({"ok": False, "error": f"{type(e).__name__}: {e}"}))
    return 0 if all_ok else 1


if __name__ == "__main__":
    sys.exit(main())
