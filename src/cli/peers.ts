/**
 * What the CLI shares between commands: loading modules that need optional peer dependencies (a missing one
 * becomes one clear line naming the install), usage errors (exit 2), and where providers come from
 * (`--config`, or a sandbox only when `--sandbox-url` asks for it).
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import { loadConfig, sandboxConfig, type BanksyncConfig } from '../config/index.js';
import type { Store } from '../stores/types.js';

/** A usage problem found after parsing (e.g. neither --config nor --sandbox-url): exit code 2. */
export class UsageError extends Error {
  override readonly name = 'UsageError';
}

/** An optional peer dependency the command needs is not installed: exit code 1 with the install line. */
export class MissingPeerError extends Error {
  override readonly name = 'MissingPeerError';
}

/** Imports what a command needs; ERR_MODULE_NOT_FOUND of a bare package becomes a MissingPeerError. */
export async function loadFor<T>(command: string, load: () => Promise<T>): Promise<T> {
  try {
    return await load();
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    const match = /Cannot find (?:package|module) '((?:@[^/']+\/)?[^/'.][^/']*)/.exec(error instanceof Error ? error.message : '');
    if (code === 'ERR_MODULE_NOT_FOUND' && match) {
      throw new MissingPeerError(`banksync ${command} needs the optional dependency ${match[1]}: npm install ${match[1]}`);
    }
    throw error;
  }
}

export interface ProviderSourceOptions {
  config?: string;
  sandboxUrl?: string;
  token?: string;
}

/** The configuration a command runs with: the config file, or every family pointed at a sandbox. */
export async function providerSource(opts: ProviderSourceOptions): Promise<{ config: BanksyncConfig; sandbox: boolean }> {
  if (opts.config && opts.sandboxUrl) throw new UsageError('give either --config or --sandbox-url, not both');
  if (opts.config) return { config: await loadConfig(opts.config), sandbox: false };
  if (opts.sandboxUrl) return { config: sandboxConfig(opts.sandboxUrl, opts.token ?? process.env.BANKSYNC_TOKEN ?? 'sandbox-token'), sandbox: true };
  throw new UsageError('either --config <file> (real providers) or --sandbox-url <url> (the sandbox) is required');
}

/** `db` (a SQLite file) wins; else the configured store. Each store's driver is loaded only when used. */
export async function openStore(command: string, db: string | undefined, configured: BanksyncConfig['store']): Promise<Store> {
  if (!db && configured && 'postgres' in configured) {
    const { PostgresStore } = await loadFor(command, () => import('../stores/postgres.js'));
    const { url, schema } = configured.postgres;
    return PostgresStore.open({ connectionString: url, ...(schema ? { schema } : {}), max: 2 });
  }
  const path = db ?? (configured && 'sqlite' in configured ? configured.sqlite : undefined);
  if (!path) throw new UsageError(`banksync ${command}: no store: give --db or a configuration with a store`);
  mkdirSync(dirname(path), { recursive: true });
  const { SqliteStore } = await loadFor(command, () => import('../stores/sqlite.js'));
  return SqliteStore.open(path);
}
