/**
 * A private, throwaway PostgreSQL server for tests that stop and start the database (issue 12, point 2):
 * its own data directory and port, so restarting it never touches the machine's shared cluster.
 *
 * PostgreSQL refuses to run as root: when the test runs as root, the binaries run as the `postgres` user
 * (`runuser -u postgres --`) on a temporary directory that user owns.
 */
import { execFileSync, spawnSync } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const BIN_DIR = process.env.PG_BIN_DIR ?? '/usr/lib/postgresql/15/bin';

/** Why a private server cannot be started here, or null when it can. */
export function privatePostgresProblem(): string | null {
  for (const name of ['initdb', 'pg_ctl', 'postgres']) {
    if (!existsSync(join(BIN_DIR, name))) return `${join(BIN_DIR, name)} is missing (set PG_BIN_DIR)`;
  }
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) return 'running as root and there is no postgres user to run the server as';
  return null;
}

export interface PrivatePostgres {
  readonly url: string;
  readonly port: number;
  /** Fast shutdown: every session is terminated (57P01), as in a real restart. */
  stop(): void;
  start(): void;
  /** Stops the server (if running) and removes its data directory. */
  destroy(): void;
}

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const problem = privatePostgresProblem();
  if (problem) throw new Error(`cannot start a private PostgreSQL: ${problem}`);
  const asRoot = process.getuid?.() === 0;
  const run = (bin: string, args: string[]) => {
    const [command, argv] = asRoot ? ['runuser', ['-u', 'postgres', '--', join(BIN_DIR, bin), ...args]] : [join(BIN_DIR, bin), args];
    execFileSync(command as string, argv as string[], { stdio: ['ignore', 'ignore', 'pipe'] });
  };
  const dir = mkdtempSync(join(tmpdir(), 'banksync-pg-'));
  chmodSync(dir, 0o700);
  if (asRoot) {
    const uid = Number(execFileSync('id', ['-u', 'postgres']).toString().trim());
    const gid = Number(execFileSync('id', ['-g', 'postgres']).toString().trim());
    chownSync(dir, uid, gid);
  }
  const data = join(dir, 'data');
  const port = await freePort();
  run('initdb', ['-D', data, '-U', 'banksync', '--auth=trust', '-E', 'UTF8', '--no-sync']);
  const conf = [`port = ${port}`, "listen_addresses = '127.0.0.1'", `unix_socket_directories = '${dir}'`, 'max_connections = 200', 'fsync = off', 'full_page_writes = off'];
  const confFile = join(data, 'postgresql.auto.conf');
  writeFileSync(confFile, `${conf.join('\n')}\n`, { flag: 'a' });
  let running = false;
  const start = () => {
    run('pg_ctl', ['-D', data, '-l', join(dir, 'log'), '-w', '-t', '60', 'start']);
    running = true;
  };
  const stop = () => {
    run('pg_ctl', ['-D', data, '-m', 'fast', '-w', '-t', '60', 'stop']);
    running = false;
  };
  start();
  run('createdb', ['-h', '127.0.0.1', '-p', String(port), '-U', 'banksync', 'banksync']);
  return {
    url: `postgres://banksync@127.0.0.1:${port}/banksync`,
    port,
    stop,
    start,
    destroy() {
      try {
        if (running) stop();
      } finally {
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
