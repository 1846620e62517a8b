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
