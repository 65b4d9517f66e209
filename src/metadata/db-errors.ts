/**
 * Database errors told apart by their codes, never by message text. PostgreSQL (pg) reports a
 * SQLSTATE in `code` and the violated constraint's name in `constraint`; node:sqlite reports
 * `code: 'ERR_SQLITE_ERROR'` with SQLite's extended result code in `errcode` and names no
 * constraint, which is fine because SQLite never races with itself inside one process.
 */

export type DbErrorKind =
  /** A unique or primary-key constraint was violated */
  | 'unique'
  /** A foreign-key constraint was violated */
  | 'foreign-key'
  /** A check constraint was violated */
  | 'check'
  /** A deadlock, a serialization failure or a busy database: the transaction may be retried */
  | 'retry'

export interface DbErrorInfo {
  kind: DbErrorKind
  /** The violated constraint, where the database names it (PostgreSQL) */
  constraint?: string
}

/** SQLSTATE codes (PostgreSQL) */
const PG_CODES: Record<string, DbErrorKind> = {
  '23505': 'unique',
  '23503': 'foreign-key',
  '23514': 'check',
  '40P01': 'retry', // deadlock_detected
  '40001': 'retry' // serialization_failure
}

/** Extended result codes (SQLite) */
const SQLITE_CODES: Record<number, DbErrorKind> = {
  1555: 'unique', // SQLITE_CONSTRAINT_PRIMARYKEY
  2067: 'unique', // SQLITE_CONSTRAINT_UNIQUE
  787: 'foreign-key', // SQLITE_CONSTRAINT_FOREIGNKEY
  275: 'check', // SQLITE_CONSTRAINT_CHECK
  5: 'retry', // SQLITE_BUSY
  517: 'retry' // SQLITE_BUSY_SNAPSHOT
}

/** What kind of database error `err` is, or null when it is not one we tell apart. */
export function classifyDbError (err: unknown): DbErrorInfo | null {
  if (typeof err !== 'object' || err === null) return null
  const e = err as { code?: unknown, errcode?: unknown, constraint?: unknown }
  if (e.code === 'ERR_SQLITE_ERROR' && typeof e.errcode === 'number') {
    const kind = SQLITE_CODES[e.errcode]
    return kind === undefined ? null : { kind }
  }
  if (typeof e.code === 'string' && e.code.length === 5) {
    const kind = PG_CODES[e.code]
    if (kind === undefined) return null
    return typeof e.constraint === 'string' ? { kind, constraint: e.constraint } : { kind }
  }
  return null
}

/** True when `err` is a database error of the given kind. */
export function isDbError (err: unknown, kind: DbErrorKind): boolean {
  return classifyDbError(err)?.kind === kind
}
