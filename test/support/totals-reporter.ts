/**
 * Prints vitest's totals as the run's last line, `N passed, N failed, N skipped`, which CI reads as the
 * run's test count.
 */
import type { Reporter, TestModule } from 'vitest/node';

export default class TotalsReporter implements Reporter {
  private line = '';

  onTestRunEnd(testModules: ReadonlyArray<TestModule>): void {
    let passed = 0;
    let failed = 0;
    let skipped = 0;
    for (const module of testModules) {
      for (const test of module.children.allTests()) {
        const state = test.result().state;
        if (state === 'passed') passed++;
        else if (state === 'failed') failed++;
        else skipped++;
      }
      // A file that failed to load counts as a failure even though it reported no tests.
      if (module.state() === 'failed' && [...module.children.allTests()].length === 0) failed++;
    }
    this.line = `${passed} passed, ${failed} failed, ${skipped} skipped`;
  }

  // The default reporter prints its summary in onFinished, after onTestRunEnd: print ours after it.
  onFinished(): void {
    if (this.line) process.stdout.write(`\n${this.line}\n`);
  }
}
