// The conformance app on Node's http module (same endpoints as py_http.py), plus /ws:
// a WebSocket echo written against RFC 6455 directly (Node 20 has no WebSocket server).
const http = require('http');
const crypto = require('crypto');

const PATTERN = Buffer.alloc(256 * 4096);
for (let i = 0; i < PATTERN.length; i++) PATTERN[i] = i % 256;
function pattern(n) {
  const out = Buffer.alloc(n);
  for (let off = 0; off < n; off += PATTERN.length) PATTERN.copy(out, off, 0, Math.min(PATTERN.length, n - off));
  return out;
}

const server = http.createServer((req, res) => {
  const path = req.url;
  if (path.startsWith('/status/')) {
    res.writeHead(parseInt(path.split('/')[2], 10));
    return res.end();
  }
  if (path.startsWith('/big/')) {
    req.resume();
    const body = pattern(parseInt(path.split('/')[2], 10));
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length });
    return res.end(body);
  }
  if (path === '/early') {
    res.writeHead(413, { 'content-type': 'application/json', connection: 'close' });
    res.end('{"error":"too big"}');
    return;
  }
  if (path === '/sse') {
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    let i = 0;
    const tick = () => {
      res.write(`data: event ${i}\n\n`);
      if (++i < 3) setTimeout(tick, 300); else res.end();
    };
    return tick();
  }
  if (path.startsWith('/slow/')) {
    return setTimeout(() => res.end('late'), parseInt(path.split('/')[2], 10));
  }
  if (path === '/trailers') {
    const body = 'trailer body';
    res.writeHead(200, { 'content-type': 'text/plain', trailer: 'x-checksum' });
    res.write(body);
    res.addTrailers({ 'x-checksum': crypto.createHash('sha256').update(body).digest('hex') });
    return res.end();
  }
  if (path === '/die') {
    res.writeHead(200, { 'content-length': 1000 });
    res.write('x'.repeat(10));
    setTimeout(() => req.socket.destroy(), 50);
    return;
  }
  const hash = crypto.createHash('sha256');
  let len = 0;
  req.on('data', (c) => { hash.update(c); len += c.length; });
  req.on('end', () => {
    const headers = [];
    for (let i = 0; i < req.rawHeaders.length; i += 2) headers.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
    // route: what Express routes on (parseurl's pathname: the target's path as sent).
    const body = JSON.stringify({
      app: 'node_http', method: req.method, route: req.url.split('?')[0], target: req.url,
      version: 'HTTP/' + req.httpVersion, headers, body_len: len, body_sha256: hash.digest('hex'),
    });
    if (process.env.ROUTE_LOG) require('fs').appendFileSync(process.env.ROUTE_LOG, body + '\n');
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) });
    res.end(body);
  });
});

server.on('upgrade', (req, socket) => {
  const key = req.headers['sec-websocket-key'];
  const accept = crypto.createHash('sha1').update(key + '258EAFA5-E914-47DA-95CA-C5AB0DC85B11').digest('base64');
  const caller = req.headers['x-service-caller'] || '';
  socket.write('HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n' +
    `sec-websocket-accept: ${accept}\r\nx-seen-caller: ${caller}\r\n\r\n`);
  let buf = Buffer.alloc(0);
  socket.on('data', (d) => {
    buf = Buffer.concat([buf, d]);
    while (buf.length >= 2) {
      const op = buf[0] & 0x0f;
      let len = buf[1] & 0x7f;
      let off = 2;
      if (len === 126) { if (buf.length < 4) return; len = buf.readUInt16BE(2); off = 4; }
      else if (len === 127) { if (buf.length < 10) return; len = Number(buf.readBigUInt64BE(2)); off = 10; }
      const masked = (buf[1] & 0x80) !== 0;
      const need = off + (masked ? 4 : 0) + len;
      if (buf.length < need) return;
      const mask = masked ? buf.slice(off, off + 4) : null;
      const payload = Buffer.from(buf.slice(off + (masked ? 4 : 0), need));
      if (mask) for (let i = 0; i < payload.length; i++) payload[i] ^= mask[i % 4];
      buf = buf.slice(need);
      if (op === 8) { socket.end(Buffer.from([0x88, 0])); return; }
      let hdr;
      if (payload.length < 126) hdr = Buffer.from([0x80 | op, payload.length]);
      else if (payload.length < 65536) { hdr = Buffer.alloc(4); hdr[0] = 0x80 | op; hdr[1] = 126; hdr.writeUInt16BE(payload.length, 2); }
      else { hdr = Buffer.alloc(10); hdr[0] = 0x80 | op; hdr[1] = 127; hdr.writeBigUInt64BE(BigInt(payload.length), 2); }
      socket.write(Buffer.concat([hdr, payload]));
    }
  });
  socket.on('error', () => {});
});

server.keepAliveTimeout = 30000;
// A port on loopback, or a Unix socket's path.
const where = process.argv[2];
if (/^[0-9]+$/.test(where)) server.listen(parseInt(where, 10), '127.0.0.1');
else server.listen(where);
