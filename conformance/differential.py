#!/usr/bin/env python3
"""Differential test: the same raw HTTP/1.1 bytes through one trustgate per origin, into
five app servers from other stacks, and what each one routed compared with what
trustgate's rules allowed.

    python3 conformance/differential.py --trustgate BIN            # CI: seed 39, 120 s
    python3 conformance/differential.py --trustgate BIN --seconds 3600 --seed 7
    python3 conformance/differential.py --trustgate BIN --seeds 1,2,3 --seconds 1200

Origins (conformance/apps, each appending what it routed to a log: ROUTE_LOG):
Python's http.server, uvicorn (ASGI), Node's http, nginx, Java's HttpServer. Each sits
behind its own trustgate; every trustgate has the same configuration (CONFIG below: a
deny rule on /debug/*, one on DELETE, orders allowed every path, shipping only /api/*,
public paths /healthz and /public/*: both a deny rule and an allow rule narrower than the
app's routes can be walked past). A probe is one raw request (or two, pipelined)
from a seeded generator: valid requests with orders' token, mutated in path forms and
encodings, dot and empty segments, ;params, methods, hosts, header spellings, framing
and chunk forms, upgrades. First the REGRESSIONS run: every finding this test has made,
as plain raw bytes, with the answer expected.

A failure is any of:
- route: an origin routed a path other than the one trustgate forwarded (both decoded:
  the rules match the forwarded path with its escapes decoded, and a path with
  ;parameters both as written and with them removed);
- policy: an origin ran a request the rules refuse (its route and method, upper-cased as
  Werkzeug and Django do, under the rules of CONFIG, with the token the probe carried) --
  or a servlet container would have (the forwarded path with ;parameters removed, as
  Tomcat and Spring route it: none of the five origins does, so it is modelled);
- credential: a token, or an identity or signed header the client sent (any spelling an
  app server folds together), seen by an app;
- count: an origin saw more requests than its trustgate forwarded;
- body: two origins read different body lengths for one forwarded request.
An origin refusing forwarded bytes (4xx/5xx from the app) is a note, not a failure.
Exit 1 on a failure; the output names each origin's reading of each failing probe.
"""
import argparse
import concurrent.futures
import json
import os
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
import run as matrix  # noqa: E402  (the conformance matrix: apps, ports, processes)

ORIGINS = ("py_http11", "asgi", "node", "nginx", "java")
# Origins whose route is the raw target path (the others report it decoded).
RAW_ROUTE = ("node",)
# Origins that read the body (nginx's `return` discards it).
READS_BODY = ("py_http11", "asgi", "node", "java")

CONFIG = """
[identity]
name = "billing"
private_key = "{keys}/billing.key"
[trust]
authorized_keys = "{trusts}"
[inbound]
listen = "127.0.0.1:{inbound}"
upstream = "http://127.0.0.1:{app}"
public_paths = ["/healthz", "/public/*"]
signed_headers = ["x-user-id"]
[admin]
listen = "127.0.0.1:{admin}"
[log]
level = "info"
format = "json"
[[inbound.deny]]
name = "no-debug"
paths = ["/debug/*"]
[[inbound.deny]]
name = "no-delete"
methods = ["DELETE"]
[[inbound.allow]]
name = "orders-everywhere"
callers = ["orders"]
paths = ["*"]
[[inbound.allow]]
name = "shipping-api"
callers = ["shipping"]
paths = ["/api/*"]
"""

# What never reaches the app: the token header, identity and signed headers, and a
# transaction token (this sidecar verifies none). No [inbound.users] here: x-user-token is
# an ordinary header.
PROTECTED = ("authorization", "x-service-caller", "x-user-id", "txn-token")
SECOND = "/api/items/2?pipelined"


def fold(name):
    return name.lower().replace("_", "-")


def under(path, prefix):
    return path == prefix or path.startswith(prefix + "/")


def decode(path):
    return urllib.parse.unquote(path, errors="surrogateescape")


def servlet(path):
    """How a servlet container routes a raw path: `;parameters` removed from each
    segment (literal `;` only: `%3B` is part of the name), then decoded."""
    return decode("/".join(seg.split(";")[0] for seg in path.split("/")))


def public(route):
    return route == "/healthz" or under(route, "/public")


def allowed(route, method, token, caller):
    """CONFIG's rules over a route an origin ran (`token`: valid | none | bad | maybe,
    the caller whose token it is)."""
    if public(route):
        return True
    if token == "maybe":  # a spelling of the header whose validity is not modelled
        token = "valid"
    if token != "valid":
        return False
    if under(route, "/debug") or method.upper() == "DELETE":
        return False
    return caller == "orders" or under(route, "/api")


# ---------------------------------------------------------------------------------------
# The generator


PATHS = ["/api/items/1", "/api/items", "/debug/vars", "/debug", "/public/page", "/healthz",
         "/admin/users", "/api/a.b/c", "/api/x/../debug"]
UNRESERVED = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~"


def enc(c, rng):
    h = "%02x" % ord(c) if rng.random() < 0.5 else "%02X" % ord(c)
    return "%" + h


def at_char(rng, p, pred):
    idx = [i for i, c in enumerate(p) if pred(c)]
    return rng.choice(idx) if idx else None


def m_encode_unreserved(rng, p):
    i = at_char(rng, p, lambda c: c in UNRESERVED)
    return p if i is None else p[:i] + enc(p[i], rng) + p[i + 1:]


def m_encode_any(rng, p):
    i = at_char(rng, p, lambda c: c not in "%?")
    return p if i is None else p[:i] + enc(p[i], rng) + p[i + 1:]


def m_double_encode(rng, p):
    i = at_char(rng, p, lambda c: c in UNRESERVED)
    return p if i is None else p[:i] + "%25" + ("%02x" % ord(p[i])) + p[i + 1:]


def m_slash(rng, p):
    i = at_char(rng, p, lambda c: c == "/")
    return p if i is None else p[:i] + "/" * rng.randint(1, 2) + p[i:]


def m_params(rng, p):
    segs = p.split("/")
    j = rng.randrange(1, len(segs)) if len(segs) > 1 else 0
    segs[j] += rng.choice([";", ";x=1", ";jsessionid=abc", "%3bx"])
    return "/".join(segs)


def m_dots(rng, p):
    segs = p.split("/")
    j = rng.randrange(1, len(segs) + 1)
    segs.insert(j, rng.choice([".", "..", "%2e", "%2e%2e", ".%2e", "x/..", ".;", "..;"]))
    return "/".join(segs)


def m_separator(rng, p):
    i = at_char(rng, p, lambda c: c == "/")
    return p if i is None else p[:i] + rng.choice(["\\", "%2f", "%5c", "%252f"]) + p[i + 1:]


def m_tail(rng, p):
    return p + rng.choice(["/", ".", "%20", "%00", "?", "?a=1", "?a=%2e/../&b", "#frag", "~", "%7e"])


def m_raw(rng, p):
    i = rng.randrange(1, len(p) + 1)
    return p[:i] + rng.choice(["\u00e9", "\t", " ", "\x7f", "\u3002", "\uff0e"]) + p[i:]


def m_case(rng, p):
    segs = p.split("/")
    j = rng.randrange(1, len(segs)) if len(segs) > 1 else 0
    segs[j] = segs[j].upper()
    return "/".join(segs)


def m_subdelim(rng, p):
    return p + "/" + rng.choice(["@me", "%40me", "a:b", "a%3Ab", "!x", "%21x", "a+b", "a%2Bb"])


def m_form(rng, p):
    return rng.choice(["*", "http://billing" + p, "http://admin" + p, "//billing" + p, p.lstrip("/")])


PATH_OPS = [m_encode_unreserved, m_encode_unreserved, m_encode_any, m_double_encode, m_slash,
            m_slash, m_params, m_dots, m_separator, m_tail, m_raw, m_case, m_subdelim, m_form]
METHODS = ["GET"] * 10 + ["POST"] * 4 + ["PUT", "PATCH", "HEAD", "OPTIONS", "DELETE", "DELETE",
                                         "get", "delete", "Delete", "PROPFIND", "CONNECT", "M-SEARCH"]
SPOOFS = ["x-service-caller: admin", "X_Service_Caller: admin", "x-service-caller-roles: root",
          "X-Service-Caller-Roles: root", "x-user-id: 7", "X_User_Id: 7", "x-user-token: u",
          "txn-token: t", "Txn_Token: t", "connection: x-service-caller", "x-service_caller: admin",
          "x-foo: a\r\n x-service-caller: admin", "x-service-caller : admin"]


class Probe:
    def __init__(self, name, data, token, responses=1, expect=None, caller="orders"):
        self.name = name
        self.data = data
        self.token = token  # valid | none | bad | maybe
        self.caller = caller
        self.responses = responses
        self.expect = expect  # for regressions: the status every trustgate answers

    def text(self):
        return self.data.decode("latin-1")


def head(method, target, lines, body=b"", close=True):
    out = f"{method} {target} HTTP/1.1\r\n" + "".join(l + "\r\n" for l in lines)
    if close:
        out += "connection: close\r\n"
    return out.encode("utf-8", "surrogateescape") + b"\r\n" + body


def framing(rng, lines):
    """A body, in one of the framings: (header lines, body bytes)."""
    kind = rng.choice(["cl", "cl", "chunked", "chunked-ext", "chunked-trailers", "te-cl",
                       "te-list", "te-x", "cl-plus", "cl-two", "smuggle-cl", "smuggle-te", "lf"])
    data = b"x" * rng.randint(0, 40)
    chunk = b"%x\r\n%s\r\n" % (len(data), data) if data else b""
    if kind == "cl":
        return lines + [f"content-length: {len(data)}"], data
    if kind == "chunked":
        return lines + ["transfer-encoding: chunked"], chunk + b"0\r\n\r\n"
    if kind == "chunked-ext":
        return lines + ["transfer-encoding: chunked"], (b"%x;a=b\r\n%s\r\n" % (len(data), data) if data else b"") + b"0\r\n\r\n"
    if kind == "chunked-trailers":
        trailer = rng.choice([b"x-service-caller: admin", b"authorization: Bearer x", b"Txn_Token: t", b"x-user-id: 7"])
        return lines + ["transfer-encoding: chunked"], chunk + b"0\r\n" + trailer + b"\r\n\r\n"
    if kind == "te-cl":
        return lines + ["transfer-encoding: chunked", f"content-length: {len(data) + 3}"], chunk + b"0\r\n\r\n"
    if kind == "te-list":
        return lines + [rng.choice(["transfer-encoding: chunked, identity", "transfer-encoding: identity, chunked",
                                    "Transfer-Encoding: CHUNKED"])], chunk + b"0\r\n\r\n"
    if kind == "te-x":
        return lines + [rng.choice(["transfer-encoding: xchunked", "transfer-encoding : chunked",
                                    "transfer_encoding: chunked"]), f"content-length: {len(data)}"], data
    if kind == "cl-plus":
        return lines + [rng.choice([f"content-length: +{len(data)}", f"content-length: 0{len(data)}",
                                    f"content-length: {len(data)}, {len(data)}"])], data
    if kind == "cl-two":
        return lines + [f"content-length: {len(data)}", f"content-length: {len(data) + 1}"], data + b"y"
    smuggled = b"GET /debug/vars HTTP/1.1\r\nhost: billing\r\n\r\n"
    if kind == "smuggle-cl":
        return lines + [f"content-length: {len(smuggled)}"], smuggled
    if kind == "smuggle-te":
        return lines + ["transfer-encoding: chunked", "content-length: 4"], b"0\r\n\r\n" + smuggled
    return lines + [f"content-length: {len(data)}"], data  # "lf": line endings below


def generate(rng, tokens):
    caller = rng.choice(["orders", "orders", "shipping"])
    token = tokens[caller]
    method = rng.choice(METHODS)
    path = rng.choice(PATHS)
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        path = rng.choice(PATH_OPS)(rng, path)
    lines = []
    host = rng.random()
    if host < 0.85:
        lines.append(rng.choice(["host: billing"] * 6 + ["Host: billing:8443", "HOST: Billing."]))
    elif host < 0.9:
        lines += ["host: billing", "host: admin"]
    elif host < 0.95:
        lines.append(rng.choice(["host: billing, admin", "host: a b", "host: ", "host: b@evil"]))
    auth = rng.random()
    state = "valid"
    if auth < 0.75:
        lines.append(f"authorization: Bearer {token}")
    elif auth < 0.8:
        state = "none"
    elif auth < 0.85:
        lines.append("authorization: Bearer " + token[:-2] + "xx")
        state = "bad"
    elif auth < 0.9:
        lines += [f"authorization: Bearer {token}", f"authorization: Bearer {token}"]
        state = "maybe"
    else:
        lines.append(rng.choice([f"Authorization: bearer {token}", f"authorization:Bearer {token}",
                                 f"Authorization: Bearer  {token}", f"authorization: Bearer {token} ",
                                 f"Authorization: Basic {token}"]))
        state = "maybe"
    for _ in range(rng.choice([0, 0, 1, 2])):
        lines.append(rng.choice(SPOOFS))
    if rng.random() < 0.1:
        lines += rng.choice([["connection: upgrade", "upgrade: websocket"], ["connection: Upgrade, HTTP2-Settings", "upgrade: h2c", "http2-settings: AAMAAABkAARAAAAAAAIAAAAA"]])
    body = b""
    if method in ("POST", "PUT", "PATCH") or rng.random() < 0.15:
        lines, body = framing(rng, lines)
    rng.shuffle(lines)
    pipelined = rng.random() < 0.08
    data = head(method, path, lines, body, close=not pipelined)
    if pipelined:
        data += head("GET", SECOND, ["host: billing", f"authorization: Bearer {tokens['orders']}"])
    if rng.random() < 0.03:
        data = data.replace(b"\r\n", b"\n")
    return Probe(f"{caller}: {method} {path!r}", data, state, responses=2 if pipelined else 1,
                 caller=caller)


def regressions(tokens):
    """Every finding of this test, as raw bytes, with the status every trustgate gives."""
    auth = f"authorization: Bearer {tokens['orders']}"
    shipping = f"authorization: Bearer {tokens['shipping']}"
    r = lambda name, method, target, status, extra=(): Probe(  # noqa: E731
        name, head(method, target, ["host: billing", auth, *extra]), "valid", expect=status)
    return [
        r("empty segment (Java reads an authority, Python merges)", "GET", "//debug/vars", 400),
        r("empty segment inside", "GET", "/debug//vars", 400),
        r("encoded unreserved (uvicorn, Java decode it)", "GET", "/%64ebug/vars", 403),
        r("encoded unreserved, every letter", "GET", "/%64%65%62%75%67/vars", 403),
        r("encoded unreserved, forwarded decoded", "GET", "/%61pi/items", 200),
        r("lower-case method (Werkzeug, Django upper-case it)", "delete", "/api/items/1", 400),
        r("mixed-case method", "Delete", "/api/items/1", 400),
        r("inbound CONNECT", "CONNECT", "billing:443", 405),
        r("asterisk with GET", "GET", "*", 400),
        r("raw UTF-8 in the path", "GET", "/api/caf\u00e9", 400),
        r("raw UTF-8 in the query", "GET", "/api/items?q=\u00e9", 400),
        r("servlet parameters on a denied path", "GET", "/debug;x=1/vars", 403),
        r("double-encoded escape", "GET", "/%2564ebug/vars", 400),
        Probe("two Host fields", head("GET", "/api/items", ["host: billing", "host: admin", auth]),
              "valid", expect=400),
        Probe("a Host that is a list", head("GET", "/api/items", ["host: billing, admin", auth]),
              "valid", expect=400),
        r("public path with a token: the token stays here", "POST", "/healthz", 200,
          ["content-length: 0"]),
        Probe("an allow rule narrower than the app: empty segment", head(
            "GET", "/api//../admin/users", ["host: billing", shipping]), "valid", expect=400,
            caller="shipping"),
        Probe("an allow rule narrower than the app: encoded", head(
            "GET", "/%61dmin/users", ["host: billing", shipping]), "valid", expect=403,
            caller="shipping"),
    ]


# ---------------------------------------------------------------------------------------
# Running a probe


def exchange(port, data, responses, timeout=15.0):
    """Sends the bytes; reads until the connection closes, `responses` responses are
    complete, or nothing comes for `timeout`. The (status, canned) of each response read,
    and whether it timed out."""
    s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    statuses, timed_out = [], False
    buf = b""
    try:
        s.sendall(data)
        while len(statuses) < responses:
            parsed = parse_responses(buf)
            if len(parsed) >= responses:
                statuses = parsed
                break
            chunk = s.recv(65536)
            if not chunk:
                statuses = parse_responses(buf, eof=True)
                break
            buf += chunk
    except socket.timeout:
        statuses, timed_out = parse_responses(buf, eof=True), True
    except (ConnectionError, OSError):
        statuses = parse_responses(buf, eof=True)
    finally:
        s.close()
    return statuses, timed_out


def parse_responses(buf, eof=False):
    """(status, canned) of each complete response; `canned`: hyper's own answer to bytes
    it could not parse (400, no body, nothing but connection/content-length/date) — no
    access line is written for it."""
    out = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return out
        head_lines = buf[:end].decode("latin-1").split("\r\n")
        if not head_lines[0].startswith("HTTP/"):
            return out
        try:
            status = int(head_lines[0].split(" ")[1])
        except (IndexError, ValueError):
            return out
        fields = {}
        for line in head_lines[1:]:
            if ":" in line:
                k, v = line.split(":", 1)
                fields[k.strip().lower()] = v.strip()
        rest = buf[end + 4:]
        canned = status == 400 and set(fields) <= {"connection", "content-length", "date"} \
            and fields.get("content-length") == "0"
        status = (status, canned)
        if status[0] in (101, 204, 304) or 100 <= status[0] < 200:
            out.append(status)
            buf = rest if status[0] != 101 else b""
            if status[0] == 101:
                return out
            continue
        if "content-length" in fields:
            n = int(fields["content-length"])
            if len(rest) < n:
                return out + ([status] if eof else [])
            out.append(status)
            buf = rest[n:]
        elif fields.get("transfer-encoding", "").lower() == "chunked":
            i = 0
            while True:
                line_end = rest.find(b"\r\n", i)
                if line_end < 0:
                    return out + ([status] if eof else [])
                size = int(rest[i:line_end].split(b";")[0] or b"0", 16)
                if size == 0:
                    trailer_end = rest.find(b"\r\n\r\n", line_end - 2 if line_end >= 2 else 0)
                    if trailer_end < 0:
                        return out + ([status] if eof else [])
                    out.append(status)
                    buf = rest[trailer_end + 4:]
                    break
                i = line_end + 2 + size + 2
        else:
            out.append(status)  # close-delimited
            return out


class Tail:
    """New lines of a log file since the last read."""

    def __init__(self, path):
        self.path = path
        self.offset = 0

    def read(self):
        try:
            with open(self.path, "rb") as f:
                f.seek(self.offset)
                data = f.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1
        self.offset += end
        return [l for l in data[:end].decode("utf-8", "replace").splitlines() if l.strip()]


FORWARDED = ("ok", "public", "audit")


class Side:
    """One origin and its trustgate."""

    def __init__(self, world, kind, trusts):
        self.kind = kind
        self.route_log = os.path.join(world.tmp, f"routes-{kind}.jsonl")
        os.environ["ROUTE_LOG"] = self.route_log
        try:
            self.app_port, self.app = matrix.start_app(world, kind)
        finally:
            del os.environ["ROUTE_LOG"]
        for attempt in range(3):
            self.port, admin = matrix.free_port(), matrix.free_port()
            conf = os.path.join(world.tmp, f"trustgate-{kind}-{attempt}.toml")
            with open(conf, "w") as f:
                f.write(CONFIG.format(keys=world.keys, trusts=trusts, inbound=self.port,
                                      app=self.app_port, admin=admin))
            self.access_log = os.path.join(world.tmp, f"trustgate-{kind}-{attempt}.log")
            self.proc = world.spawn([world.tg, "run", "--config", conf], log=self.access_log)
            try:
                matrix.wait_port(admin, self.proc)
                break
            except RuntimeError:
                if attempt == 2:
                    raise
        self.routes = Tail(self.route_log)
        self.access = Tail(self.access_log)
        # The previous probe, and how many of its forwarded requests the origin had not
        # logged yet when it was judged.
        self.prev, self.owed = None, 0
        self.unsettled_at = 0.0

    def answered(self):
        """Access lines since the last call: (outcome, path) of each."""
        out = []
        for line in self.access.read():
            try:
                rec = json.loads(line)
            except ValueError:
                continue
            if rec.get("target") == "trustgate::access":
                f = rec["fields"]
                out.append((f.get("outcome"), f.get("path"), f.get("status"), f.get("reason")))
        return out

    def run(self, probe):
        """The probe through this side: statuses, trustgate's access lines, what the
        origin routed, and what it routed after the previous probe had been answered
        (a request smuggled past its trustgate)."""
        late = [json.loads(l) for l in self.routes.read()]
        prev, owed = self.prev, self.owed
        if time.time() - self.unsettled_at < 60:
            prev, owed = None, None
        self.answered()
        got, timed_out = exchange(self.port, probe.data, probe.responses)
        statuses = [s for s, _ in got]
        lines = sum(1 for _, canned in got if not canned)
        deadline = time.time() + 3
        answered = self.answered()
        # An answer's access line is written as its head goes out: poll for it.
        while len(answered) < lines and time.time() < deadline:
            time.sleep(0.005)
            answered += self.answered()
        forwarded = forwarded_by(answered)
        # The apps log a request before answering it; nginx once it has answered.
        routed = [json.loads(l) for l in self.routes.read()]
        deadline = time.time() + 1
        while self.kind == "nginx" and len(routed) < forwarded and time.time() < deadline:
            time.sleep(0.005)
            routed += [json.loads(l) for l in self.routes.read()]
        self.prev, self.owed = probe, max(0, forwarded - len(routed))
        if timed_out:
            # No complete answer within the exchange's timeout (a loaded machine, or
            # bytes that leave a request unfinished): what its trustgate forwarded is not
            # known; requests the app logs late for a minute after are judged on route
            # and credentials only.
            self.unsettled_at = time.time()
        return statuses, answered, routed, late, prev, owed, timed_out


def forwarded_by(answered):
    """How many of a probe's requests reached (or may have reached) the app: answered by
    the app, or failing once the head had gone on (the app failed, timed out, or the
    client's body turned out malformed mid-stream)."""
    return sum(1 for outcome, _, _, reason in answered
               if outcome in FORWARDED or (outcome == "bad_request" and reason == "malformed_body"))


def check_seen(kind, seen, probe, tokens, failures):
    """One request an origin routed: the route it took, the rules, the credentials.
    `probe` None: a late request whose probe is not known (after an exchange that timed
    out): its route and credentials only."""
    route = seen.get("route", "")
    raw = seen.get("raw") or seen.get("target", "")
    raw_path = urllib.parse.urlsplit(raw).path if raw.startswith("http") else raw.split("?")[0]
    sent, ran = decode(raw_path), decode(route) if kind in RAW_ROUTE else route
    if sent != ran:
        failures.append(f"route: {kind} routed {route!r}, trustgate forwarded {raw!r} (decoded: {sent!r})")
    # The pipelined second request is always GET SECOND with orders' token.
    if raw == SECOND:
        state, caller = "valid", "orders"
    elif probe is None:
        state, caller = None, None
    else:
        state, caller = probe.token, probe.caller
    method = seen.get("method", "")
    if state is None:
        pass
    elif not allowed(ran, method, state, caller):
        failures.append(f"policy: {kind} ran {method} {route!r}, which the rules refuse ({caller}'s token, {state})")
    elif not allowed(servlet(raw_path), method, state, caller):
        failures.append(f"policy: a servlet container would run {method} {servlet(raw_path)!r} for {raw!r}, which the rules refuse")
    names = {}
    for name, value in seen.get("headers", []):
        if value == "" and kind == "nginx":
            continue
        if any(t in value for t in tokens.values()):
            failures.append(f"credential: {kind} saw a token in {name}")
        f = fold(name)
        if any(f == p or f.startswith(p + "-") for p in PROTECTED):
            names.setdefault(f, []).append((name, value))
    for f, pairs in names.items():
        # The one trustgate set (Java's HttpServer capitalises names).
        if len(pairs) == 1 and pairs[0][0].lower() == "x-service-caller" \
                and pairs[0][1] in ((caller,) if caller else tokens):
            continue
        failures.append(f"credential: {kind} saw {pairs}")


def judge(probe, results, tokens):
    """The failures of one probe across the sides, and its notes."""
    failures, notes = [], []
    body_lens = {}
    for kind, (statuses, answered, routed, late, prev, owed, timed_out) in results.items():
        forwarded = forwarded_by(answered)
        # An app may log a request after trustgate has answered it (a body it reads to
        # the end first): the previous probe's requests it still owed. Any more arrived
        # past the sidecar.
        if owed is not None and len(late) > owed:
            failures.append(f"count: {kind} routed {[(r.get('method'), r.get('route')) for r in late]} after the previous probe was answered (it owed {owed})")
        for seen in late:
            check_seen(kind, seen, prev, tokens, failures)
        if probe.expect is not None and statuses[:1] != [probe.expect]:
            failures.append(f"{kind}: answered {statuses}, expected {probe.expect}")
        # What the previous probe still owes may arrive during this one's window too.
        leftover = None if owed is None else max(0, owed - len(late))
        mixed = len(routed) > forwarded
        if mixed and leftover is not None and len(routed) > forwarded + leftover:
            failures.append(f"count: {kind} routed {len(routed)} request(s), its trustgate forwarded {forwarded} {answered}")
        clean = all(a[0] in FORWARDED and a[2] and a[2] < 400 for a in answered) and not late
        for seen in routed:
            # Mixed with a late one of the previous probe: which is whose is not known.
            check_seen(kind, seen, None if mixed else probe, tokens, failures)
            raw = seen.get("raw") or seen.get("target", "")
            if clean and kind in READS_BODY and "body_len" in seen:
                which = "the pipelined one" if raw == SECOND else "the probe"
                body_lens.setdefault(which, {})[kind] = seen["body_len"]
        for status in statuses:
            if status >= 400 and not any(a[2] == status for a in answered):
                notes.append(f"{kind}: {status} without a trustgate access line (hyper refused the bytes, or the app did)")
        if timed_out:
            notes.append(f"{kind}: no complete answer within the exchange's timeout")
        for a in answered:
            if a[0] in FORWARDED and a[2] and a[2] >= 400:
                notes.append(f"{kind}: the app answered {a[2]}")
    for i, lens in body_lens.items():
        if len(set(lens.values())) > 1:
            failures.append(f"body: {i} read as {lens}")
    return failures, notes


def verdicts(results):
    return {k: f"{s} routed {[(r.get('method'), r.get('route')) for r in routed]}"
            for k, (s, _, routed, *_) in results.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--trustgate", required=True)
    ap.add_argument("--seed", type=int, default=39)
    ap.add_argument("--seeds", help="comma-separated seeds, each run --seconds")
    ap.add_argument("--seconds", type=float, default=120)
    ap.add_argument("--require", action="store_true", help="a missing origin is a failure")
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")] if args.seeds else [args.seed]
    tmp = tempfile.mkdtemp(prefix="tg-differential-")
    world = matrix.World(args.trustgate, tmp)
    try:
        return run(world, args, seeds)
    finally:
        world.close()


def tokens_for(world):
    """orders' and shipping's tokens for billing, good for 300 s: renewed after 240."""
    out = {}
    for caller in ("orders", "shipping"):
        r = subprocess.run([world.tg, "token", "--key", os.path.join(world.keys, f"{caller}.key"),
                            "--iss", caller, "--aud", "billing", "--ttl", "300s"],
                           capture_output=True, text=True, check=True)
        out[caller] = r.stdout.strip()
    return out, time.time() + 240


def run(world, args, seeds):
    trusts = world.billing_trusts
    subprocess.run([world.tg, "keygen", "shipping", "--out", world.keys], check=True,
                   capture_output=True)
    shutil.copy(os.path.join(world.keys, "shipping.pub"), trusts)
    sides = {}
    for kind in ORIGINS:
        try:
            sides[kind] = Side(world, kind, trusts)
        except matrix.NA as e:
            if args.require:
                print(f"origin {kind} missing: {e}")
                return 1
            print(f"origin {kind}: skipped ({e})")
    print(f"origins: {', '.join(sides)}", flush=True)
    pool = concurrent.futures.ThreadPoolExecutor(len(sides))
    tokens, renew = tokens_for(world)
    failed, notes, count = [], {}, 0

    def run_probe(probe):
        futures = {k: pool.submit(s.run, probe) for k, s in sides.items()}
        results = {k: f.result() for k, f in futures.items()}
        f, n = judge(probe, results, tokens)
        for note in n:
            notes[note] = notes.get(note, 0) + 1
        if f:
            failed.append((probe, f, verdicts(results)))
        return results

    for probe in regressions(tokens):
        run_probe(probe)
        count += 1
    print(f"regressions: {count} probes, {len(failed)} failing", flush=True)
    for seed in seeds:
        rng = random.Random(seed)
        end = time.time() + args.seconds
        n = 0
        while time.time() < end:
            if time.time() > renew:
                tokens, renew = tokens_for(world)
            run_probe(generate(rng, tokens))
            n += 1
        count += n
        print(f"seed {seed}: {n} probes in {args.seconds:.0f} s", flush=True)
    pool.shutdown()
    for kind, side in sides.items():
        extra = side.routes.read()
        if time.time() - side.unsettled_at >= 60 and len(extra) > side.owed:
            failed.append((Probe("after the last probe", b"", "none"),
                           [f"count: {kind} routed {len(extra)} request(s) after the last answer"], {}))
    for (probe, fails, seen) in failed[:40]:
        print(f"\nFAIL {probe.name}\n  bytes: {probe.data[:400]!r}")
        for f in fails:
            print(f"  - {f}")
        for kind, what in seen.items():
            print(f"  {kind}: {what}")
    print(f"\n{count} probes, {len(failed)} failing; notes (origins refusing forwarded bytes and the like):")
    for note, n in sorted(notes.items(), key=lambda x: -x[1])[:15]:
        print(f"  {n:5d} × {note}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
