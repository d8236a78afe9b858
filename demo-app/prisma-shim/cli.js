#!/usr/bin/env node
// The demo's stand-in for `prisma migrate deploy` (the app contract's migrate
// command, run as `npx --no-install prisma migrate deploy`). The demo has no
// schema: for SQLite it records that the migration ran (the server reports
// unhealthy until then); for PostgreSQL it checks that the server accepts TCP
// connections at DATABASE_URL's host and port, and fails if it does not.
'use strict';

const fs = require('node:fs');
const net = require('node:net');
const path = require('node:path');
const { migrationMarker } = require('./database.js');

function fail(message) {
  process.stderr.write(`demo migrate: ${message}\n`);
  process.exit(1);
}

const [command, sub] = process.argv.slice(2);
if (command !== 'migrate' || sub !== 'deploy') {
  fail(`only "migrate deploy" is supported, got ${JSON.stringify(process.argv.slice(2))}`);
}
const url = process.env.DATABASE_URL;
if (!url) fail('DATABASE_URL is not set');

const marker = migrationMarker(url);
if (marker !== null) {
  fs.mkdirSync(path.dirname(marker), { recursive: true });
  fs.writeFileSync(marker, `migrated ${new Date().toISOString()}\n`);
  process.stdout.write(`demo migrate: recorded ${marker}\n`);
} else {
  let target;
  try {
    target = new URL(url);
  } catch {
    fail('DATABASE_URL is not a URL');
  }
  const socket = net.connect({ host: target.hostname, port: Number(target.port || 5432) });
  socket.setTimeout(10000);
  socket.on('connect', () => {
    process.stdout.write(`demo migrate: ${target.hostname}:${target.port || 5432} accepts connections\n`);
    socket.destroy();
  });
  socket.on('timeout', () => fail(`${target.hostname}: no answer within 10 s`));
  socket.on('error', (err) => fail(`${target.hostname}: ${err.message}`));
}
