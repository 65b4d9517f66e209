import { randomBytes } from 'node:crypto'
import { mkdtemp, rm, stat } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { afterEach, beforeEach, describe, expect, it } from 'vitest'
import { createMetadataStore, parseMetadataUrl, SQLITE_FILE } from '../../../src/metadata/index.ts'

describe('parseMetadataUrl', () => {
  it('defaults to <dataDir>/atlas.db', () => {
    for (const url of [undefined, '', '  ', 'sqlite:', 'sqlite://']) {
      expect(parseMetadataUrl(url, '/data')).toEqual({ dialect: 'sqlite', path: join('/data', SQLITE_FILE) })
    }
  })

  it('reads SQLite paths and URLs', () => {
    expect(parseMetadataUrl('sqlite:///var/lib/atlas/meta.db', '/data')).toEqual({ dialect: 'sqlite', path: '/var/lib/atlas/meta.db' })
    expect(parseMetadataUrl('sqlite:relative.db', '/data')).toEqual({ dialect: 'sqlite', path: resolve('relative.db') })
    expect(parseMetadataUrl('sqlite::memory:', '/data')).toEqual({ dialect: 'sqlite', path: ':memory:' })
    expect(parseMetadataUrl('file:///tmp/x.db', '/data')).toEqual({ dialect: 'sqlite', path: '/tmp/x.db' })
    expect(parseMetadataUrl('/srv/atlas.db', '/data')).toEqual({ dialect: 'sqlite', path: '/srv/atlas.db' })
  })

  it('reads PostgreSQL URLs', () => {
    for (const url of ['postgres://u:p@db:5432/atlas', 'postgresql://db/atlas', 'POSTGRES://db/atlas']) {
      expect(parseMetadataUrl(url, '/data')).toEqual({ dialect: 'postgres', url })
    }
  })

  it('refuses other schemes without echoing credentials', () => {
    expect(() => parseMetadataUrl('mysql://root:hunter2@db/atlas', '/data')).toThrow(/mysql:/)
    try {
      parseMetadataUrl('mysql://root:hunter2@db/atlas', '/data')
    } catch (err) {
      expect((err as Error).message).not.toContain('hunter2')
    }
  })
})

describe('createMetadataStore', () => {
  let dir: string

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), 'atlas-meta-'))
  })

  afterEach(async () => {
    await rm(dir, { recursive: true, force: true })
  })

  it('opens a migrated SQLite store in the data directory, creating it', async () => {
    const dataDir = join(dir, 'nested', 'data')
    const store = await createMetadataStore({ dataDir, secretKey: randomBytes(32) })
    try {
      expect(store.dialect).toBe('sqlite')
      expect((await stat(join(dataDir, SQLITE_FILE))).isFile()).toBe(true)
      // Migrated: the tables are there
      await store.createAccount({ id: 'a', name: 'A' })
      expect(await store.listAccounts()).toHaveLength(1)
    } finally {
      await store.close()
    }
    // Reopening keeps the data and migrates nothing again
    const again = await createMetadataStore({ url: `sqlite:${join(dataDir, SQLITE_FILE)}`, dataDir: '/unused', secretKey: randomBytes(32) })
    try {
      expect((await again.getAccount('a'))?.name).toBe('A')
    } finally {
      await again.close()
    }
  })

  it('refuses a secret key of the wrong size', async () => {
    await expect(createMetadataStore({ dataDir: dir, secretKey: randomBytes(8) })).rejects.toThrow(TypeError)
  })
})
