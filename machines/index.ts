/** Every machine of banksync, by file name: the viz generator and the diagram freshness test walk this list. */
import type { AnyStateMachine } from 'xstate';
import { connectionMachine } from './connection.js';
import { synchronizationMachine } from './synchronization.js';

export const machines: Record<string, AnyStateMachine> = {
  synchronization: synchronizationMachine,
  connection: connectionMachine,
};
