#!/usr/bin/env node
// The installed CLI: compiled JavaScript, plain node (`npm run build` writes dist/; `npm ci` runs it).
import { runCli } from '../dist/src/cli/main.js';

await runCli(process.argv.slice(2));
