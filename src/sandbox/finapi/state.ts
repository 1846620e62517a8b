/** finAPI sandbox state: connections, tasks, web forms and accounts as the simulation keeps them. */
import type { AccountSpec, Fault, FinapiScenarioName, ScenarioDefinition, TaskStep, V1AccountType } from './scenarios.js';

// ---------------------------------------------------------------------------------------------------------
// State
// ---------------------------------------------------------------------------------------------------------

export interface FinapiConnectionStats {
  [counter: string]: number | string;
  scenario: string;
  /** Background update tasks created (accepted POSTs, including a "lost" 201). */
  tasksCreated: number;
  /** Every backgroundUpdate POST, whatever the answer. */
  triggers: number;
  /** POSTs answered 423 LOCKED (scripted batch update, or an update still running). */
  overlaps: number;
  /** Every read of this connection's task, web form, bank connection or accounts. */
  polls: number;
  taskReads: number;
  webFormReads: number;
  connectionReads: number;
  accountReads: number;
  /** Times the user opened a web form page. */
  webFormsOpened: number;
  /** Callback deliveries attempted (each at most once). */
  callbacks: number;
  callbackFailures: number;
}

export interface AccountState {
  id: number;
  name: string;
  type: V1AccountType;
  iban: string;
  isNew: boolean;
  status: string;
  finalStatus: string;
  downloadReads: number;
}

export interface WebFormState {
  id: string;
  url: string;
  task: TaskState;
  createdAt: number;
  expiresAt: number;
  status: string;
  errorCode: string | null;
  readsLeft: number;
}

export interface TaskState {
  id: string;
  seq: number;
  connection: ConnectionState;
  createdAt: number;
  steps: readonly TaskStep[];
  step: number;
  status: string;
  errorCode: string | null;
  webForm: WebFormState | null;
  callbacks: { webFormRequired?: string; finalised?: string };
  importTypes: readonly V1AccountType[] | null;
  /** webFormRequired callbacks held back until finalised (out-of-order mode). */
  held: unknown[];
}

export interface ConnectionState {
  id: number;
  scenario: FinapiScenarioName;
  def: ScenarioDefinition;
  accounts: AccountState[];
  available: AccountSpec[];
  tasks: TaskState[];
  /** Index into def.update once the update ran; -1 before (connection READY, or locked while the task runs). */
  updateStep: number;
  categorizationStep: number;
  updateStatus: string;
  categorizationStatus: string;
  lastManualUpdate: { result: string; errorMessage: string | null; errorType: string | null; timestamp: string } | null;
  userActionRequired: boolean;
  faults: {
    trigger: (423 | 429 | 503)[];
    lostTriggerResponses: number;
    task: Fault[];
    webForm: Fault[];
    connection: Fault[];
    accounts: Fault[];
  };
  stats: FinapiConnectionStats;
}

export const TASK_FINAL = new Set(['COMPLETED', 'COMPLETED_WITH_ERROR']);
export const WEB_FORM_OPEN = new Set(['NOT_YET_OPENED', 'IN_PROGRESS']);
