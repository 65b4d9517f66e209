#!/usr/bin/env node
// Atlas runs its TypeScript sources directly on Node 24 (type stripping); this shim is the
// package's bin entry.
const { main } = await import('../src/cli.ts')
main(process.argv.slice(2))
