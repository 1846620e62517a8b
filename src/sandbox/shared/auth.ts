/** Bearer-token check shared by every sandbox family. */
import type { FastifyRequest } from 'fastify';

/** A `Bearer <token>` header with a token of `tokens` (any non-empty token when `tokens` is null). */
export function bearerAccepted(request: FastifyRequest, tokens: ReadonlySet<string> | null): boolean {
  const header = request.headers.authorization;
  if (typeof header !== 'string') return false;
  const match = /^Bearer\s+(\S+)\s*$/i.exec(header);
  if (!match) return false;
  return tokens ? tokens.has(match[1]!) : true;
}
