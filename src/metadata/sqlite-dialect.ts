/**
 * A Kysely dialect over Node's built-in `node:sqlite` (`DatabaseSync`), so the embedded default
 * needs no native addon. Kysely's own SQLite adapter, introspector and query compiler do the SQL;
 * this file supplies the driver and the connection.
 *
 * One `DatabaseSync` is one connection. Kysely already serialises access for adapters that do not
 * support several connections; the driver keeps its own mutex as well so that it stays correct
 * on its own (a transaction holds the connection from `begin` to `commit`, and nothing else runs
 * on it in between).
 */
import { DatabaseSync } from 'node:sqlite'
import type { SQLInputValue, StatementSync } from 'node:sqlite'
import {
  CompiledQuery,
  SqliteAdapter,
  SqliteIntrospector,
  SqliteQueryCompiler
} from 'kysely'
import type {
  DatabaseConnection,
  DatabaseIntrospector,
  Dialect,
  DialectAdapter,
  Driver,
  Kysely,
  QueryCompiler,
  QueryResult,
  TransactionSettings
} from 'kysely'

export interface NodeSqliteDialectInit {
  /** Path of the database file, or `:memory:` */
  path: string
  /**
   * How long a statement waits for another process's lock before failing with SQLITE_BUSY.
   * @default 5000
   */
  busyTimeoutMs?: number
  /**
   * Prepared statements kept per connection, keyed by SQL text.
   * @default 128
   */
  statementCacheSize?: number
}

/**
 * Kysely dialect for `node:sqlite`. The database is opened with WAL journaling, a busy timeout,
 * foreign keys enforced and `synchronous = NORMAL` (durable at checkpoints, safe against
 * corruption, and far cheaper than FULL under WAL).
 */
export class NodeSqliteDialect implements Dialect {
  readonly #init: NodeSqliteDialectInit

  constructor (init: NodeSqliteDialectInit) {
    this.#init = init
  }

  createDriver (): Driver {
    return new NodeSqliteDriver(this.#init)
  }

  createQueryCompiler (): QueryCompiler {
    return new SqliteQueryCompiler()
  }

  createAdapter (): DialectAdapter {
    return new NodeSqliteAdapter()
  }

  createIntrospector (db: Kysely<any>): DatabaseIntrospector {
    return new SqliteIntrospector(db)
  }
}

/**
 * Kysely's SQLite adapter with transactional DDL switched on. SQLite does roll back `CREATE
 * TABLE` and friends; Kysely's stock adapter says otherwise only because some pragmas cannot run
 * in a transaction, and our migrations use none. With this, the migrator runs each migration in
 * a transaction, so a failed migration leaves no half-built schema behind, and since our
 * transactions begin IMMEDIATE (see the driver), two processes migrating one file take turns.
 */
export class NodeSqliteAdapter extends SqliteAdapter {
  override get supportsTransactionalDdl (): boolean {
    return true
  }
}

/** A FIFO async mutex: `lock()` resolves, in call order, with the function that unlocks. */
class Mutex {
  #tail: Promise<void> = Promise.resolve()

  async lock (): Promise<() => void> {
    let unlock!: () => void
    const held = new Promise<void>(resolve => { unlock = resolve })
    const previous = this.#tail
    this.#tail = previous.then(async () => await held)
    await previous
    return unlock
  }
}

class NodeSqliteDriver implements Driver {
  readonly #init: NodeSqliteDialectInit
  readonly #mutex = new Mutex()
  #db: DatabaseSync | undefined
  #connection: NodeSqliteConnection | undefined
  #unlock: (() => void) | undefined

  constructor (init: NodeSqliteDialectInit) {
    this.#init = init
  }

  async init (): Promise<void> {
    const db = new DatabaseSync(this.#init.path)
    try {
      // busy_timeout first: switching to WAL needs a lock another process may hold
      db.exec(`PRAGMA busy_timeout = ${Math.max(0, Math.trunc(this.#init.busyTimeoutMs ?? 5000))}`)
      db.exec('PRAGMA journal_mode = WAL')
      db.exec('PRAGMA foreign_keys = ON')
      db.exec('PRAGMA synchronous = NORMAL')
    } catch (err) {
      db.close()
      throw err
    }
    this.#db = db
    this.#connection = new NodeSqliteConnection(db, this.#init.statementCacheSize ?? 128)
  }

  async acquireConnection (): Promise<DatabaseConnection> {
    if (this.#connection === undefined) throw new Error('The SQLite driver is not initialised or already destroyed')
    const unlock = await this.#mutex.lock()
    this.#unlock = unlock
    return this.#connection
  }

  async releaseConnection (): Promise<void> {
    const unlock = this.#unlock
    this.#unlock = undefined
    unlock?.()
  }

  async beginTransaction (connection: DatabaseConnection, settings: TransactionSettings): Promise<void> {
    // IMMEDIATE takes the write lock at once. A DEFERRED transaction that reads and then writes
    // fails with SQLITE_BUSY (not waiting out busy_timeout) when another process wrote in between;
    // within this process transactions are serialised anyway, so IMMEDIATE costs nothing here.
    // SQLite transactions are always serializable, which satisfies any isolation level asked for.
    const begin = settings.accessMode === 'read only' ? 'begin deferred' : 'begin immediate'
    await connection.executeQuery(CompiledQuery.raw(begin))
  }

  async commitTransaction (connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('commit'))
  }

  async rollbackTransaction (connection: DatabaseConnection): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw('rollback'))
  }

  async savepoint (connection: DatabaseConnection, savepointName: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`savepoint ${quoteIdentifier(savepointName)}`))
  }

  async rollbackToSavepoint (connection: DatabaseConnection, savepointName: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`rollback to ${quoteIdentifier(savepointName)}`))
  }

  async releaseSavepoint (connection: DatabaseConnection, savepointName: string): Promise<void> {
    await connection.executeQuery(CompiledQuery.raw(`release ${quoteIdentifier(savepointName)}`))
  }

  async destroy (): Promise<void> {
    this.#connection?.clear()
    this.#connection = undefined
    this.#db?.close()
    this.#db = undefined
  }
}

class NodeSqliteConnection implements DatabaseConnection {
  readonly #db: DatabaseSync
  readonly #cache = new Map<string, StatementSync>()
  readonly #cacheSize: number

  constructor (db: DatabaseSync, cacheSize: number) {
    this.#db = db
    this.#cacheSize = cacheSize
  }

  async executeQuery<R> (compiledQuery: CompiledQuery): Promise<QueryResult<R>> {
    const statement = this.#prepare(compiledQuery.sql)
    const parameters = compiledQuery.parameters.map(toSqliteValue)
    // A statement returns rows exactly when it has result columns: SELECT, PRAGMA that reports,
    // and INSERT / UPDATE / DELETE ... RETURNING
    if (statement.columns().length > 0) {
      return { rows: statement.all(...parameters).map(plainRow) as R[] }
    }
    const { changes, lastInsertRowid } = statement.run(...parameters)
    return {
      numAffectedRows: BigInt(changes),
      insertId: BigInt(lastInsertRowid),
      rows: []
    }
  }

  async * streamQuery<R> (compiledQuery: CompiledQuery, chunkSize: number): AsyncIterableIterator<QueryResult<R>> {
    // A fresh statement, not a cached one: another query on the same SQL text would reset a
    // shared statement in the middle of this iteration
    const statement = this.#db.prepare(compiledQuery.sql)
    const parameters = compiledQuery.parameters.map(toSqliteValue)
    if (statement.columns().length === 0) {
      yield await this.executeQuery<R>(compiledQuery)
      return
    }
    const size = Math.max(1, chunkSize)
    let rows: R[] = []
    for (const row of statement.iterate(...parameters)) {
      rows.push(plainRow(row) as R)
      if (rows.length >= size) {
        yield { rows }
        rows = []
      }
    }
    if (rows.length > 0) yield { rows }
  }

  clear (): void {
    this.#cache.clear()
  }

  #prepare (sql: string): StatementSync {
    let statement = this.#cache.get(sql)
    if (statement !== undefined) {
      // Move to the back: the map's insertion order is the LRU order
      this.#cache.delete(sql)
      this.#cache.set(sql, statement)
      return statement
    }
    statement = this.#db.prepare(sql)
    if (this.#cacheSize > 0) {
      this.#cache.set(sql, statement)
      if (this.#cache.size > this.#cacheSize) {
        const oldest = this.#cache.keys().next()
        if (oldest.done !== true) this.#cache.delete(oldest.value)
      }
    }
    return statement
  }
}

/**
 * SQLite has no boolean or date type: store booleans as 0 / 1 (what SQLite's own TRUE / FALSE
 * are) and dates as ISO-8601 text, the form the schema uses for timestamps.
 */
function toSqliteValue (value: unknown): SQLInputValue {
  if (typeof value === 'boolean') return value ? 1 : 0
  if (value instanceof Date) return value.toISOString()
  return value as SQLInputValue
}

/** node:sqlite returns rows with a null prototype; hand Kysely ordinary objects. */
function plainRow (row: unknown): Record<string, unknown> {
  return { ...(row as Record<string, unknown>) }
}

function quoteIdentifier (name: string): string {
  return `"${name.replaceAll('"', '""')}"`
}
