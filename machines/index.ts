/** Every machine of banksync, by file name: the viz generator and the diagram freshness test walk this list. */
import type { AnyStateMachine } from 'xstate';
import { connectionMachine } from './connection.js';
import { synchronizationMachine } from './synchronization.js';
import { xs2aConnectionMachine } from './xs2aConnection.js';
import { wealthUpdateMachine } from './wealthUpdate.js';
import { finapiTaskMachine } from './finapiTask.js';

export const machines: Record<string, AnyStateMachine> = {
  synchronization: synchronizationMachine,
  xs2aConnection: xs2aConnectionMachine,
  wealthUpdate: wealthUpdateMachine,
  connection: connectionMachine,
  finapiTask: finapiTaskMachine,
};
