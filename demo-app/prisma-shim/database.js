'use strict';
// Where the demo's `migrate deploy` leaves its mark for DATABASE_URL:
// SQLite (file:PATH): a marker file beside the database; otherwise none.
const path = require('node:path');

function migrationMarker(url) {
  if (!url || !url.startsWith('file:')) return null;
  const file = url.slice('file:'.length).split('?')[0];
  return path.join(path.dirname(file), `${path.basename(file)}.demo-migrated`);
}

module.exports = { migrationMarker };
