/** `banksync/sqlite`: the embedded store (better-sqlite3, WAL). Needs the optional peer `better-sqlite3`. */
export { SqliteStore, SQLITE_MIGRATIONS, type SqliteMigration } from '../stores/sqlite.js';
