#!/usr/bin/env node
// Luna's demo app: the smallest server that honours the app contract
// (docs/app-contract.md), so that dev runs on a fresh machine without access to
// the real image, and so that the tests' app replicas are this same code.
// Standard library only: the image installs nothing from a registry.
'use strict';

const fs = require('node:fs');
const http = require('node:http');
const os = require('node:os');

const PORT = Number(process.env.PORT || 3000);
const HOST = process.env.HOSTNAME || '0.0.0.0';
// Which replica answered: tests and the proxy's load-balancing checks read it.
const INSTANCE = process.env.DEMO_INSTANCE || os.hostname();
// Echo the forwarding headers it received (the edge tests set it; never in an image).
const ECHO_FORWARDING = process.env.DEMO_ECHO_FORWARDING === '1';
// The contract's default paths (Pulumi.yaml healthPath, crisisPath, metricsPath).
const HEALTH_PATH = '/api/health';
const CRISIS_PATH = '/api/crisis/health';
const METRICS_PATH = '/api/metrics';
const BUCKETS = [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

const { migrationMarker } = require('./prisma-shim/database.js');

const requests = new Map(); // "method|route|status" -> count
const durations = new Map(); // route -> { buckets: number[], sum, count }

function route(path) {
  return [HEALTH_PATH, CRISIS_PATH, METRICS_PATH].includes(path) ? path : 'other';
}

function observe(method, path, status, seconds) {
  const key = `${method}|${route(path)}|${status}`;
  requests.set(key, (requests.get(key) || 0) + 1);
  const d = durations.get(route(path)) || { buckets: BUCKETS.map(() => 0), sum: 0, count: 0 };
  BUCKETS.forEach((le, i) => { if (seconds <= le) d.buckets[i] += 1; });
  d.sum += seconds;
  d.count += 1;
  durations.set(route(path), d);
}

function metrics() {
  const lines = [
    '# HELP http_requests_total HTTP requests answered.',
    '# TYPE http_requests_total counter',
  ];
  for (const [key, n] of requests) {
    const [method, path, status] = key.split('|');
    lines.push(`http_requests_total{method="${method}",route="${path}",status="${status}"} ${n}`);
  }
  lines.push('# HELP http_request_duration_seconds Time to answer an HTTP request.');
  lines.push('# TYPE http_request_duration_seconds histogram');
  for (const [path, d] of durations) {
    BUCKETS.forEach((le, i) => {
      lines.push(`http_request_duration_seconds_bucket{route="${path}",le="${le}"} ${d.buckets[i]}`);
    });
    lines.push(`http_request_duration_seconds_bucket{route="${path}",le="+Inf"} ${d.count}`);
    lines.push(`http_request_duration_seconds_sum{route="${path}"} ${d.sum}`);
    lines.push(`http_request_duration_seconds_count{route="${path}"} ${d.count}`);
  }
  return lines.join('\n') + '\n';
}

function migrated() {
  // Healthy only once `prisma migrate deploy` has run against DATABASE_URL, as
  // the real app cannot serve before its schema exists.
  const marker = migrationMarker(process.env.DATABASE_URL);
  return marker === null || fs.existsSync(marker);
}

function answer(req, res, received) {
  const path = (req.url || '/').split('?')[0];
  let status = 200;
  let type = 'application/json';
  let body;
  if (path === HEALTH_PATH) {
    status = migrated() ? 200 : 503;
    body = JSON.stringify({ status: status === 200 ? 'ok' : 'not migrated', instance: INSTANCE });
  } else if (path === CRISIS_PATH) {
    body = JSON.stringify({
      status: 'ok',
      // A demo: the real app serves the user's local crisis resources.
      resources: [{ name: 'Emergency services', contact: '112 / 911' }],
    });
  } else if (path === METRICS_PATH) {
    type = 'text/plain; version=0.0.4';
    body = metrics();
  } else {
    // Every other page: which replica answered and how many body bytes it got.
    type = 'text/plain';
    body = `${INSTANCE} ${received}\nLuna demo app (not the real Luna): docs/app-contract.md\n`;
  }
  res.statusCode = status;
  res.setHeader('Content-Type', type);
  res.setHeader('Content-Length', Buffer.byteLength(body));
  // Next.js sets it; the proxy must hide it, and its tests check that it does.
  res.setHeader('X-Powered-By', 'Next.js');
  if (ECHO_FORWARDING) {
    // Tests only: what the proxy told the app about the client.
    for (const name of ['X-Forwarded-For', 'X-Real-IP', 'Forwarded', 'Host']) {
      res.setHeader(`X-Seen-${name}`, req.headers[name.toLowerCase()] || '-');
    }
  }
  res.end(req.method === 'HEAD' ? undefined : body);
  return status;
}

const server = http.createServer((req, res) => {
  const start = process.hrtime.bigint();
  let received = 0;
  req.on('data', (chunk) => { received += chunk.length; });
  req.on('end', () => {
    const status = answer(req, res, received);
    const seconds = Number(process.hrtime.bigint() - start) / 1e9;
    observe(req.method, (req.url || '/').split('?')[0], status, seconds);
  });
});

server.listen(PORT, HOST, () => {
  // The bound port on the first line of stdout: with PORT=0 a test learns it here.
  process.stdout.write(`${server.address().port}\n`);
});

function stop() {
  server.close(() => process.exit(0));
  setTimeout(() => process.exit(0), 5000).unref();
}
process.on('SIGTERM', stop);
process.on('SIGINT', stop);
