/**
 * WAL checkpoints on a worker thread. A checkpoint copies the WAL's pages back into the database file and
 * syncs it; on the writer's thread it stalls every commit queued behind it. A second connection may checkpoint
 * while the writer goes on (PASSIVE: it never blocks or waits for the writer), so a worker thread does it.
 * The writer only bumps a shared counter per write group; the worker checkpoints at most once per interval,
 * and twice in a row, so the second pass usually backfills the frames written during the first and the writer
 * can restart the WAL from its beginning (which keeps the file small under steady load).
 */
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';

/** How often the worker looks for new writes; longer intervals copy a page rewritten in between only once. */
export const CHECKPOINT_INTERVAL_MS = 2_000;

// CommonJS run by `new Worker(…, { eval: true })`: no file to locate under tsx, vitest or the built package.
const WORKER_SOURCE = `
const { parentPort, workerData } = require('node:worker_threads');
const Database = require(workerData.driver);
const writes = new Int32Array(workerData.writes);
const db = new Database(workerData.path, { fileMustExist: true });
const timer = setInterval(() => {
  if (Atomics.exchange(writes, 0, 0) === 0) return;
  try {
    db.pragma('wal_checkpoint(PASSIVE)');
    db.pragma('wal_checkpoint(PASSIVE)');
  } catch {
    // Busy or failing: the next interval tries again; the writer's automatic checkpoint backs this up.
  }
}, workerData.intervalMs);
parentPort.once('message', () => {
  clearInterval(timer);
  db.close();
  parentPort.close();
});
`;

export class BackgroundCheckpointer {
  readonly #worker: Worker;
  readonly #writes: Int32Array;
  readonly #exited: Promise<void>;
  #running = true;

  private constructor(worker: Worker, writes: Int32Array) {
    this.#worker = worker;
    this.#writes = writes;
    this.#exited = new Promise((resolve) =>
      worker.once('exit', () => {
        this.#running = false;
        resolve();
      }),
    );
  }

  /** False once the worker has ended (closed, or failed): the writer then checkpoints itself. */
  get running(): boolean {
    return this.#running;
  }

  /** Starts the checkpointer of the database file at `path`, or returns null if no worker can run here. */
  static start(path: string, intervalMs = CHECKPOINT_INTERVAL_MS): BackgroundCheckpointer | null {
    const shared = new SharedArrayBuffer(4);
    let worker: Worker;
    try {
      const driver = createRequire(import.meta.url).resolve('better-sqlite3');
      worker = new Worker(WORKER_SOURCE, { eval: true, workerData: { path, driver, writes: shared, intervalMs } });
    } catch {
      return null;
    }
    // Never keeps the process alive, and an error in it (e.g. the file removed) only ends the background checkpoints.
    worker.unref();
    worker.on('error', () => {});
    return new BackgroundCheckpointer(worker, new Int32Array(shared));
  }

  /** The writer committed a group: checkpoint at the next interval. */
  wrote(): void {
    Atomics.add(this.#writes, 0, 1);
  }

  /** Stops the worker and closes its connection (before the writer closes, so the last close folds the WAL in). */
  async close(): Promise<void> {
    if (this.#running) {
      // Referenced again until it has exited: otherwise nothing would keep the process waiting for it.
      this.#worker.ref();
      this.#worker.postMessage('close');
    }
    await this.#exited;
  }
}
