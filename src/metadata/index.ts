/**
 * Builds the metadata store the config asks for: SQLite in the data directory by default,
 * PostgreSQL when given a `postgres://` URL.
 */
import { mkdir } from 'node:fs/promises'
import { dirname, join, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import { Kysely } from 'kysely'
import { KyselyMetadataStore } from './kysely-store.ts'
import { createPostgresDialect, createPostgresPool } from './postgres.ts'
import type { Database } from './schema.ts'
import { SecretBox } from './secret-box.ts'
import { NodeSqliteDialect } from './sqlite-dialect.ts'
import type { MetadataStore } from './store.ts'

export type { MetadataStore } from './store.ts'
export { KyselyMetadataStore } from './kysely-store.ts'
export { loadOrCreateSecretKey, parseSecretKey, SecretBox } from './secret-box.ts'

/** File name of the embedded SQLite database inside the data directory */
export const SQLITE_FILE = 'atlas.db'

export interface CreateMetadataStoreInit {
  /**
   * Where the metadata lives:
   * - absent, empty or `sqlite:` → `<dataDir>/atlas.db`;
   * - `sqlite:<path>`, `sqlite://<path>`, `file:` URL or a plain path → that SQLite file
   *   (`sqlite::memory:` for an in-memory database);
   * - `postgres://…` or `postgresql://…` → PostgreSQL.
   */
  url?: string
  /** The data directory (created when missing) */
  dataDir: string
  /** 32-byte key that seals access-key secrets (see `loadOrCreateSecretKey`) */
  secretKey: Uint8Array
  logger?: { warn(...args: unknown[]): void }
}

/** Where a metadata URL points, as `createMetadataStore` reads it. */
export type MetadataLocation =
  | { dialect: 'sqlite', path: string }
  | { dialect: 'postgres', url: string }

/**
 * Read a metadata URL.
 *
 * @throws Error for a scheme that is neither SQLite nor PostgreSQL; the message leaves the URL
 * out, since a PostgreSQL URL may carry a password
 */
export function parseMetadataUrl (url: string | undefined, dataDir: string): MetadataLocation {
  const value = url?.trim() ?? ''
  if (value === '') return { dialect: 'sqlite', path: join(dataDir, SQLITE_FILE) }
  if (/^postgres(ql)?:\/\//i.test(value)) return { dialect: 'postgres', url: value }
  if (/^sqlite:/i.test(value)) {
    const rest = value.slice('sqlite:'.length).replace(/^\/\//, '')
    if (rest === '') return { dialect: 'sqlite', path: join(dataDir, SQLITE_FILE) }
    return { dialect: 'sqlite', path: rest === ':memory:' ? rest : resolve(rest) }
  }
  if (/^file:/i.test(value)) return { dialect: 'sqlite', path: fileURLToPath(value) }
  // Anything else with a scheme is a mistake; a Windows drive letter is not a scheme
  if (/^[a-z][a-z0-9+.-]+:/i.test(value)) {
    throw new Error(`Unsupported metadata URL scheme ${value.slice(0, value.indexOf(':') + 1)} (use sqlite: or postgres://)`)
  }
  return { dialect: 'sqlite', path: resolve(value) }
}

/**
 * Open the metadata store and bring its schema up to date. Migrating on every start is safe,
 * also from several replicas at once (see `migrateToLatest`).
 */
export async function createMetadataStore (init: CreateMetadataStoreInit): Promise<MetadataStore> {
  const location = parseMetadataUrl(init.url, init.dataDir)
  const secretBox = new SecretBox(init.secretKey)
  let store: KyselyMetadataStore
  if (location.dialect === 'postgres') {
    const pool = createPostgresPool({ url: location.url, logger: init.logger })
    const db = new Kysely<Database>({ dialect: createPostgresDialect(pool) })
    store = new KyselyMetadataStore({ db, dialect: 'postgres', secretBox, logger: init.logger })
  } else {
    if (location.path !== ':memory:') await mkdir(dirname(location.path), { recursive: true })
    const db = new Kysely<Database>({ dialect: new NodeSqliteDialect({ path: location.path }) })
    store = new KyselyMetadataStore({ db, dialect: 'sqlite', secretBox, logger: init.logger })
  }
  try {
    await store.migrate()
  } catch (err) {
    await store.close().catch(() => {})
    throw err
  }
  return store
}
