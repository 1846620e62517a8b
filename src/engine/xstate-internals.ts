/**
 * Every piece of XState's private surface the engine relies on, in one place. The engine owns an actor's
 * timers durably, so it reads XState's scheduled events (`system.getSnapshot()._scheduledEvents`, not part
 * of the typed API), re-arms them under their own ids after a restore, fires them early by sending the
 * `xstate.after.*` event itself, reads an invoked promise actor's `input` from its snapshot, and steps pure
 * machines through a hand-built inert actor scope.
 *
 * None of this is covered by XState's semver: test/engine/xstate-internals.test.ts pins each function to
 * CHECKED_XSTATE_VERSION on a real machine, so an upgrade that changes them fails there, loudly, first.
 */
import { createActor, type AnyActorRef, type AnyStateMachine, type EventObject } from 'xstate';

/** The xstate version these internals were checked against (see the test named above). */
export const CHECKED_XSTATE_VERSION = '5.33.3';

/**
 * A delayed event an actor has scheduled. The object is XState's own record: it is the same object on
 * every listing for as long as the event stays scheduled, so it can key a WeakMap.
 */
export interface ScheduledEvent {
  readonly id: string;
  readonly event: { readonly type: string };
  /** The delay it was scheduled with, in ms (not the time left). */
  readonly delay: number;
}

type ScheduledEvents = Record<string, ScheduledEvent & { source: unknown }>;
interface SystemInternals {
  /** The live record `getSnapshot()` copies (read once per macrostep: no copy needed). */
  _snapshot?: { _scheduledEvents?: ScheduledEvents };
  getSnapshot(): { _scheduledEvents: ScheduledEvents };
}

/** The delayed events `actor` has scheduled for itself, in XState's insertion order. */
export function listScheduledEvents(actor: AnyActorRef): ScheduledEvent[] {
  const system = actor.system as unknown as SystemInternals;
  const scheduled = system._snapshot?._scheduledEvents ?? system.getSnapshot()._scheduledEvents;
  const own: ScheduledEvent[] = [];
  for (const id in scheduled) {
    const event = scheduled[id]!;
    if (event.source === actor) own.push(event);
  }
  return own;
}

/**
 * Schedules `event` to `actor` itself after `delay` ms under `id`. Scheduled under the id XState gives the
 * `after` transition, a state's exit cancels it as if XState had scheduled it.
 */
export function scheduleEvent(actor: AnyActorRef, event: EventObject, delay: number, id: string): void {
  actor.system.scheduler.schedule(actor, actor, event, delay, id);
}

/** Cancels the delayed event `id` of `actor` (a no-op when none is scheduled under that id). */
export function cancelScheduledEvent(actor: AnyActorRef, id: string): void {
  actor.system.scheduler.cancel(actor, id);
}

/**
 * Fires the delayed event `id` now: cancels its timer and sends its event as the scheduler would. An
 * `after` event (`xstate.after.*`) is internal to XState and not part of the machine's event type.
 */
export function fireScheduledEvent(actor: AnyActorRef, id: string, eventType: string): void {
  cancelScheduledEvent(actor, id);
  actor.send({ type: eventType });
}

/** The input an invoked child actor (e.g. a fromPromise effect) was started with, if it has one. */
export function childInput<T>(child: AnyActorRef | undefined): T | undefined {
  return (child?.getSnapshot() as { input?: T } | undefined)?.input;
}

/**
 * An actor scope that runs nothing (as XState's own inert scope), for stepping a pure machine with its own
 * `getInitialSnapshot(scope, input)` / `transition(snapshot, event, scope)`. XState's `getInitialSnapshot` /
 * `getNextSnapshot` build a throwaway actor and system per call, and since that actor gets no input, a machine
 * whose context reads `input` throws (and XState catches) a TypeError each time: most of a step's cost. Build
 * one scope per machine with an `input` its context accepts, and reuse it. Only for machines without effects,
 * children or delays.
 */
export function inertActorScope<TScope>(machine: AnyStateMachine, input: unknown): TScope {
  const self = createActor(machine, { input });
  return {
    self,
    id: '',
    sessionId: '',
    logger: () => {},
    defer: () => {},
    emit: () => {},
    system: self.system,
    stopChild: () => {},
    actionExecutor: () => {},
  } as unknown as TScope;
}
