/** The credential checks every sandbox family runs, against the sandbox's shared SandboxAuth (../auth.ts). */
import type { FastifyRequest } from 'fastify';
import type { SandboxAuth } from '../auth.js';

/** `Bearer <token>`: a static token of `tokens` (any when null) or a live token this sandbox issued to `family`. */
export function bearerAccepted(auth: SandboxAuth, family: string, request: FastifyRequest, tokens: ReadonlySet<string> | null): boolean {
  return auth.bearer(family, request.headers.authorization, tokens) === 'ok';
}

/** xs2a.api: the API key as HTTP Basic password of user `api` (how FinTecSystems' SDKs send it), never a bearer token. */
export function apiKeyAccepted(auth: SandboxAuth, request: FastifyRequest, keys: ReadonlySet<string> | null): boolean {
  return auth.basicApiKey(request.headers.authorization, keys) === 'ok';
}
