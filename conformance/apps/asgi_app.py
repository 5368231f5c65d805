"""The conformance app as a bare ASGI application, served by uvicorn (h11), with a
WebSocket echo (uvicorn's websockets support). Same endpoints as py_http.py; no trailers
(uvicorn does not send response trailers). Run: python -m uvicorn asgi_app:app --port P"""
import asyncio
import hashlib
import json
import os

PATTERN = bytes(range(256)) * 4096


async def app(scope, receive, send):
    if scope["type"] == "lifespan":
        while True:
            m = await receive()
            if m["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif m["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] == "websocket":
        await receive()  # websocket.connect
        caller = dict(scope["headers"]).get(b"x-service-caller", b"").decode()
        await send({"type": "websocket.accept", "headers": [(b"x-seen-caller", caller.encode())]})
        while True:
            m = await receive()
            if m["type"] == "websocket.disconnect":
                return
            if m.get("text") is not None:
                await send({"type": "websocket.send", "text": m["text"]})
            else:
                await send({"type": "websocket.send", "bytes": m.get("bytes")})
    path = scope["path"]
    raw = scope.get("raw_path", path.encode()).decode("latin-1")
    qs = scope.get("query_string", b"").decode("latin-1")
    target = raw + ("?" + qs if qs else "")

    async def respond(status, body=b"", headers=(), more=False):
        await send({"type": "http.response.start", "status": status, "headers": list(headers)})
        await send({"type": "http.response.body", "body": body, "more_body": more})

    if path.startswith("/status/"):
        return await respond(int(path.split("/")[2]))
    if path.startswith("/big/"):
        n = int(path.split("/")[2])
        body = (PATTERN * (n // len(PATTERN) + 1))[:n]
        return await respond(200, body, [(b"content-length", str(n).encode()), (b"content-type", b"application/octet-stream")])
    if path == "/early":
        return await respond(413, b'{"error":"too big"}', [(b"content-type", b"application/json"), (b"connection", b"close")])
    if path == "/sse":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-type", b"text/event-stream")]})
        for i in range(3):
            await send({"type": "http.response.body", "body": f"data: event {i}\n\n".encode(), "more_body": i < 2})
            if i < 2:
                await asyncio.sleep(0.3)
        return
    if path.startswith("/slow/"):
        await asyncio.sleep(int(path.split("/")[2]) / 1000)
        return await respond(200, b"late")
    if path == "/die":
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"1000")]})
        await send({"type": "http.response.body", "body": b"x" * 10, "more_body": True})
        raise RuntimeError("dying mid-body")
    sha = hashlib.sha256()
    n = 0
    while True:
        m = await receive()
        chunk = m.get("body", b"")
        sha.update(chunk)
        n += len(chunk)
        if not m.get("more_body"):
            break
    echo = {
        "app": "asgi",
        "method": scope["method"],
        # What an ASGI router (Starlette) routes: uvicorn's percent-decoded path.
        "route": path,
        "target": target,
        "version": "HTTP/" + scope["http_version"],
        "headers": [[k.decode("latin-1"), v.decode("latin-1")] for k, v in scope["headers"]],
        "body_len": n,
        "body_sha256": sha.hexdigest(),
    }
    if os.environ.get("ROUTE_LOG"):
        with open(os.environ["ROUTE_LOG"], "a") as f:
            f.write(json.dumps(echo) + "\n")
    await respond(200, json.dumps(echo).encode(), [(b"content-type", b"application/json")])
