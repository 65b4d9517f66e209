/**
 * Open the metadata store a configuration names, with its secret key. Kept apart from the
 * server's wiring so that admin commands start without loading the networks' libraries.
 */
import { mkdir } from 'node:fs/promises'
import type { AtlasConfig } from '../config.ts'
import { createMetadataStore } from './index.ts'
import { loadOrCreateSecretKey } from './secret-box.ts'
import type { MetadataStore } from './store.ts'

export async function openMetadata (config: AtlasConfig, logger?: { warn(...args: unknown[]): void }): Promise<MetadataStore> {
  await mkdir(config.dataDir, { recursive: true })
  const secretKey = config.secretKey === undefined
    ? await loadOrCreateSecretKey(config.dataDir)
    : Buffer.from(config.secretKey, 'base64')
  return await createMetadataStore({ url: config.databaseUrl, dataDir: config.dataDir, secretKey, logger })
}
