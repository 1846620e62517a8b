import { describe, expect, it } from 'vitest';
import { MemoryStore } from '../../src/stores/memory.js';
import { storeConformanceSuite } from './conformance.js';

storeConformanceSuite('memory', async () => new MemoryStore());

describe('MemoryStore specifics', () => {
  it('has kind "memory"', () => {
    expect(new MemoryStore().kind).toBe('memory');
  });

  it('rejects calls after close', async () => {
    const store = new MemoryStore();
    await store.close();
    await store.close(); // idempotent
    await expect(store.getSync('x')).rejects.toThrow(/closed/);
  });
});
