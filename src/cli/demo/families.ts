/** Every provider family the demo runs, in table order. */
import { finxDemo } from './finx.js';
import type { DemoFamilyFactory } from './types.js';

export const DEMO_FAMILIES: readonly DemoFamilyFactory[] = [finxDemo];
