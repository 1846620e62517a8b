/** Adapter factories by provider family name, for the CLI and worker processes. */
import { createFinxAdapter } from './finx/index.js';
import { createXs2aAdapter } from './xs2a/index.js';
import { createWealthAdapter } from './wealthapi/index.js';
import { createFinapiAdapter } from './finapi/index.js';
import type { ProviderAdapter } from './types.js';

export interface AdapterEndpoint {
  /** Base URL of the provider API (for the sandbox: `${sandboxUrl}/${family}`). */
  baseUrl: string;
  /** API token / client secret; never logged. */
  token: string;
}

export const PROVIDER_FAMILIES = ['finx', 'finapi', 'xs2a', 'wealthapi'] as const;
export type ProviderFamily = (typeof PROVIDER_FAMILIES)[number];

const factories: Record<ProviderFamily, (endpoint: AdapterEndpoint) => ProviderAdapter> = {
  finx: (endpoint) => createFinxAdapter(endpoint),
  xs2a: (endpoint) => createXs2aAdapter(endpoint),
  wealthapi: (endpoint) => createWealthAdapter(endpoint),
  finapi: (endpoint) => createFinapiAdapter(endpoint),
};

export function createAdapter(family: ProviderFamily, endpoint: AdapterEndpoint): ProviderAdapter {
  return factories[family](endpoint);
}

/** Adapters for every family, pointed at one sandbox. */
export function sandboxAdapters(sandboxUrl: string, token = 'sandbox-token'): Record<string, ProviderAdapter> {
  return Object.fromEntries(PROVIDER_FAMILIES.map((family) => [family, createAdapter(family, { baseUrl: `${sandboxUrl}/${family}`, token })]));
}
