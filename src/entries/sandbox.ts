/**
 * `banksync/sandbox`: the provider sandbox (an HTTP server speaking each family's endpoints with scripted
 * scenarios), for integration tests of services that embed banksync. Needs the optional peer `fastify`.
 */
export { startSandbox, DEFAULT_PROVIDERS, type Sandbox, type SandboxOptions } from '../sandbox/server.js';
