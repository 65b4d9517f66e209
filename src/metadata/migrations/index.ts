/**
 * The migrations, listed in code (no directory globbing, so bundling or a different working
 * directory cannot lose one), and the function that runs them.
 *
 * Names sort in the order they apply. A migration that is released is never edited: a change to
 * the schema is a new entry here.
 */
import type { Kysely } from 'kysely'
import { Migrator } from 'kysely/migration'
import type { Migration, MigrationProvider, MigrationResultSet } from 'kysely/migration'
import type { DialectName } from '../schema.ts'
import * as initial from './0001-initial.ts'
import * as multipartTagsChecksums from './0002-multipart-tags-checksums.ts'
import * as billing from './0003-billing.ts'
import * as chain from './0004-chain.ts'
import * as holdResponses from './0005-hold-responses.ts'

interface AtlasMigration {
  up(db: Kysely<any>, dialect: DialectName): Promise<void>
  down?(db: Kysely<any>, dialect: DialectName): Promise<void>
}

/** Every migration, by name. */
export const MIGRATIONS: Readonly<Record<string, AtlasMigration>> = {
  '0001-initial': initial,
  '0002-multipart-tags-checksums': multipartTagsChecksums,
  '0003-billing': billing,
  '0004-chain': chain,
  '0005-hold-responses': holdResponses
}

/** Kysely's bookkeeping tables, named so that they do not collide with another app's. */
export const MIGRATION_TABLE = 'atlas_migration'
export const MIGRATION_LOCK_TABLE = 'atlas_migration_lock'

/** Hands Kysely's migrator the migrations above, bound to one dialect. */
export class StaticMigrationProvider implements MigrationProvider {
  readonly #dialect: DialectName

  constructor (dialect: DialectName) {
    this.#dialect = dialect
  }

  async getMigrations (): Promise<Record<string, Migration>> {
    const dialect = this.#dialect
    return Object.fromEntries(Object.entries(MIGRATIONS).map(([name, m]) => {
      const down = m.down
      const migration: Migration = {
        up: async db => { await m.up(db, dialect) },
        ...(down === undefined ? {} : { down: async (db: Kysely<any>) => { await down(db, dialect) } })
      }
      return [name, migration]
    }))
  }
}

/**
 * Apply every pending migration, all in one transaction (both dialects roll back DDL), so a
 * failure leaves the schema as it was.
 *
 * Safe when several processes start at once: on PostgreSQL, Kysely's migrator holds a
 * session-level advisory lock (`pg_advisory_lock`) from before it reads the applied migrations
 * until after it commits, so a second process waits and then finds nothing left to do. On SQLite
 * each migration transaction begins IMMEDIATE (see `sqlite-dialect.ts`), which serialises writers
 * to the file.
 *
 * @returns the names of the migrations applied by this call
 */
export async function migrateToLatest (db: Kysely<any>, dialect: DialectName): Promise<string[]> {
  return await migrate(db, dialect, async migrator => await migrator.migrateToLatest())
}

/**
 * Apply the pending migrations up to and including `name`, no further: for tests and tools that
 * need a database as an older release left it (an upgrade test starts from there).
 *
 * @returns the names of the migrations applied by this call
 */
export async function migrateTo (db: Kysely<any>, dialect: DialectName, name: string): Promise<string[]> {
  if (!Object.hasOwn(MIGRATIONS, name)) throw new Error(`No migration ${name}`)
  return await migrate(db, dialect, async migrator => await migrator.migrateTo(name))
}

async function migrate (db: Kysely<any>, dialect: DialectName, run: (migrator: Migrator) => Promise<MigrationResultSet>): Promise<string[]> {
  const migrator = new Migrator({
    db,
    provider: new StaticMigrationProvider(dialect),
    migrationTableName: MIGRATION_TABLE,
    migrationLockTableName: MIGRATION_LOCK_TABLE
  })
  const { error, results = [] } = await run(migrator)
  if (error !== undefined) {
    const failed = results.find(r => r.status === 'Error')?.migrationName
    throw new Error(failed === undefined ? 'Metadata migration failed' : `Metadata migration ${failed} failed`, { cause: error })
  }
  return results.filter(r => r.status === 'Success').map(r => r.migrationName)
}
