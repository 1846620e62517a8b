/**
 * Strict zod mirrors of the xs2a.api models FinTecSystems publishes in its SDK (FinTecSystems/xs2a-nodejs,
 * src/lib/models/api/bank-connection.ts, src/lib/models/session.ts, src/lib/models/country.ts), written from those
 * models' facts, independent of the sandbox and of the adapter's own schemas. TypeScript `?` fields are read as
 * absent or null (the models cannot say which; left open by the publisher).
 */
import { z } from 'zod';

export const Country = z.enum(['DE', 'AT', 'CH', 'FR', 'ES', 'IT', 'GB']);
export const SyncMode = z.enum(['full', 'shared', 'none']);

export const BankConnection = z
  .object({
    id: z.string(),
    transaction: z.string(),
    bic: z.string().nullish(),
    bank_name: z.string(),
    country_id: Country.nullish(),
    sync_mode: SyncMode.nullish(),
    sync_active: z.boolean(),
    /** `string` in the model; null until a sync failed in practice (left open). */
    sync_message: z.string().nullable(),
    sync_fail_counter: z.number().int(),
    /** `string` in the model; null before the first sync in practice (left open). */
    last_synced: z.string().nullable(),
    /** "Format: YYYY-MM-DD". */
    consent_valid_until: z.string().regex(/^\d{4}-\d{2}-\d{2}$/).nullish(),
    testmode: z.boolean(),
    created_at: z.string(),
    object: z.string(),
  })
  .strict();

export const BankConnectionList = z
  .object({
    total: z.number().int(),
    per_page: z.number().int(),
    current_page: z.number().int(),
    last_page: z.number().int(),
    next_page_url: z.string().nullish(),
    prev_page_url: z.string().nullish(),
    from: z.number().int().nullish(),
    to: z.number().int().nullish(),
    data: z.array(BankConnection),
  })
  .strict();

export const SessionResponse = z.object({ wizard_session_key: z.string(), transaction: z.string() }).strict();

export const BankConnectionSyncRequest = z.object({ credentials: z.string().optional(), force: z.boolean().optional() }).strict();

/** The schema of a response body by route and status (undefined: no published model, e.g. error bodies). */
export function responseSchema(method: string, path: string, status: number): z.ZodType | undefined {
  const p = path.split('?')[0]!;
  if (status >= 400 || status === 204) return undefined;
  if (p === '/api/v1/bank-connections') return method === 'GET' ? BankConnectionList : BankConnection;
  if (/^\/api\/v1\/bank-connections\/[^/]+$/.test(p) && method === 'GET') return BankConnection;
  if (/^\/api\/v1\/bank-connections\/[^/]+\/(sync|reset)$/.test(p) && status === 202) return SessionResponse;
  return undefined;
}
