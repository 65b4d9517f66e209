import { mkdtemp, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join, resolve } from 'node:path'
import { describe, expect, it } from 'vitest'
import { ConfigError, loadConfig, publicUrl } from '../../src/config.ts'

describe('configuration', () => {
  it('has embedded defaults', () => {
    const c = loadConfig({ env: {} })
    expect(c).toMatchObject({ host: '127.0.0.1', port: 8080, logLevel: 'info', defaultBackends: ['ipfs'] })
    expect(c.dataDir).toBe(resolve('./data'))
    expect(c.databaseUrl).toBeUndefined()
    expect(c.ipfs).toEqual({ offline: false, listen: ['/ip4/0.0.0.0/tcp/4001'], bootstrap: [] })
    expect(c.limits.maxObjectSize).toBe(5 * 1024 ** 3)
    expect(publicUrl(c)).toBe('http://127.0.0.1:8080')
    // the built-in tracker is on in the embedded setup; ATLAS_BT_TRACKER turns it off
    expect(c.bittorrent.tracker).toBe(true)
    expect(loadConfig({ env: { ATLAS_BT_TRACKER: 'false' } }).bittorrent.tracker).toBe(false)
  })

  it('reads ATLAS_* variables over the file', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'atlas-config-'))
    const file = join(dir, 'atlas.json')
    await writeFile(file, JSON.stringify({ port: 9000, host: '0.0.0.0', ipfs: { offline: true } }))
    const c = loadConfig({
      file,
      env: {
        ATLAS_PORT: '9100',
        ATLAS_DATABASE_URL: 'postgres://u:p@localhost/atlas',
        ATLAS_IPFS_LISTEN: '/ip4/127.0.0.1/tcp/4001, /ip4/127.0.0.1/tcp/4002',
        ATLAS_MAX_OBJECT_SIZE: '1024',
        ATLAS_PUBLIC_URL: 'https://atlas.example.org/'
      }
    })
    expect(c.port).toBe(9100)
    expect(c.host).toBe('0.0.0.0')
    expect(c.ipfs.offline).toBe(true)
    expect(c.ipfs.listen).toEqual(['/ip4/127.0.0.1/tcp/4001', '/ip4/127.0.0.1/tcp/4002'])
    expect(c.limits.maxObjectSize).toBe(1024)
    expect(c.databaseUrl).toBe('postgres://u:p@localhost/atlas')
    expect(publicUrl(c)).toBe('https://atlas.example.org')
  })

  it('fails fast with the path and variable of each bad field', () => {
    const attempt = (): unknown => loadConfig({ env: { ATLAS_PORT: 'eighty', ATLAS_IPFS_OFFLINE: 'maybe', ATLAS_DATABASE_URL: 'mysql://x' } })
    expect(attempt).toThrow(ConfigError)
    try {
      attempt()
    } catch (err) {
      const message = (err as Error).message
      expect(message).toContain('port (ATLAS_PORT)')
      expect(message).toContain('ipfs.offline (ATLAS_IPFS_OFFLINE)')
      expect(message).toContain('databaseUrl (ATLAS_DATABASE_URL)')
    }
    expect(() => loadConfig({ env: { ATLAS_DEFAULT_BACKENDS: 'ipfs,floppy' } })).toThrow(/defaultBackends/)
    expect(() => loadConfig({ env: { ATLAS_CONFIG: '/nonexistent/atlas.json' } })).toThrow(/Cannot read config file/)
  })

  it('configures the chain: the dev stand-in by default, a TRON node with its host and key file', () => {
    const dev = loadConfig({ env: {} }).chain
    expect(dev).toMatchObject({ mode: 'dev', scanIntervalSeconds: 3, scanBatchBlocks: 100, dev: { port: 0, blockIntervalMs: 3000, solidityLag: 19 } })
    expect(dev.withdrawals).toEqual({ min: 10n ** 18n, max: 10n ** 24n, maxPerDay: 10n ** 25n })
    const tron = loadConfig({
      env: {
        ATLAS_CHAIN: 'tron',
        ATLAS_TRON_FULL_HOST: 'https://nile.trongrid.io',
        ATLAS_TRON_API_KEY: 'key',
        ATLAS_BTT_CONTRACT: 'TAFjULxiVgT4qWk6UZwjqwZXTSaGaqnVp4',
        ATLAS_TRON_KEY_FILE: '/etc/atlas/hot.key',
        ATLAS_WITHDRAWAL_MAX: '2.5',
        ATLAS_CHAIN_START_BLOCK: '12345'
      }
    }).chain
    expect(tron).toMatchObject({ mode: 'tron', fullHost: 'https://nile.trongrid.io', apiKey: 'key', tokenContract: 'TAFjULxiVgT4qWk6UZwjqwZXTSaGaqnVp4', keyFile: '/etc/atlas/hot.key', startBlock: 12345 })
    expect(tron.withdrawals.max).toBe(2_500_000_000_000_000_000n)
    // tron mode names its node and its key; a contract is a base58 address
    expect(() => loadConfig({ env: { ATLAS_CHAIN: 'tron' } })).toThrow(/chain\.fullHost \(ATLAS_TRON_FULL_HOST\)[^]*chain\.keyFile \(ATLAS_TRON_KEY_FILE\)/)
    expect(() => loadConfig({ env: { ATLAS_CHAIN: 'mainnet' } })).toThrow(/chain\.mode \(ATLAS_CHAIN\)/)
    expect(() => loadConfig({ env: { ATLAS_BTT_CONTRACT: '0x1234' } })).toThrow(/chain\.tokenContract/)
    expect(() => loadConfig({ env: { ATLAS_WITHDRAWAL_MIN: '-1' } })).toThrow(/chain\.withdrawals\.min/)
  })
})
