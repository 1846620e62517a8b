/** pino with redaction of everything that could hold a secret, as a second line of defence. */
import { pino, type DestinationStream, type Logger } from 'pino';

export const REDACTED_PATHS = [
  'token',
  'password',
  'credentials',
  'response',
  'tan',
  'secret',
  'authorization',
  '*.token',
  '*.password',
  '*.credentials',
  '*.response',
  '*.tan',
  '*.secret',
  '*.authorization',
  'headers.authorization',
  'req.headers.authorization',
];

export type { Logger };

export function createLogger(options: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const config = { level: options.level ?? 'info', redact: { paths: REDACTED_PATHS, censor: '[redacted]' } };
  return options.destination ? pino(config, options.destination as DestinationStream) : pino(config);
}

export const silentLogger: Logger = pino({ level: 'silent' });
