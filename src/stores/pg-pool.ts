/**
 * Every `pg` pool we create goes through `guardPool`. A `pg.Client` emits 'error' when its server connection
 * dies (a PostgreSQL restart terminates every session with 57P01), also while it is checked out of its pool
 * and between two queries; an 'error' event with no listener kills the process. The pool's own listener only
 * covers idle clients, so every client gets one too when the pool creates it. The next query on a broken
 * client fails with the error (the caller sees it); the pool discards the client and connects a new one.
 */
import type pg from 'pg';

/** Called once per broken connection, for the operator's log. */
export type ConnectionErrorListener = (error: Error, where: 'idle' | 'checked-out') => void;

export function guardPool(pool: pg.Pool, onError: ConnectionErrorListener = () => {}): pg.Pool {
  const reported = new WeakSet<Error>();
  const report = (where: 'idle' | 'checked-out') => (error: Error) => {
    // pg emits the same error on the client and (when idle) on the pool: report it once.
    if (reported.has(error)) return;
    reported.add(error);
    onError(error, where);
  };
  pool.on('error', report('idle'));
  pool.on('connect', (client) => {
    client.on('error', report('checked-out'));
  });
  return pool;
}

type ConnectCallback = (error: Error | undefined, client: pg.PoolClient | undefined, release: (error?: Error | boolean) => void) => void;

/**
 * A pool for graphile-worker whose callback-style `release` may be called twice. graphile-worker 0.17's LISTEN
 * client can be released twice when the connection dies while the pool shuts down (its error handler and its
 * shutdown both release it); pg-pool throws on the second call, inside a promise nobody awaits, and the
 * unhandled rejection ended the worker process during a database restart.
 */
export function tolerateDoubleRelease(pool: pg.Pool): pg.Pool {
  const connect = pool.connect.bind(pool) as (callback?: ConnectCallback) => Promise<pg.PoolClient> | undefined;
  const patched = (callback?: ConnectCallback) => {
    if (!callback) return connect();
    return connect((error, client, release) => {
      let released = false;
      callback(error, client, (releaseError) => {
        if (released) return;
        released = true;
        release(releaseError);
      });
    });
  };
  (pool as unknown as { connect: typeof patched }).connect = patched;
  return pool;
}
