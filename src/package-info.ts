/** Where this package is installed and which version it is, from the compiled or the source tree alike. */
import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The folder holding banksync's package.json (the repository, or `node_modules/banksync`). */
export const PACKAGE_ROOT: string = (() => {
  let dir = dirname(fileURLToPath(import.meta.url));
  for (;;) {
    const manifest = join(dir, 'package.json');
    if (existsSync(manifest) && (JSON.parse(readFileSync(manifest, 'utf8')) as { name?: string }).name === 'banksync') return dir;
    const parent = dirname(dir);
    if (parent === dir) throw new Error('banksync: package.json not found above the installed files');
    dir = parent;
  }
})();

export const PACKAGE_VERSION: string = (JSON.parse(readFileSync(join(PACKAGE_ROOT, 'package.json'), 'utf8')) as { version: string }).version;
