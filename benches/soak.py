#!/usr/bin/env python3
"""The soak: sustained traffic of every kind through two sidecars over TLS while
everything an operator changes changes, then SIGTERM with requests in flight.

    benches/soak.sh [SECONDS]                 # default 120; hours: benches/soak.sh 14400
    python3 benches/soak.py --trustgate BIN --seconds N

    client threads ──▶ orders (outbound) ══TLS══▶ billing (inbound) ──▶ uvicorn app
                                          ══TLS══▶ grpcsvc (inbound) ──▶ grpcio app
    ledger client (token signed by ledger) ══TLS══▶ billing; billing trusts ledger by URL

Traffic, all the time, every answer checked: HTTP/1.1 keep-alive GETs (the app saw
`x-service-caller: orders`), 256 KiB uploads (the app's SHA-256 of the body), 1 MiB
streamed downloads (hashed), h2c from h2load, gRPC unary and bidirectional streams
(grpcio), calls from `ledger` whose keys billing fetches from a URL, and a probe caller
whose key is revoked for a while.

Events (fractions of the run): orders' signing key rotates (the new public key added to
the callees' authorized_keys, orders' identity swapped, the old public key removed — all
kubelet-style `..data` swaps), the probe's kid is revoked and un-revoked, the app
restarts, ledger's JWKS server is down for a while, billing's fleet store (a real
redis-server holding orders' fleet-wide rate limit) is killed and restarted — orders'
calls must not fail meanwhile, and the fleet must be back without a restart — and
billing's inbound certificate rotates (the new one is then served). At the end, with slow requests in flight, billing
gets SIGTERM.

Asserts: zero unexpected failures (the probe's 401 `revoked` while revoked, and 502s
while the app is down, are expected, inside windows that allow for the reload delay);
RSS and open fds of both sidecars back to their warm-up level; one reload counted per
swap; the slow requests answered and billing exiting 0 within `shutdown_grace`.
Prints the figures (requests per kind, failures, RSS, fds, reloads, exit time).
"""
import argparse
import hashlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
APPS = os.path.join(ROOT, "conformance", "apps")
PATTERN = bytes(range(256)) * 4096
GRACE = 10  # billing's limits.shutdown_grace, seconds
KINDS = ("keep-alive GET", "upload 256 KiB", "download 1 MiB", "h2c (h2load)", "gRPC unary+stream",
         "ledger (keys by URL)", "probe (revoked for a while)")


def free_port():
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def run(cmd, **kw):
    r = subprocess.run(cmd, capture_output=True, timeout=60, **kw)
    if r.returncode != 0:
        raise RuntimeError(f"{cmd}: {r.stderr.decode(errors='replace')}")
    return r.stdout.decode()


def wait_until(cond, timeout, what):
    end = time.time() + timeout
    while time.time() < end:
        try:
            if cond():
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"timed out: {what}")


def publish(directory, files):
    """The kubelet's atomic update of a Secret volume: a new `..<timestamp>` directory
    with the files, `..data` swapped to it by rename, a visible symlink per file, then
    names no longer in the data and the old directory removed."""
    os.makedirs(directory, exist_ok=True)
    ts = "..%s" % time.strftime("%Y_%m_%d_%H_%M_%S") + ".%06d" % random.randrange(10**6)
    new = os.path.join(directory, ts)
    os.mkdir(new)
    for name, data in files.items():
        with open(os.path.join(new, name), "wb") as f:
            f.write(data)
        os.chmod(os.path.join(new, name), 0o600)
    tmp = os.path.join(directory, "..data_tmp")
    os.symlink(ts, tmp)
    os.rename(tmp, os.path.join(directory, "..data"))
    for name in files:
        link = os.path.join(directory, name)
        if not os.path.lexists(link):
            os.symlink(os.path.join("..data", name), link)
    for entry in os.listdir(directory):
        path = os.path.join(directory, entry)
        if not entry.startswith(".") and entry not in files:
            os.remove(path)
        elif entry.startswith("..") and entry not in ("..data", ts):
            shutil.rmtree(path)


def read(path):
    with open(path, "rb") as f:
        return f.read()


def proc_figures(pid):
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(l.split()[1]) for l in f if l.startswith("VmRSS:"))
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def metric(admin, name, labels=""):
    text = urllib.request.urlopen(f"http://127.0.0.1:{admin}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(name + ("{" + labels + "}" if labels else " ")):
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def reloads(admin, material):
    """trustgate_reloads_total{material, result="ok"} of the sidecar at `admin`."""
    return metric(admin, "trustgate_reloads_total", f'material="{material}",result="ok"')


def trust(admin):
    return json.loads(urllib.request.urlopen(f"http://127.0.0.1:{admin}/trust", timeout=5).read())


class Tally:
    """What every client saw: counts per kind, and failures with their time and kind."""

    def __init__(self):
        self.lock = threading.Lock()
        self.ok = {}
        self.failures = []  # (time, kind, detail)

    def good(self, kind):
        with self.lock:
            self.ok[kind] = self.ok.get(kind, 0) + 1

    def bad(self, kind, detail):
        with self.lock:
            self.failures.append((time.time(), kind, str(detail)[:300]))


class World:
    def __init__(self, tg, tmp):
        self.tg, self.tmp = tg, tmp
        self.procs = {}
        self.logs = {}
        k = os.path.join(tmp, "keys")
        self.kid = {}
        for who, name, fmt in (("orders", "orders", "pem"), ("orders-next", "orders", "pem"),
                               ("billing", "billing", "pem"), ("grpcsvc", "grpcsvc", "pem"),
                               ("probe", "probe", "pem"), ("ledger", "ledger", "jwk")):
            # keygen prints the kid first.
            out = run([tg, "keygen", name, "--format", fmt, "--out", os.path.join(k, who)])
            self.kid[who] = out.split()[0]
        self.keys = k
        self.make_certs()

    def make_certs(self):
        d = os.path.join(self.tmp, "tls")
        os.makedirs(d)
        self.ca = os.path.join(d, "ca.crt")
        ca_key = os.path.join(d, "ca.key")
        ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes"]
        run(["openssl", "req", "-x509"] + ec + ["-days", "2", "-subj", "/CN=soak CA", "-keyout", ca_key, "-out", self.ca])
        ext = os.path.join(d, "leaf.ext")
        with open(ext, "w") as f:
            f.write("basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        self.leaves = []
        for i in range(3):
            key, csr, crt = (os.path.join(d, f"leaf{i}.{x}") for x in ("key", "csr", "crt"))
            run(["openssl", "req", "-new"] + ec + ["-subj", f"/CN=localhost {i}", "-keyout", key, "-out", csr])
            run(["openssl", "x509", "-req", "-in", csr, "-CA", self.ca, "-CAkey", ca_key, "-CAcreateserial",
                 "-days", "2", "-extfile", ext, "-out", crt])
            self.leaves.append((crt, key))

    def spawn(self, name, cmd, cwd=None):
        log = os.path.join(self.tmp, f"{name}.log")
        self.logs[name] = log
        p = subprocess.Popen(cmd, cwd=cwd, stdout=open(log, "ab"), stderr=subprocess.STDOUT)
        self.procs[name] = p
        return p

    def stop(self, name, sig=signal.SIGTERM, wait=10):
        p = self.procs.get(name)
        if p and p.poll() is None:
            p.send_signal(sig)
            try:
                p.wait(wait)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()

    def start_redis(self):
        """billing's fleet store: a real redis-server on a Unix socket, with a password
        (None when the machine has none: no fleet leg)."""
        if not shutil.which("redis-server"):
            self.redis_sock = None
            return
        self.redis_sock = os.path.join(self.tmp, "redis.sock")
        if os.path.exists(self.redis_sock):
            os.unlink(self.redis_sock)
        self.spawn("redis", ["redis-server", "--port", "0", "--unixsocket", self.redis_sock,
                             "--unixsocketperm", "700", "--save", "", "--appendonly", "no",
                             "--requirepass", "soak-fleet-password"])
        wait_until(lambda: os.path.exists(self.redis_sock), 10, "redis-server")

    def close(self):
        for name in list(self.procs):
            self.stop(name, signal.SIGKILL, 5)


def start_app(w, port):
    p = w.spawn("app", [sys.executable, "-m", "uvicorn", "asgi_app:app", "--port", str(port), "--host",
                        "127.0.0.1", "--log-level", "warning", "--http", "h11"], cwd=APPS)
    wait_until(lambda: socket.create_connection(("127.0.0.1", port), 0.5).close() is None, 30, "the app")
    return p


class JwksServer:
    """ledger's published keys over TLS; stops and starts on the same port."""

    def __init__(self, w, port):
        pub = json.loads(read(os.path.join(w.keys, "ledger", "ledger.pub")))
        self.body = json.dumps({"keys": [pub]}).encode()
        self.port, self.w = port, w
        self.server = None

    def start(self):
        import http.server

        body = self.body

        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *a):
                pass

        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(*self.w.leaves[2])
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), H)
        srv.socket = ctx.wrap_socket(srv.socket, server_side=True)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        self.server = srv

    def stop(self):
        if self.server:
            self.server.shutdown()
            self.server.server_close()
            self.server = None


def sidecar_configs(w, ports):
    """orders (outbound), billing and grpcsvc (inbound over TLS); the material that
    changes lives in kubelet-style directories."""
    v = os.path.join(w.tmp, "volumes")
    w.vol = v
    publish(f"{v}/orders-identity", {"orders.key": read(f"{w.keys}/orders/orders.key")})
    trusted = {"orders.pub": read(f"{w.keys}/orders/orders.pub"),
               "probe.pub": read(f"{w.keys}/probe/probe.pub"),
               "ledger.url": f"https://localhost:{ports['jwks']}/jwks.json\n".encode()}
    w.billing_trusted = dict(trusted)
    publish(f"{v}/billing-ak", trusted)
    publish(f"{v}/grpcsvc-ak", {"orders.pub": trusted["orders.pub"]})
    publish(f"{v}/billing-revoked", {"revoked": b"# none\n"})
    publish(f"{v}/billing-tls", {"tls.crt": read(w.leaves[0][0]), "tls.key": read(w.leaves[0][1])})
    common = '[log]\nformat = "json"\nlevel = "info"\n'
    # The fleet leg: orders' limit (far above the load) held in Redis, one round trip per
    # request of orders; the store is restarted mid-run (fallback: each sidecar's bucket).
    fleet = ""
    if w.redis_sock:
        with open(os.path.join(w.tmp, "redis-password"), "w") as f:
            f.write("soak-fleet-password\n")
        fleet = f"""
[callers.orders]
rate_limit = "1000000/s"
rate_limit_scope = "fleet"
[fleet]
redis = "unix://{w.redis_sock}"
password_file = "{w.tmp}/redis-password"
"""
    configs = {
        "orders": f"""
[identity]
name = "orders"
private_key = "{v}/orders-identity/orders.key"
[outbound]
listen = "127.0.0.1:{ports['out']}"
ca_file = "{w.ca}"
[[outbound.routes]]
host = "billing"
upstream = "https://localhost:{ports['billing']}"
[[outbound.routes]]
host = "grpcsvc"
upstream = "https://localhost:{ports['grpcsvc']}"
[[outbound.routes]]
host = "billing-idle"
upstream = "https://localhost:{ports['billing_idle']}"
audience = "billing"
[admin]
listen = "127.0.0.1:{ports['orders_admin']}"
{common}""",
        "billing": f"""
[identity]
name = "billing"
private_key = "{w.keys}/billing/billing.key"
[trust]
authorized_keys = "{v}/billing-ak"
revoked = "{v}/billing-revoked/revoked"
fetch_ca_file = "{w.ca}"
fetch_interval = "2s"
fetch_cooldown = "1s"
[inbound]
listen = "127.0.0.1:{ports['billing']}"
upstream = "http://127.0.0.1:{ports['app']}"
tls_cert = "{v}/billing-tls/tls.crt"
tls_key = "{v}/billing-tls/tls.key"
[admin]
listen = "127.0.0.1:{ports['billing_admin']}"
[limits]
shutdown_grace = "{GRACE}s"
{fleet}
{common}""",
        "grpcsvc": f"""
[identity]
name = "grpcsvc"
private_key = "{w.keys}/grpcsvc/grpcsvc.key"
[trust]
authorized_keys = "{v}/grpcsvc-ak"
[inbound]
listen = "127.0.0.1:{ports['grpcsvc']}"
upstream = "http://127.0.0.1:{ports['grpc_app']}"
tls_cert = "{w.leaves[2][0]}"
tls_key = "{w.leaves[2][1]}"
[admin]
listen = "127.0.0.1:{ports['grpcsvc_admin']}"
{common}""",
    }
    if w.redis_sock:
        # An idle replica of billing across the store's restart: no traffic until one
        # request after it, which the store must serve (on_error = "refuse": a dead
        # connection would be a 503).
        configs["billing_idle"] = f"""
[identity]
name = "billing"
private_key = "{w.keys}/billing/billing.key"
[trust]
authorized_keys = "{v}/billing-ak"
fetch_ca_file = "{w.ca}"
[inbound]
listen = "127.0.0.1:{ports['billing_idle']}"
upstream = "http://127.0.0.1:{ports['app']}"
tls_cert = "{v}/billing-tls/tls.crt"
tls_key = "{v}/billing-tls/tls.key"
[admin]
listen = "127.0.0.1:{ports['billing_idle_admin']}"
{fleet.replace("[fleet]", "[fleet]" + chr(10) + 'on_error = "refuse"')}
{common}"""
    for name, text in configs.items():
        path = os.path.join(w.tmp, f"{name}.toml")
        with open(path, "w") as f:
            f.write(text)
        w.spawn(name, [w.tg, "run", "--config", path])
    for name in configs:
        admin = ports[f"{name}_admin"]
        wait_until(lambda: urllib.request.urlopen(f"http://127.0.0.1:{admin}/readyz", timeout=1).status == 200,
                   30, f"{name} ready")


# ---------------------------------------------------------------------------------------
# Clients: each loops until `stop`, checks every answer, and tallies.


def keepalive_client(ports, stop, t):
    conn = None
    i = 0
    while not stop.is_set():
        i += 1
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", ports["out"], timeout=15)
            conn.request("GET", f"/echo?i={i}", headers={"host": "billing"})
            r = conn.getresponse()
            body = r.read()
            e = json.loads(body) if r.status == 200 else None
            callers = [v for k, v in (e or {}).get("headers", []) if k == "x-service-caller"]
            if r.status == 200 and callers == ["orders"]:
                t.good("keep-alive GET")
            else:
                t.bad("keep-alive GET", f"{r.status} {body[:120]!r}")
            if r.getheader("connection", "").lower() == "close":
                conn.close()
                conn = None
        except Exception as ex:  # noqa: BLE001 - a client error is a failure to count
            t.bad("keep-alive GET", f"{type(ex).__name__}: {ex}")
            conn = None
            time.sleep(0.05)


def upload_client(ports, stop, t):
    rnd = random.Random(7)
    while not stop.is_set():
        body = rnd.randbytes(256 * 1024)
        try:
            conn = http.client.HTTPConnection("127.0.0.1", ports["out"], timeout=15)
            conn.request("POST", "/upload", body=body, headers={"host": "billing"})
            r = conn.getresponse()
            got = r.read()
            conn.close()
            ok = r.status == 200 and json.loads(got).get("body_sha256") == hashlib.sha256(body).hexdigest()
            (t.good if ok else lambda k: t.bad(k, f"{r.status} {got[:120]!r}"))("upload 256 KiB")
        except Exception as ex:  # noqa: BLE001
            t.bad("upload 256 KiB", f"{type(ex).__name__}: {ex}")
            time.sleep(0.05)


def download_client(ports, stop, t):
    n = 1024 * 1024
    want = hashlib.sha256((PATTERN * (n // len(PATTERN) + 1))[:n]).hexdigest()
    conn = None
    while not stop.is_set():
        try:
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", ports["out"], timeout=15)
            conn.request("GET", f"/big/{n}", headers={"host": "billing"})
            r = conn.getresponse()
            sha = hashlib.sha256()
            while True:
                chunk = r.read(65536)
                if not chunk:
                    break
                sha.update(chunk)
            if r.status == 200 and sha.hexdigest() == want:
                t.good("download 1 MiB")
            else:
                t.bad("download 1 MiB", f"{r.status} hash {sha.hexdigest()[:12]}")
        except Exception as ex:  # noqa: BLE001
            t.bad("download 1 MiB", f"{type(ex).__name__}: {ex}")
            conn = None
            time.sleep(0.05)


def h2c_client(ports, stop, t):
    while not stop.is_set():
        r = subprocess.run(["h2load", "-n", "200", "-c", "2", "-m", "4", "-H", "host: billing",
                            f"http://127.0.0.1:{ports['out']}/echo"], capture_output=True, timeout=60)
        out = r.stdout.decode()
        m = re.search(r"requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded", out)
        codes = re.search(r"status codes: (\d+) 2xx", out)
        if r.returncode == 0 and m and codes and m.group(1) == m.group(2) == codes.group(1):
            with t.lock:
                t.ok["h2c (h2load)"] = t.ok.get("h2c (h2load)", 0) + int(m.group(2))
        else:
            t.bad("h2c (h2load)", out[-300:] or r.stderr.decode()[-300:])


def grpc_client(ports, stop, t):
    import grpc

    ch = grpc.insecure_channel(f"127.0.0.1:{ports['out']}", options=[("grpc.default_authority", "grpcsvc")])
    unary = ch.unary_unary("/conformance.Echo/Unary")
    stream = ch.stream_stream("/conformance.Echo/Stream")
    while not stop.is_set():
        try:
            ok = unary(b"ping", timeout=10) == b"orders:ping"
            msgs = [b"m%d" % i for i in range(20)]
            ok = ok and list(stream(iter(msgs), timeout=10)) == [b"orders:" + m for m in msgs]
            (t.good if ok else lambda k: t.bad(k, "wrong answer"))("gRPC unary+stream")
        except Exception as ex:  # noqa: BLE001
            t.bad("gRPC unary+stream", f"{type(ex).__name__}: {ex}")
            time.sleep(0.05)
    ch.close()


def token_client(w, ports, stop, t, who, kind, expect):
    """Calls billing directly over TLS with a token `who` signs; `expect()` names the
    answer wanted now: 200, 401, or None (either: a change is being applied)."""
    ctx = ssl.create_default_context(cafile=w.ca)
    key = os.path.join(w.keys, who, f"{who}.key")
    token, made = None, 0
    while not stop.is_set():
        if time.time() - made > 30:
            token = run([w.tg, "token", "--key", key, "--iss", who, "--aud", "billing", "--ttl", "60s"]).strip()
            made = time.time()
        want = expect()
        try:
            conn = http.client.HTTPSConnection("localhost", ports["billing"], timeout=10, context=ctx)
            conn.request("GET", f"/from/{who}", headers={"authorization": f"Bearer {token}"})
            r = conn.getresponse()
            body = r.read()
            conn.close()
            if want is None or (r.status == want and (want != 401 or b'"revoked"' in body)):
                t.good(kind)
            else:
                t.bad(kind, f"wanted {want}, got {r.status} {body[:120]!r}")
        except Exception as ex:  # noqa: BLE001
            t.bad(kind, f"{type(ex).__name__}: {ex}")
        time.sleep(0.1)


def slow_request(ports, results):
    try:
        conn = http.client.HTTPConnection("127.0.0.1", ports["out"], timeout=30)
        conn.request("GET", "/slow/3000", headers={"host": "billing"})
        r = conn.getresponse()
        results.append((r.status, r.read()))
    except Exception as ex:  # noqa: BLE001
        results.append((None, repr(ex)))


def served_certificate(port):
    ctx = ssl.create_default_context()
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    with socket.create_connection(("127.0.0.1", port), 5) as s:
        with ctx.wrap_socket(s, server_hostname="localhost") as tls:
            return hashlib.sha256(tls.getpeercert(binary_form=True)).hexdigest()


def pem_fingerprint(path):
    return hashlib.sha256(ssl.PEM_cert_to_DER_cert(read(path).decode())).hexdigest()


# ---------------------------------------------------------------------------------------
# The run


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--trustgate", default=os.environ.get("TRUSTGATE", os.path.join(ROOT, "target/release/trustgate")))
    ap.add_argument("--seconds", type=float, default=120)
    args = ap.parse_args()
    total = max(args.seconds, 60.0)
    tmp = tempfile.mkdtemp(prefix="tg-soak-")
    w = World(args.trustgate, tmp)
    names = ("out", "billing", "grpcsvc", "app", "grpc_app", "jwks", "orders_admin", "billing_admin", "grpcsvc_admin",
             "billing_idle", "billing_idle_admin")
    ports = {n: free_port() for n in names}
    jwks = JwksServer(w, ports["jwks"])
    t = Tally()
    stop = threading.Event()
    events = []  # (time, what)
    revoked = {"on": False, "changed": 0.0}
    # Windows in which a failure of a kind is expected: (start, end, kinds, why).
    expected = []
    settle = 1.5  # a change is applied within a second (debounce + reload), with margin
    problems = []

    def note(what):
        events.append((time.time(), what))
        print(f"  {time.time() - t0:7.1f}s  {what}", flush=True)

    def probe_expect():
        # While revoked: 401; otherwise 200; within `settle` of a change: either.
        if time.time() - revoked["changed"] < settle:
            return None
        return 401 if revoked["on"] else 200

    def swap_and_count(admin, material, do, what):
        before = reloads(admin, material)
        do()
        wait_until(lambda: reloads(admin, material) >= before + 1, 10, f"a {material} reload after {what}")
        swaps.setdefault(material, 0)
        swaps[material] += 1
        note(what)

    swaps = {}
    counted = {}
    fleet_figures = {}
    t0 = term = time.time() + 10**9  # set below; a run cut short by an error has neither
    exit_after, warm, end = None, {}, {}
    try:
        start_app(w, ports["app"])
        w.spawn("grpc_app", [sys.executable, os.path.join(APPS, "grpc_app.py"), str(ports["grpc_app"])])
        wait_until(lambda: socket.create_connection(("127.0.0.1", ports["grpc_app"]), 0.5).close() is None, 30, "grpc app")
        jwks.start()
        w.start_redis()
        sidecar_configs(w, ports)
        pids = {n: w.procs[n].pid for n in ("orders", "billing")}
        reloads0 = {(n, m): reloads(ports[f"{n}_admin"], m)
                    for n, m in (("billing", "trust"), ("billing", "tls_certificate"), ("orders", "signing_key"))}
        t0 = time.time()
        print(f"soak: {total:.0f} s, trustgate {args.trustgate}, work dir {tmp}", flush=True)
        clients = [threading.Thread(target=f, args=(ports, stop, t), daemon=True)
                   for f in (keepalive_client, keepalive_client, upload_client, download_client, h2c_client, grpc_client)]
        clients.append(threading.Thread(target=token_client, daemon=True,
                                        args=(w, ports, stop, t, "ledger", "ledger (keys by URL)", lambda: 200)))
        clients.append(threading.Thread(target=token_client, daemon=True,
                                        args=(w, ports, stop, t, "probe", "probe (revoked for a while)", probe_expect)))
        for c in clients:
            c.start()

        def at(fraction):
            delay = t0 + fraction * total - time.time()
            if delay > 0:
                time.sleep(delay)

        at(0.10)
        warm = {n: proc_figures(pid) for n, pid in pids.items()}
        note(f"warmed up: rss/fds {warm}")

        # orders' key rotates: new public key beside the old at both callees, the new
        # private key at orders, then the old public key goes.
        at(0.15)
        both = dict(w.billing_trusted, **{"orders.next.pub": read(f"{w.keys}/orders-next/orders.pub")})
        swap_and_count(ports["billing_admin"], "trust", lambda: publish(f"{w.vol}/billing-ak", both),
                       "billing trusts orders' next key too")
        publish(f"{w.vol}/grpcsvc-ak", {"orders.pub": both["orders.pub"], "orders.next.pub": both["orders.next.pub"]})
        wait_until(lambda: len([k for k in trust(ports["grpcsvc_admin"])["keys"] if k["identity"] == "orders"]) == 2,
                   10, "grpcsvc trusts both")
        swap_and_count(ports["orders_admin"], "signing_key",
                       lambda: publish(f"{w.vol}/orders-identity", {"orders.key": read(f"{w.keys}/orders-next/orders.key")}),
                       "orders signs with its next key")
        check = trust(ports["orders_admin"])["signing_kid"] == w.kid["orders-next"]
        check or problems.append("orders does not sign with the new kid")
        at(0.25)
        only_next = {k: v for k, v in both.items() if k != "orders.pub"}
        swap_and_count(ports["billing_admin"], "trust", lambda: publish(f"{w.vol}/billing-ak", only_next),
                       "billing drops orders' old key")
        publish(f"{w.vol}/grpcsvc-ak", {"orders.next.pub": both["orders.next.pub"]})

        # A revocation comes and goes.
        at(0.32)

        def revoke(on):
            publish(f"{w.vol}/billing-revoked", {"revoked": (w.kid["probe"] + "\n").encode() if on else b"# none\n"})
            revoked.update(on=on, changed=time.time())

        swap_and_count(ports["billing_admin"], "trust", lambda: revoke(True), "the probe's kid revoked")
        at(0.40)
        swap_and_count(ports["billing_admin"], "trust", lambda: revoke(False), "the probe's kid no longer revoked")

        # The app restarts: calls to billing may fail while it is down.
        at(0.47)
        down = time.time()
        w.stop("app", wait=2)  # then SIGKILL, as a pod's grace period ends
        start_app(w, ports["app"])
        # Every kind but gRPC (another app) reaches this one.
        expected.append((down, time.time() + settle, set(KINDS) - {"gRPC unary+stream"}, "the app restarted"))
        note(f"the app restarted (down {time.time() - down:.1f} s)")

        # ledger's JWKS server is down for a while: its last good keys keep serving.
        at(0.55)
        jwks.stop()
        note("ledger's JWKS server down")
        at(0.68)
        errors = metric(ports["billing_admin"], "trustgate_trust_fetches_total", 'identity="ledger",result="error"')
        errors > 0 or problems.append("no failed fetch of ledger's keys counted while its server was down")
        jwks.start()
        note(f"ledger's JWKS server up again ({errors:.0f} failed fetches meanwhile)")

        # The fleet's store killed and restarted under load: billing's fleet-limited
        # caller (orders) is decided by billing's own bucket meanwhile — no failure is
        # expected — and the fleet is back without a restart.
        at(0.70)
        if w.redis_sock:
            admin = ports["billing_admin"]
            up = lambda: metric(admin, "trustgate_fleet_up")
            rate_ok = lambda: metric(admin, "trustgate_fleet_operations_total", 'op="rate",result="ok"')
            idle_admin = ports["billing_idle_admin"]
            idle_up = lambda: metric(idle_admin, "trustgate_fleet_up")
            wait_until(lambda: up() == 1 and idle_up() == 1, 10, "billing's fleet up")
            before = rate_ok()
            before > 0 or problems.append("no fleet rate operation before the restart")
            w.stop("redis", signal.SIGKILL)
            killed = time.time()
            wait_until(lambda: up() == 0, 10, "billing sees the fleet's store gone")
            seen = time.time() - killed
            w.start_redis()
            restarted = time.time()
            wait_until(lambda: up() == 1, 10, "billing's fleet back")
            back = time.time() - restarted
            wait_until(lambda: rate_ok() > before, 10, "fleet operations again")
            # The idle replica: once it says the store is up, its first request is
            # served by the store.
            wait_until(lambda: idle_up() == 1, 10, "the idle replica's fleet back")
            conn = http.client.HTTPConnection("127.0.0.1", ports["out"], timeout=15)
            conn.request("GET", "/echo?idle=1", headers={"host": "billing-idle"})
            r = conn.getresponse()
            body = r.read()
            conn.close()
            r.status == 200 or problems.append(
                f"the idle replica's first request after the store's restart: {r.status} {body[:120]!r}")
            fleet_figures.update(idle_first=r.status)
            fleet_figures.update(seen=round(seen, 3), back=round(back, 3),
                                 errors=metric(admin, "trustgate_fleet_operations_total", 'op="rate",result="error"'))
            note(f"Redis killed (seen down after {seen:.3f} s) and restarted: fleet back after {back:.3f} s")
        else:
            note("no redis-server: no fleet leg")

        # billing's inbound certificate rotates, and the new one is served.
        at(0.75)
        swap_and_count(ports["billing_admin"], "tls_certificate",
                       lambda: publish(f"{w.vol}/billing-tls", {"tls.crt": read(w.leaves[1][0]), "tls.key": read(w.leaves[1][1])}),
                       "billing's inbound certificate rotated")
        wait_until(lambda: served_certificate(ports["billing"]) == pem_fingerprint(w.leaves[1][0]), 5, "the new certificate served")
        note("the new certificate is served")

        at(0.90)
        end = {n: proc_figures(pid) for n, pid in pids.items()}
        note(f"rss/fds now {end}")
        for n in pids:
            (rss0, fd0), (rss1, fd1) = warm[n], end[n]
            if rss1 > rss0 * 1.25 + 4096:
                problems.append(f"{n}: RSS {rss0} KiB after warm-up, {rss1} KiB now")
            if fd1 > fd0 + 16:
                problems.append(f"{n}: {fd0} fds after warm-up, {fd1} now")

        # One reload counted per swap (billing's, before it goes), of that material only:
        # each material has its own directories, so a certificate swap is no trust
        # reload. (Before the trust-plane restructure it counted one: this soak found it.)
        want = {"trust": swaps.get("trust", 0),
                "tls_certificate": swaps.get("tls_certificate", 0)}
        for material, n in want.items():
            got = reloads(ports["billing_admin"], material) - reloads0[("billing", material)]
            counted[material] = got
            if got != n:
                problems.append(f"billing counted {got:.0f} {material} reloads, {n} expected ({swaps})")

        # SIGTERM to billing with slow requests in flight.
        at(0.95)
        slow = []
        threads = [threading.Thread(target=slow_request, args=(ports, slow)) for _ in range(4)]
        for th in threads:
            th.start()
        wait_until(lambda: metric(ports["billing_admin"], "trustgate_open_connections", 'listener="inbound"') >= 1, 5,
                   "slow requests in flight")
        time.sleep(0.5)
        stop.set()
        term = time.time()
        w.procs["billing"].send_signal(signal.SIGTERM)
        note("SIGTERM to billing with 4 slow requests in flight")
        try:
            code = w.procs["billing"].wait(GRACE + 5)
        except subprocess.TimeoutExpired:
            code = None
        exit_after = round(time.time() - term, 2)
        for th in threads:
            th.join(30)
        if code != 0 or exit_after > GRACE:
            problems.append(f"billing exited {code} after {exit_after:.1f} s (grace {GRACE} s)")
        if sorted(s for s, _ in slow) != [200] * 4:
            problems.append(f"slow requests at SIGTERM: {slow}")
        note(f"billing exited {code} after {exit_after:.1f} s; slow requests: {[s for s, _ in slow]}")
        for c in clients:
            c.join(20)
        signing = reloads(ports["orders_admin"], "signing_key") - reloads0[("orders", "signing_key")]
        if signing != swaps.get("signing_key"):
            problems.append(f"orders counted {signing:.0f} signing-key reloads for {swaps.get('signing_key')} swaps")
    finally:
        stop.set()
        jwks.stop()
        w.close()

    unexpected = []
    why_expected = {}
    expected.append((term - 0.2, float("inf"), set(KINDS), "the traffic stopping at SIGTERM"))
    for when, kind, detail in t.failures:
        window = next((w_ for w_ in expected if w_[0] <= when <= w_[1] and kind in w_[2]), None)
        if window:
            why_expected[window[3]] = why_expected.get(window[3], 0) + 1
        else:
            unexpected.append((when - t0, kind, detail))
    print("\nsoak figures")
    for kind, n in sorted(t.ok.items()):
        print(f"  {kind:30} {n:8} ok")
    print(f"  failures: {len(unexpected)} unexpected; expected: {why_expected or 'none'}")
    for n in end:
        print(f"  {n:8} RSS {warm[n][0]} → {end[n][0]} KiB, fds {warm[n][1]} → {end[n][1]}")
    print(f"  swaps: {swaps}; reloads counted by billing: {counted}; SIGTERM → exit after {exit_after} s")
    print(f"  fleet leg: {fleet_figures or 'not run'}")
    for u in unexpected[:20]:
        print(f"  UNEXPECTED {u[0]:7.1f}s {u[1]}: {u[2]}")
    for p in problems:
        print(f"  PROBLEM {p}")
    missing = set(KINDS) - set(t.ok)
    if missing:
        print(f"  PROBLEM no successful {sorted(missing)}")
    ok = not unexpected and not problems and not missing
    print("soak: " + ("ok" if ok else "FAILED") + f" (logs in {tmp})" * (not ok))
    if ok:
        shutil.rmtree(tmp, ignore_errors=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
