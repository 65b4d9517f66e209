/**
 * The metadata store suite on SQLite (node:sqlite), one fresh database file per test.
 */
import { randomBytes } from 'node:crypto'
import { mkdtemp, rm } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { Kysely } from 'kysely'
import { createMetadataStore } from '../../src/metadata/index.ts'
import { KyselyMetadataStore } from '../../src/metadata/kysely-store.ts'
import { migrateTo } from '../../src/metadata/migrations/index.ts'
import type { Database } from '../../src/metadata/schema.ts'
import { SecretBox } from '../../src/metadata/secret-box.ts'
import { NodeSqliteDialect } from '../../src/metadata/sqlite-dialect.ts'
import type { MetadataStore } from '../../src/metadata/store.ts'
import { metadataStoreTests } from './metadata-store.ts'

const dirs = new Map<MetadataStore, string>()

metadataStoreTests('sqlite', {
  async setup () {
    const dataDir = await mkdtemp(join(tmpdir(), 'atlas-meta-'))
    const store = await createMetadataStore({ dataDir, secretKey: randomBytes(32) })
    dirs.set(store, dataDir)
    return store
  },
  async teardown (store) {
    await store.close()
    const dir = dirs.get(store)
    dirs.delete(store)
    if (dir !== undefined) await rm(dir, { recursive: true, force: true })
  },
  async rawAccessKeyRow (store, accessKeyId) {
    if (!(store instanceof KyselyMetadataStore)) throw new TypeError('expected a KyselyMetadataStore')
    return await store.db.selectFrom('access_keys').selectAll().where('access_key_id', '=', accessKeyId).executeTakeFirst()
  },
  async storeAtMigration (migration) {
    const dataDir = await mkdtemp(join(tmpdir(), 'atlas-meta-old-'))
    const db = new Kysely<Database>({ dialect: new NodeSqliteDialect({ path: join(dataDir, 'atlas.db') }) })
    const store = new KyselyMetadataStore({ db, dialect: 'sqlite', secretBox: new SecretBox(randomBytes(32)) })
    dirs.set(store, dataDir)
    await migrateTo(db, 'sqlite', migration)
    return { store, db }
  }
})
