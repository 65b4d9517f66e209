/**
 * PostgreSQL through `pg`: a pool whose type parsers match the row types in `schema.ts`, and the
 * Kysely dialect over it.
 *
 * Sizes and counts are `bigint` columns. pg hands int8 back as a string by default (JavaScript
 * numbers lose precision beyond 2^53); here a value that fits in a safe integer becomes a number
 * and anything larger a `bigint`, so nothing is silently rounded. The parsers are set on this pool
 * only (`types`), not in pg's global registry, so other pg users in the process are unaffected.
 */
import pg from 'pg'
import { PostgresDialect } from 'kysely'

export interface PostgresPoolInit {
  /** `postgres://` or `postgresql://` connection string */
  url: string
  /**
   * Connections in the pool.
   * @default 10
   */
  max?: number
  /** Receives errors of idle pooled connections (a restarted server, a dropped socket) */
  logger?: { warn(...args: unknown[]): void }
}

/** Parse PostgreSQL's int8 text: a number when it is a safe integer, otherwise a `bigint`. */
export function parseInt8 (text: string): number | bigint {
  const value = Number(text)
  return Number.isSafeInteger(value) ? value : BigInt(text)
}

const types: pg.CustomTypesConfig = {
  getTypeParser: ((oid: number, format?: 'text' | 'binary') => {
    if (oid === pg.types.builtins.INT8 && format !== 'binary') return parseInt8
    return pg.types.getTypeParser(oid, format)
  }) as pg.CustomTypesConfig['getTypeParser']
}

/** A pg pool for the metadata store. The caller (Kysely's driver) ends it. */
export function createPostgresPool (init: PostgresPoolInit): pg.Pool {
  const pool = new pg.Pool({ connectionString: init.url, max: init.max ?? 10, types })
  // An idle client's error is emitted on the pool; unhandled, it would crash the process. The
  // pool drops that client and the next query gets a fresh connection.
  pool.on('error', err => {
    init.logger?.warn({ err: { message: err.message, code: (err as { code?: unknown }).code } }, 'idle PostgreSQL connection failed')
  })
  return pool
}

/** Kysely's PostgreSQL dialect over `pool`. */
export function createPostgresDialect (pool: pg.Pool): PostgresDialect {
  return new PostgresDialect({ pool })
}
