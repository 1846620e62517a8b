/** Adapter factories by provider family name, for the CLI, worker processes and configuration files. */
import { createFinxAdapter } from './finx/index.js';
import { createXs2aAdapter } from './xs2a/index.js';
import { createWealthAdapter } from './wealthapi/index.js';
import { createFinapiAdapter } from './finapi/index.js';
import type { ProviderAuth } from './auth.js';
import type { ProviderAdapter } from './types.js';

export interface AdapterEndpoint {
  /** Base URL of the provider API (for the sandbox: `${sandboxUrl}/${family}`). */
  baseUrl: string;
  /** How to authenticate; see `ProviderAuth`. */
  auth?: ProviderAuth;
  /** Shorthand for the family's static credential (bearer token; xs2a: API key). Never logged. */
  token?: string;
  timeoutMs?: number;
  /** finAPI: the Web Form 2.0 API root. */
  webFormBaseUrl?: string;
  /** finAPI: default callback URL (HTTPS). */
  callbackUrl?: string;
  /** xs2a: where users complete wizard sessions. */
  wizardBaseUrl?: string;
}

export const PROVIDER_FAMILIES = ['finx', 'finapi', 'xs2a', 'wealthapi'] as const;
export type ProviderFamily = (typeof PROVIDER_FAMILIES)[number];

const factories: Record<ProviderFamily, (endpoint: AdapterEndpoint) => ProviderAdapter> = {
  finx: ({ baseUrl, auth, token, timeoutMs }) => createFinxAdapter({ baseUrl, ...credentials(auth, token), ...(timeoutMs ? { timeoutMs } : {}) }),
  xs2a: ({ baseUrl, auth, token, timeoutMs, wizardBaseUrl }) =>
    createXs2aAdapter({ baseUrl, ...credentials(auth, token), ...(timeoutMs ? { timeoutMs } : {}), ...(wizardBaseUrl ? { wizardBaseUrl } : {}) }),
  wealthapi: ({ baseUrl, auth, token, timeoutMs }) => createWealthAdapter({ baseUrl, ...credentials(auth, token), ...(timeoutMs ? { timeoutMs } : {}) }),
  finapi: ({ baseUrl, auth, token, timeoutMs, webFormBaseUrl, callbackUrl }) =>
    createFinapiAdapter({
      baseUrl,
      ...credentials(auth, token),
      ...(timeoutMs ? { timeoutMs } : {}),
      ...(webFormBaseUrl ? { webFormBaseUrl } : {}),
      ...(callbackUrl ? { callbackUrl } : {}),
    }),
};

function credentials(auth: ProviderAuth | undefined, token: string | undefined): { auth?: ProviderAuth; token?: string } {
  return auth ? { auth } : token ? { token } : {};
}

export function createAdapter(family: ProviderFamily, endpoint: AdapterEndpoint): ProviderAdapter {
  return factories[family](endpoint);
}

/** Adapters for every family, pointed at one sandbox. */
export function sandboxAdapters(sandboxUrl: string, token = 'sandbox-token'): Record<string, ProviderAdapter> {
  return Object.fromEntries(PROVIDER_FAMILIES.map((family) => [family, createAdapter(family, { baseUrl: `${sandboxUrl}/${family}`, token })]));
}
