/** Every provider family the demo runs, in table order. */
import { finxDemo } from './finx.js';
import { xs2aDemo } from './xs2a.js';
import { wealthapiDemo } from './wealthapi.js';
import { finapiDemo } from './finapi.js';
import type { DemoFamilyFactory } from './types.js';

export const DEMO_FAMILIES: readonly DemoFamilyFactory[] = [finxDemo, finapiDemo, xs2aDemo, wealthapiDemo];
