/**
 * banksync as a dependency: `npm pack`, install the tarball into a fresh Node 20 TypeScript ESM project,
 * type-check the README's embedding example there (module/moduleResolution nodenext, strict, skipLibCheck
 * false), run it compiled with plain `node` against the sandbox of the installed package, and run
 * `npx banksync demo` from that install. Nothing here imports ./src.
 */
import { execFile } from 'node:child_process';
import { cpSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const FIXTURE = fileURLToPath(new URL('./consumer/', import.meta.url));
const devDependency = (name: string): string => (JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { devDependencies: Record<string, string> }).devDependencies[name]!;

let work: string;
let project: string;
let tarball: string;
let packed: { size: number; unpackedSize: number; files: { path: string }[] };

async function sh(file: string, args: string[], cwd: string, env: NodeJS.ProcessEnv = {}) {
  return run(file, args, { cwd, env: { ...process.env, ...env }, maxBuffer: 64 * 1024 * 1024, timeout: 900_000 });
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), 'banksync-consumer-'));
  // `npm pack` runs `prepare`: the tarball holds a fresh build of this checkout.
  const { stdout } = await sh('npm', ['pack', '--json', '--pack-destination', work], ROOT);
  const info = (JSON.parse(stdout.slice(stdout.indexOf('['))) as (typeof packed & { filename: string })[])[0]!;
  packed = info;
  tarball = join(work, info.filename);
  project = join(work, 'app');
  cpSync(FIXTURE, project, { recursive: true });
  writeFileSync(
    join(project, 'package.json'),
    JSON.stringify({ name: 'consumer-app', private: true, type: 'module', allowScripts: { 'better-sqlite3': true } }, null, 2),
  );
  await sh(
    'npm',
    [
      'install',
      '--no-audit',
      '--no-fund',
      '--prefer-offline',
      // No install scripts: better-sqlite3's would compile its native addon again (minutes on a 2-core CI
      // machine, testing nothing of ours); its binary comes from this repository's install below.
      '--ignore-scripts',
      tarball,
      `xstate@${devDependency('xstate')}`,
      `better-sqlite3@${devDependency('better-sqlite3')}`,
      `fastify@${devDependency('fastify')}`,
      `pg@${devDependency('pg')}`,
      `graphile-worker@${devDependency('graphile-worker')}`,
      `typescript@${devDependency('typescript')}`,
      `@types/node@${devDependency('@types/node')}`,
    ],
    project,
  );
  // The same version, built for this Node by the repository's `npm ci`.
  const addon = 'node_modules/better-sqlite3/build/Release/better_sqlite3.node';
  mkdirSync(dirname(join(project, addon)), { recursive: true });
  cpSync(join(ROOT, addon), join(project, addon));
  const { stdout: size } = await sh('du', ['-sk', 'node_modules', 'node_modules/banksync'], project);
  // Reported for the record (the closing note), not asserted.
  console.log(`[consumer] tarball ${packed.size} B (unpacked ${packed.unpackedSize} B, ${packed.files.length} files); install:\n${size}`);
}, 1_200_000);

afterAll(() => {
  if (work) rmSync(work, { recursive: true, force: true });
});

describe('the packed tarball', () => {
  it('ships the build, the CLI, README and LICENSE; no sources, tests or benchmarks', () => {
    const files = packed.files.map((f) => f.path);
    for (const required of ['package.json', 'README.md', 'LICENSE', 'bin/banksync.js', 'dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/index.js.map', 'dist/src/entries/sqlite.js', 'dist/src/entries/postgres.js', 'dist/src/entries/sandbox.js', 'dist/src/cli/main.js']) {
      expect(files, required).toContain(required);
    }
    const stray = files.filter((f) => /^(test|bench|src|machines)\//.test(f) || (/\.ts$/.test(f) && !/\.d\.ts$/.test(f)));
    expect(stray).toEqual([]);
  });
});

describe('a consumer project (Node 20, TypeScript nodenext, strict, skipLibCheck false)', () => {
  it("type-checks the README's embedding example and the scale-out entry against the installed types", async () => {
    const result = await sh(join(project, 'node_modules/.bin/tsc'), ['-p', 'tsconfig.json'], project).catch((error: { stdout: string }) => error);
    expect('stdout' in result ? result.stdout : '').toBe('');
  });

  it('runs the compiled example with plain node against the installed sandbox: one TAN, COMPLETED', async () => {
    const { stdout } = await sh(process.execPath, ['dist/run.js'], project, { BANKSYNC_DB: join(work, 'app.sqlite') });
    const report = JSON.parse(stdout.trim().split('\n').at(-1)!) as {
      status: string;
      refreshed: boolean;
      tokenGrants: Record<string, number>;
      events: string[];
      logged: number;
      yearLater: { dryRun: boolean; syncs: number; transitions: number; effects: number; events: number };
    };
    expect(report).toMatchObject({ status: 'COMPLETED', refreshed: true });
    // The event log tells the sync's story; retention (dry run) would keep the connection's newest sync but
    // neither its old rows nor any event of the log.
    expect(report.events[0]).toBe('sync.updated');
    expect(report.events).toContain('sync.awaitingUser');
    expect(report.events.at(-1)).toBe('sync.completed');
    expect(report.yearLater).toMatchObject({ dryRun: true, syncs: 0 });
    expect(report.yearLater.transitions).toBeGreaterThan(0);
    expect(report.yearLater.events).toBe(report.logged);
    // The example authenticated with an OAuth client token from the sandbox, fetched once and reused.
    expect(report.tokenGrants).toEqual({ client_credentials: 1 });
  });

  it('`npx banksync --version` and `npx banksync demo` run from the install', async () => {
    const version = await sh('npx', ['--no-install', 'banksync', '--version'], project);
    expect(version.stdout.trim()).toBe((JSON.parse(readFileSync(join(ROOT, 'package.json'), 'utf8')) as { version: string }).version);
    const demo = await sh('npx', ['--no-install', 'banksync', 'demo', '--json'], project);
    const summary = JSON.parse(demo.stdout) as { scenarios: number; asScripted: number };
    expect(summary.scenarios).toBeGreaterThanOrEqual(80);
    expect(summary.asScripted).toBe(summary.scenarios);
  });

  it('the main entry loads none of the optional peers; each subpath loads only its own', async () => {
    // A resolve hook that refuses the optional peers: whatever imports one fails loudly.
    const hook = `export async function resolve(specifier, context, next) {
      if (/^(better-sqlite3|pg|graphile-worker|fastify|@statelyai\\/inspect|@opentelemetry\\/[a-z-]+)(\\/|$)/.test(specifier)) throw new Error('optional peer loaded: ' + specifier);
      return next(specifier, context);
    }`;
    writeFileSync(join(project, 'block-peers.mjs'), `import { register } from 'node:module';\nregister('data:text/javascript,' + encodeURIComponent(${JSON.stringify(hook)}));\n`);
    const load = (entry: string) =>
      sh(process.execPath, ['--import', './block-peers.mjs', '--input-type=module', '-e', `const m = await import('${entry}'); console.log(Object.keys(m).length)`], project).then(
        (r) => ({ ok: true, out: r.stdout.trim() }),
        (error: { stderr: string }) => ({ ok: false, out: error.stderr }),
      );
    const main = await load('banksync');
    expect(main.ok, main.out).toBe(true);
    expect(Number(main.out)).toBeGreaterThan(20);
    // The hook does refuse: the SQLite entry needs better-sqlite3.
    const sqlite = await load('banksync/sqlite');
    expect(sqlite).toMatchObject({ ok: false });
    expect(sqlite.out).toContain('optional peer loaded: better-sqlite3');
  });
});
