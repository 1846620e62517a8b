/**
 * The `banksync` command line. Each command lives in `commands/<name>.ts` and registers itself here.
 * Usage errors (unknown command, bad option value) print a clear message and exit with code 2.
 */
import { Command, CommanderError } from 'commander';
import { BanksyncError } from '../engine/errors.js';
import { PACKAGE_VERSION } from '../package-info.js';
import { registerDemo } from './commands/demo.js';
import { registerPrune } from './commands/prune.js';
import { registerSandbox } from './commands/sandbox.js';
import { registerServe } from './commands/serve.js';
import { registerStatus } from './commands/status.js';
import { registerSync } from './commands/sync.js';
import { registerViz } from './commands/viz.js';
import { registerWorker } from './commands/worker.js';
import { MissingPeerError, UsageError } from './peers.js';

export const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command()
    .name('banksync')
    .description('Durable bank-connection synchronization workflows (XState v5) against open-banking aggregators')
    .version(PACKAGE_VERSION, '-V, --version', 'print the banksync version')
    .showHelpAfterError('(run `banksync --help` for usage)')
    .exitOverride();
  registerDemo(program);
  registerSync(program);
  registerSandbox(program);
  registerWorker(program);
  registerStatus(program);
  registerPrune(program);
  registerViz(program);
  registerServe(program);
  for (const command of program.commands) command.exitOverride().showHelpAfterError();
  return program;
}

export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
    return process.exitCode === undefined ? 0 : Number(process.exitCode);
  } catch (error) {
    if (error instanceof CommanderError) {
      // --help and --version end through here too, with exit code 0.
      return error.exitCode === 0 ? 0 : EXIT_USAGE;
    }
    // A bad configuration or combination of options: one line naming the problem, usage exit code.
    if (error instanceof UsageError || (error instanceof BanksyncError && error.code === 'INVALID_CONFIG')) {
      process.stderr.write(`banksync: ${error.message}\n`);
      return EXIT_USAGE;
    }
    if (error instanceof MissingPeerError) {
      process.stderr.write(`banksync: ${error.message}\n`);
      return 1;
    }
    throw error;
  }
}

/** Runs the CLI as a process: exit code from `main`, one line (no stack) for an unexpected error. */
export async function runCli(argv: string[]): Promise<void> {
  let code: number;
  try {
    code = await main(argv);
  } catch (error) {
    process.stderr.write(`banksync: ${error instanceof Error ? error.message : String(error)}\n`);
    code = 1;
  }
  process.exit(code);
}

// `tsx src/cli/main.ts ...` in development; the installed bin (bin/banksync.js) calls runCli itself.
if (process.argv[1] !== undefined && /cli[\\/]main\.ts$/.test(process.argv[1])) await runCli(process.argv.slice(2));
