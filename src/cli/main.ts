/**
 * The `banksync` command line. Each command lives in `commands/<name>.ts` and registers itself here.
 * Usage errors (unknown command, bad option value) print a clear message and exit with code 2.
 */
import { Command, CommanderError } from 'commander';
import { registerDemo } from './commands/demo.js';
import { registerSandbox } from './commands/sandbox.js';
import { registerServe } from './commands/serve.js';
import { registerStatus } from './commands/status.js';
import { registerSync } from './commands/sync.js';
import { registerViz } from './commands/viz.js';
import { registerWorker } from './commands/worker.js';

export const EXIT_USAGE = 2;

export function buildProgram(): Command {
  const program = new Command()
    .name('banksync')
    .description('Durable bank-connection synchronization workflows (XState v5) against open-banking aggregators')
    .showHelpAfterError('(run `banksync --help` for usage)')
    .exitOverride();
  registerDemo(program);
  registerSync(program);
  registerSandbox(program);
  registerWorker(program);
  registerStatus(program);
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
    throw error;
  }
}

const isEntryPoint = process.argv[1] !== undefined && /banksync(\.js)?$|cli[\\/]main\.ts$/.test(process.argv[1]);
if (isEntryPoint) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (error: unknown) => {
      process.stderr.write(`banksync: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exit(1);
    },
  );
}
