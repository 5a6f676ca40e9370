// node-postgres (pg 8) against a running Cairn server, with no overrides (run by the
// end-to-end test `hostile::node_postgres_read_an_aliased_window_column_by_the_calls_name`):
// parameters (text, bool, int), RETURNING, a rolled-back transaction, information_schema,
// an array parameter with = ANY, and a column aliased after a window, which came back
// named after the call (`row.count`).
//
// Usage: node node_pg.js HOST PORT USER PASSWORD DATABASE
const assert = require('assert');
let pg;
try {
  pg = require('pg');
} catch (e) {
  console.error(`${e.message}: this test needs the npm package pg (.ci/run installs it)`);
  process.exit(2);
}
const [host, port, user, password, database] = process.argv.slice(2);

(async () => {
  const c = new pg.Client({ host, port: Number(port), user, password, database });
  await c.connect();
  await c.query('CREATE TABLE np (id SERIAL PRIMARY KEY, name TEXT NOT NULL, ok BOOLEAN, n INTEGER)');
  const inserted = await c.query(
    'INSERT INTO np (name, ok, n) VALUES ($1, $2, $3), ($4, $5, $6) RETURNING id',
    ['ada', true, 7, 'grace', false, 8]);
  assert.deepStrictEqual(inserted.rows.map(r => Number(r.id)), [1, 2]);
  const selected = await c.query(
    'SELECT name, ok, count(*) OVER () AS total FROM np WHERE ok = $1', [true]);
  assert.strictEqual(selected.rows.length, 1);
  assert.strictEqual(selected.rows[0].name, 'ada');
  assert.strictEqual(selected.rows[0].ok, true);
  assert.strictEqual(Number(selected.rows[0].total), 1, JSON.stringify(selected.rows[0]));
  await c.query('BEGIN');
  await c.query("INSERT INTO np (name) VALUES ('rolled back')");
  await c.query('ROLLBACK');
  const count = await c.query('SELECT count(*) FROM np');
  assert.strictEqual(Number(count.rows[0].count), 2);
  const tables = await c.query(
    'SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $1 ORDER BY ordinal_position',
    ['np']);
  assert.deepStrictEqual(tables.rows.map(r => [r.column_name, r.data_type]),
    [['id', 'integer'], ['name', 'text'], ['ok', 'boolean'], ['n', 'integer']]);
  const any = await c.query('SELECT name FROM np WHERE n = ANY($1::int[]) ORDER BY name', [[8, 9]]);
  assert.deepStrictEqual(any.rows.map(r => r.name), ['grace']);
  await c.end();
  console.log('node-postgres ok');
})().catch(e => { console.error('FAILED', e.stack || e.message); process.exit(1); });
