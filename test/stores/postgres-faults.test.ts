/**
 * Issue 12, point 6: a PostgreSQL store fault is a typed error (StorageError, a BanksyncError with a STORE_*
 * code) worded for the operator, with the driver's error as its cause and the connection string's password
 * nowhere in it.
 */
import { describe, expect, it } from 'vitest';
import { BanksyncError } from '../../src/engine/errors.js';
import { StorageError } from '../../src/stores/errors.js';
import { PostgresStore } from '../../src/stores/postgres.js';
import { DATABASE_URL, postgresAvailable, throwawaySchema } from '../support/postgres.js';

const PASSWORD = 'pw-Zq8x-never-shown';

const openError = (connectionString: string) =>
  PostgresStore.open({ connectionString, schema: throwawaySchema('f') }).then(
    async (store) => {
      await store.close();
      return null;
    },
    (error: unknown) => error,
  );

describe('PostgreSQL store faults', () => {
  it('an unreachable server is STORE_UNAVAILABLE, worded for the operator', async () => {
    const error = await openError(`postgres://banksync:${PASSWORD}@127.0.0.1:1/banksync`);
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toBeInstanceOf(BanksyncError);
    expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect((error as Error).message).toMatch(/PostgreSQL store \(schema f_\w+\): the PostgreSQL server is unreachable or restarting \(ECONNREFUSED\)/);
    expect((error as Error).cause).toMatchObject({ code: 'ECONNREFUSED' });
    expect(JSON.stringify(error)).not.toContain(PASSWORD);
    expect((error as Error).message).not.toContain(PASSWORD);
  });

  it.runIf(postgresAvailable)('a missing database (or a refused login) names the fix, never the password', async () => {
    const url = new URL(DATABASE_URL);
    url.password = PASSWORD;
    url.pathname = `/no_such_db_${process.pid}`;
    const error = await openError(url.toString());
    expect(error).toBeInstanceOf(StorageError);
    expect(error).toMatchObject({ code: 'STORE_UNAVAILABLE' });
    expect((error as Error).message).toMatch(/database named in the connection string does not exist|refused the login/);
    expect((error as Error).message).not.toContain(PASSWORD);
    expect(JSON.stringify(error)).not.toContain(PASSWORD);
  });
});
