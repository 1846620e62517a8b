/**
 * A virtual clock for the benchmarks: timers fire only when the driver advances time, in due order.
 *
 * Why not xstate's SimulatedClock: its flush copies and sorts every pending timeout on each increment (and
 * restarts the flush when a timer is set or cleared while flushing), so each tick costs O(T log T) in the number
 * of parked timers (every hosted sync holds a 1 h deadline timer, every sync waiting for the user two). This
 * clock keeps an indexed binary min-heap instead: O(log T) set/clear/fire, so a tick costs only for the timers
 * that fire, and a cleared timer is removed at once (nothing lingers to skew the memory figures).
 * It satisfies both the engine's `Clock` and XState's clock option.
 */
import type { Clock } from '../src/engine/clock.js';

interface Timer {
  id: number;
  due: number;
  /** Insertion order: ties fire first-in, first-out. */
  seq: number;
  fn: () => void;
  index: number;
}

export class VirtualClock implements Clock {
  private current: number;
  private nextId = 1;
  private nextSeq = 0;
  private readonly heap: Timer[] = [];
  private readonly byId = new Map<number, Timer>();

  constructor(start = Date.parse('2025-03-01T09:00:00.000Z')) {
    this.current = start;
  }

  now(): number {
    return this.current;
  }

  get pending(): number {
    return this.heap.length;
  }

  setTimeout(fn: (...args: unknown[]) => void, ms: number): number {
    const timer: Timer = {
      id: this.nextId++,
      due: this.current + Math.max(0, ms),
      seq: this.nextSeq++,
      fn: fn as () => void,
      index: this.heap.length,
    };
    this.heap.push(timer);
    this.byId.set(timer.id, timer);
    this.up(timer.index);
    return timer.id;
  }

  clearTimeout(handle: unknown): void {
    const timer = this.byId.get(handle as number);
    if (timer) this.remove(timer);
  }

  /** Moves time forward by `ms`, firing every timer that falls due (including ones set while firing). */
  advance(ms: number): number {
    const target = this.current + ms;
    let fired = 0;
    for (;;) {
      const top = this.heap[0];
      if (!top || top.due > target) break;
      this.remove(top);
      if (top.due > this.current) this.current = top.due;
      top.fn();
      fired++;
    }
    this.current = target;
    return fired;
  }

  private remove(timer: Timer): void {
    this.byId.delete(timer.id);
    const last = this.heap.pop()!;
    if (last !== timer) {
      this.heap[timer.index] = last;
      last.index = timer.index;
      this.down(last.index);
      this.up(last.index);
    }
    timer.index = -1;
  }

  private less(a: Timer, b: Timer): boolean {
    return a.due < b.due || (a.due === b.due && a.seq < b.seq);
  }

  private up(i: number): void {
    const heap = this.heap;
    const item = heap[i]!;
    while (i > 0) {
      const parentIndex = (i - 1) >> 1;
      const parent = heap[parentIndex]!;
      if (!this.less(item, parent)) break;
      heap[i] = parent;
      parent.index = i;
      i = parentIndex;
    }
    heap[i] = item;
    item.index = i;
  }

  private down(i: number): void {
    const heap = this.heap;
    const n = heap.length;
    const item = heap[i]!;
    for (;;) {
      const l = 2 * i + 1;
      if (l >= n) break;
      const r = l + 1;
      const child = r < n && this.less(heap[r]!, heap[l]!) ? r : l;
      if (!this.less(heap[child]!, item)) break;
      heap[i] = heap[child]!;
      heap[i]!.index = i;
      i = child;
    }
    heap[i] = item;
    item.index = i;
  }
}
