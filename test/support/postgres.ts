/**
 * PostgreSQL for tests: DATABASE_URL (CI sets it in .ci/run), else the local default. When no database is
 * reachable the Postgres tests are skipped locally but FAIL under CI=true: CI must run them.
 */
import pg from 'pg';

export const DATABASE_URL = process.env.DATABASE_URL ?? 'postgres://banksync:banksync@127.0.0.1:5432/banksync_dev';

async function reachable(): Promise<string | null> {
  const client = new pg.Client({ connectionString: DATABASE_URL, connectionTimeoutMillis: 3_000 });
  try {
    await client.connect();
    await client.query('SELECT 1');
    return null;
  } catch (error) {
    return (error as Error).message;
  } finally {
    await client.end().catch(() => {});
  }
}

const problem = await reachable();
if (problem && process.env.CI === 'true') {
  throw new Error(`PostgreSQL is required in CI but not reachable at DATABASE_URL (${problem})`);
}

/** True when the Postgres tests should run. */
export const postgresAvailable = problem === null;

export function throwawaySchema(prefix = 't'): string {
  return `${prefix}_${process.pid}_${Math.random().toString(36).slice(2, 10)}`;
}
