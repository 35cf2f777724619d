// Node.js upstream for the conformance suite (built-in `http` module only).
//
// Listens on 127.0.0.1 with a port chosen by the OS and prints `{"port": N}` as
// its first line on stdout. Every path it serves starts with `/node/`, so the
// proxy routes the prefix here without rewriting and a check sends the very
// same path whether it talks to the proxy or (in `--direct` mode) to Node.
//
// Main endpoints (reached through the proxy):
//   /node/echo...          JSON of what arrived: method, raw target (`req.url`),
//                          HTTP version, raw headers, body length and sha256.
//                          `?probe=ID` (or header x-probe) also records it for
//                          /node/record. A HEAD gets `content-length: 0`.
//   /node/small            "ok" (for h2load).
//   /node/sse?id=G         server-sent events: the first event, then nothing
//                          until gate G is released, then the rest.
//   /node/drip?id=G&size=N&first=M
//                          a content-length N body: M bytes, then the rest
//                          once gate G is released.
//   /node/bytes?size=N     N deterministic pseudo-random bytes, their sha256
//                          in `x-body-sha256`.
//   /node/upload?id=G      counts the request body's bytes as they arrive
//                          (gate G's `seen`), answers length + sha256 at the end.
//   /node/hang?id=G        marks G `arrived`, answers only once G is released;
//                          marks G `aborted` if the exchange is dropped first.
//   /node/hop-response     an answer carrying hop-by-hop headers.
//   /node/page.html, /node/data.json?token=T
//                          a page whose script fetches the JSON by XHR.
//
// Side endpoints (called by the suite directly, never through the proxy):
//   /node/gate/release?id=G
//   /node/gate/state?id=G[&seen=N][&arrived=1][&aborted=1][&wait_ms=MS]
//                          long-poll until every condition given holds (or
//                          wait_ms passes), then the gate's state as JSON.
//   /node/record?probe=ID  the recorded /node/echo request, 404 if none.
//
// A gate never released gives up after GATE_GIVE_UP_MS and destroys the
// response, so that nothing waits forever.
'use strict';

const http = require('http');
const crypto = require('crypto');

const GATE_GIVE_UP_MS = 30000;

// ---------------------------------------------------------------------------
// Gates: named rendezvous points between a check and a running exchange.

const gates = new Map();

function gate(id) {
  let g = gates.get(id);
  if (!g) {
    g = { released: false, seen: 0, arrived: false, aborted: false, done: false, watchers: [] };
    gates.set(id, g);
  }
  return g;
}

// Wakes every watcher whose condition now holds.
function changed(g) {
  const waiting = [];
  for (const w of g.watchers) {
    if (w.ready()) w.wake(); else waiting.push(w);
  }
  g.watchers = waiting;
}

// Resolves true once `ready()` holds, false after `ms`.
function until(g, ready, ms) {
  return new Promise((resolve) => {
    if (ready()) return resolve(true);
    const w = { ready, wake: () => { clearTimeout(t); resolve(true); } };
    const t = setTimeout(() => {
      g.watchers = g.watchers.filter((x) => x !== w);
      resolve(false);
    }, ms);
    g.watchers.push(w);
  });
}

function gateState(g) {
  return { released: g.released, seen: g.seen, arrived: g.arrived, aborted: g.aborted, done: g.done };
}

// ---------------------------------------------------------------------------
// Helpers

const records = new Map();

function json(res, status, value, extraHeaders = {}) {
  const body = Buffer.from(JSON.stringify(value));
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': body.length, ...extraHeaders });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

function rawHeaderPairs(req) {
  const pairs = [];
  for (let i = 0; i < req.rawHeaders.length; i += 2) pairs.push([req.rawHeaders[i], req.rawHeaders[i + 1]]);
  return pairs;
}

// Deterministic bytes: a xorshift32 stream, so any size is cheap to make.
function pseudoRandom(size, seed) {
  const buf = Buffer.alloc(size);
  let x = seed >>> 0 || 1;
  for (let i = 0; i < size; i++) {
    x ^= x << 13; x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5; x >>>= 0;
    buf[i] = x & 0xff;
  }
  return buf;
}

// The drip body: byte i is 'a' + i % 26, easy to check at the other end.
function dripBytes(size) {
  const buf = Buffer.alloc(size);
  for (let i = 0; i < size; i++) buf[i] = 97 + (i % 26);
  return buf;
}

// Waits for gate `id` to be released; destroys the response if it never is.
async function awaitRelease(res, g) {
  const ok = await until(g, () => g.released, GATE_GIVE_UP_MS);
  if (!ok) res.destroy();
  return ok;
}

// ---------------------------------------------------------------------------
// Handlers

const PAGE = `<!doctype html>
<html><head><meta charset="utf-8"><title>conformance page</title></head>
<body>
<p id="status">waiting for the script</p>
<script>
  var token = new URLSearchParams(location.search).get('token') || 'none';
  var xhr = new XMLHttpRequest();
  xhr.open('GET', '/node/data.json?token=' + encodeURIComponent(token));
  xhr.onload = function () {
    var out = document.createElement('div');
    out.id = 'result';
    try {
      out.textContent = xhr.status + ' ' + JSON.parse(xhr.responseText).marker;
    } catch (e) {
      out.textContent = 'bad json: ' + e;
    }
    document.body.appendChild(out);
  };
  xhr.onerror = function () {
    var out = document.createElement('div');
    out.id = 'result';
    out.textContent = 'xhr error';
    document.body.appendChild(out);
  };
  xhr.send();
</script>
</body></html>
`;

const handlers = {
  '/node/small': (req, res) => {
    req.resume();
    req.on('end', () => { res.writeHead(200, { 'content-type': 'text/plain', 'content-length': 2 }); res.end('ok'); });
  },

  '/node/sse': async (req, res, q) => {
    req.resume();
    const g = gate(q.get('id'));
    res.writeHead(200, { 'content-type': 'text/event-stream', 'cache-control': 'no-cache' });
    res.write('data: first\n\n');
    if (!(await awaitRelease(res, g))) return;
    res.write('data: second\n\n');
    res.end('data: third\n\n');
    g.done = true; changed(g);
  },

  '/node/drip': async (req, res, q) => {
    req.resume();
    const g = gate(q.get('id'));
    const size = Number(q.get('size') || 65536);
    const first = Number(q.get('first') || 2048);
    const body = dripBytes(size);
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': size });
    res.write(body.subarray(0, first));
    if (!(await awaitRelease(res, g))) return;
    res.end(body.subarray(first));
    g.done = true; changed(g);
  },

  '/node/bytes': (req, res, q) => {
    req.resume();
    const body = pseudoRandom(Number(q.get('size') || 1024), Number(q.get('seed') || 7));
    const sha = crypto.createHash('sha256').update(body).digest('hex');
    res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': body.length, 'x-body-sha256': sha });
    res.end(body);
  },

  '/node/upload': (req, res, q) => {
    const g = gate(q.get('id'));
    const hash = crypto.createHash('sha256');
    req.on('data', (chunk) => { hash.update(chunk); g.seen += chunk.length; changed(g); });
    req.on('end', () => {
      g.done = true; changed(g);
      json(res, 200, { length: g.seen, body_sha256: hash.digest('hex'), url: req.url });
    });
  },

  '/node/hang': async (req, res, q) => {
    req.resume();
    const g = gate(q.get('id'));
    res.on('close', () => { if (!res.writableFinished) { g.aborted = true; changed(g); } });
    g.arrived = true; changed(g);
    if (!(await awaitRelease(res, g))) return;
    if (!res.destroyed) res.end('released');
  },

  '/node/hop-response': (req, res) => {
    req.resume();
    req.on('end', () => {
      // Chunked on purpose: `trailer` is only allowed with a chunked body.
      res.writeHead(200, {
        'content-type': 'text/plain',
        'connection': 'x-hop-resp',
        'keep-alive': 'timeout=9, max=99',
        'x-hop-resp': 'must-not-reach-the-client',
        'proxy-connection': 'keep-alive',
        'upgrade': 'foo/1',
        'te': 'trailers',
        'http2-settings': 'AAMAAABkAARAAAAAAAIAAAAA',
        'trailer': 'x-trailer',
        'x-end-to-end': 'kept',
      });
      res.write('hop ');
      res.addTrailers({ 'x-trailer': 'end' });
      res.end('response');
    });
  },

  '/node/page.html': (req, res) => {
    req.resume();
    res.writeHead(200, { 'content-type': 'text/html; charset=utf-8', 'content-length': Buffer.byteLength(PAGE) });
    res.end(PAGE);
  },

  '/node/data.json': (req, res, q) => {
    req.resume();
    json(res, 200, { marker: 'conformance-xhr-ok-' + (q.get('token') || 'none') }, { 'cache-control': 'no-store' });
  },

  '/node/ping': (req, res) => { req.resume(); json(res, 200, { pong: true }); },

  // Side endpoints.

  '/node/gate/release': (req, res, q) => {
    req.resume();
    const g = gate(q.get('id'));
    g.released = true; changed(g);
    json(res, 200, gateState(g));
  },

  '/node/gate/state': async (req, res, q) => {
    req.resume();
    const g = gate(q.get('id'));
    const seen = q.has('seen') ? Number(q.get('seen')) : null;
    const ready = () =>
      (seen === null || g.seen >= seen) &&
      (!q.has('arrived') || g.arrived) &&
      (!q.has('aborted') || g.aborted) &&
      (!q.has('done') || g.done);
    await until(g, ready, Number(q.get('wait_ms') || 0));
    json(res, 200, gateState(g));
  },

  '/node/record': (req, res, q) => {
    req.resume();
    const r = records.get(q.get('probe'));
    if (r) json(res, 200, r); else json(res, 404, { error: 'no such probe' });
  },
};

function echo(req, res, q) {
  const hash = crypto.createHash('sha256');
  let length = 0;
  const head = [];
  req.on('data', (chunk) => {
    hash.update(chunk);
    if (length < 256) head.push(chunk);
    length += chunk.length;
  });
  req.on('end', () => {
    const summary = {
      method: req.method,
      url: req.url,
      http_version: req.httpVersion,
      raw_headers: rawHeaderPairs(req),
      body_length: length,
      body_sha256: hash.digest('hex'),
      body_head: Buffer.concat(head).subarray(0, 256).toString('latin1'),
    };
    const probe = q.get('probe') || req.headers['x-probe'];
    if (probe) records.set(probe, summary);
    if (req.method === 'HEAD') {
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': 0 });
      res.end();
    } else {
      json(res, 200, summary);
    }
  });
}

const server = http.createServer((req, res) => {
  // `req.url` is the raw request target: origin-form or, if a proxy got it
  // wrong, absolute-form. Parse it either way to find the handler.
  const u = new URL(req.url, 'http://placeholder');
  const handler = handlers[u.pathname];
  if (handler) return handler(req, res, u.searchParams);
  if (u.pathname === '/node/echo' || u.pathname.startsWith('/node/echo/')) return echo(req, res, u.searchParams);
  req.resume();
  json(res, 404, { error: 'not found', url: req.url });
});

// Longer than the proxy keeps idle upstream connections, so the proxy never
// reuses a connection at the moment Node closes it.
server.keepAliveTimeout = 120000;
server.headersTimeout = 125000;
server.requestTimeout = 0;

server.listen(0, '127.0.0.1', () => {
  process.stdout.write(JSON.stringify({ port: server.address().port }) + '\n');
});

process.on('SIGTERM', () => process.exit(0));
