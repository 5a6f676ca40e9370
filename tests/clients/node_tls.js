// node-postgres (pg 8) over TLS against a running Cairn server with [server.tls] (run by
// the end-to-end test `tls::sslmode_require_could_not_connect`): Node's own TLS, trusting
// only the test CA and checking the host name, reads back a row over an encrypted socket.
//
// Usage: CAIRN_TEST_CA=ca.crt node node_tls.js HOST PORT USER PASSWORD DATABASE
const assert = require('assert');
const fs = require('fs');
let pg;
try {
  pg = require('pg');
} catch (e) {
  console.error(`${e.message}: this test needs the npm package pg (.ci/run installs it)`);
  process.exit(2);
}
const [, port, user, password, database] = process.argv.slice(2);
const ca = fs.readFileSync(process.env.CAIRN_TEST_CA, 'utf8');

(async () => {
  const c = new pg.Client({
    host: 'localhost', port: Number(port), user, password, database,
    ssl: { ca, rejectUnauthorized: true },
  });
  await c.connect();
  assert.ok(c.connection.stream.encrypted, 'not encrypted');
  const { rows } = await c.query('SELECT $1::text AS said', ['node over tls']);
  assert.strictEqual(rows[0].said, 'node over tls');
  await c.end();
  console.log('node-postgres over tls ok');
})().catch((e) => {
  console.error(e);
  process.exit(1);
});
