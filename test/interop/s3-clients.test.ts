/**
 * Real S3 clients against Atlas: aws cli, s3cmd, rclone and boto3 each make a bucket, put a
 * 1 KiB and a 64 MiB (multipart) object, list, get back (sha256 compared), read a range, copy,
 * delete and remove the bucket.
 */
import { execFile } from 'node:child_process'
import { createHash, randomBytes } from 'node:crypto'
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { promisify } from 'node:util'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { startTestAtlas, type TestAtlas } from '../fixtures/atlas.ts'
import { checkTool, toolGate } from '../fixtures/tools.ts'

const run = promisify(execFile)
const MiB = 1024 * 1024
const sha256 = (b: Uint8Array): string => createHash('sha256').update(b).digest('hex')

let t: TestAtlas
let dir: string
let small: Buffer
let large: Buffer

beforeAll(async () => {
  t = await startTestAtlas({ config: { limits: { maxObjectSize: 256 * MiB } } })
  dir = await mkdtemp(join(tmpdir(), 'atlas-s3-clients-'))
  small = randomBytes(1024)
  large = randomBytes(64 * MiB)
  await writeFile(join(dir, 'small.bin'), small)
  await writeFile(join(dir, 'large.bin'), large)
}, 60_000)

afterAll(async () => {
  await t?.stop()
  if (dir !== undefined) await rm(dir, { recursive: true, force: true })
})

/** What every client must show after its run: nothing of its bucket left */
async function bucketGone (bucket: string): Promise<void> {
  expect(await t.atlas.metadata.getBucket(bucket)).toBeNull()
}

async function uploadsAreMultipart (bucket: string, key: string): Promise<void> {
  const object = await t.atlas.metadata.getObject(bucket, key)
  expect(object?.etag).toMatch(/-\d+$/)
}

const aws = checkTool('aws', ['--version'], 'already on the machine (pip awscli)')
describe('aws cli', () => {
  if (!toolGate(aws, it)) return
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    AWS_ACCESS_KEY_ID: t.account.accessKeyId,
    AWS_SECRET_ACCESS_KEY: t.account.secretAccessKey,
    AWS_DEFAULT_REGION: 'us-east-1',
    AWS_CONFIG_FILE: join(dir, 'aws-config'),
    AWS_SHARED_CREDENTIALS_FILE: join(dir, 'aws-credentials'),
    AWS_EC2_METADATA_DISABLED: 'true'
  })
  const cli = async (...args: string[]): Promise<string> => (await run('aws', ['--endpoint-url', t.url, ...args], { env: env(), maxBuffer: 64 * MiB })).stdout

  it('runs the whole object life cycle', async () => {
    await writeFile(join(dir, 'aws-config'), '[default]\ns3 =\n  addressing_style = path\n  multipart_threshold = 8MB\n  multipart_chunksize = 8MB\n')
    await cli('s3', 'mb', 's3://aws-cli')
    await cli('s3', 'cp', join(dir, 'small.bin'), 's3://aws-cli/small.bin')
    await cli('s3', 'cp', join(dir, 'large.bin'), 's3://aws-cli/dir/large.bin')
    await uploadsAreMultipart('aws-cli', 'dir/large.bin')
    const listing = await cli('s3', 'ls', '--recursive', 's3://aws-cli')
    expect(listing).toContain('small.bin')
    expect(listing).toContain('dir/large.bin')
    await cli('s3', 'cp', 's3://aws-cli/dir/large.bin', join(dir, 'aws-large.out'))
    expect(sha256(await readFile(join(dir, 'aws-large.out')))).toBe(sha256(large))
    await cli('s3api', 'get-object', '--bucket', 'aws-cli', '--key', 'small.bin', '--range', 'bytes=100-199', join(dir, 'aws-range.out'))
    expect(await readFile(join(dir, 'aws-range.out'))).toEqual(small.subarray(100, 200))
    await cli('s3', 'cp', 's3://aws-cli/small.bin', 's3://aws-cli/copy.bin')
    await cli('s3', 'cp', 's3://aws-cli/copy.bin', join(dir, 'aws-copy.out'))
    expect(sha256(await readFile(join(dir, 'aws-copy.out')))).toBe(sha256(small))
    const head = JSON.parse(await cli('s3api', 'head-object', '--bucket', 'aws-cli', '--key', 'copy.bin'))
    expect(head.Metadata.cid).toMatch(/^bafk/)
    await cli('s3', 'rm', '--recursive', 's3://aws-cli')
    await cli('s3', 'rb', 's3://aws-cli')
    await bucketGone('aws-cli')
  }, 180_000)
})

const s3cmd = checkTool('s3cmd', ['--version'], 'apt-get install s3cmd')
describe('s3cmd', () => {
  if (!toolGate(s3cmd, it)) return
  const cmd = async (...args: string[]): Promise<string> => (await run('s3cmd', ['-c', join(dir, 's3cmd.cfg'), ...args], { maxBuffer: 64 * MiB })).stdout

  it('runs the whole object life cycle', async () => {
    const host = new URL(t.url).host
    await writeFile(join(dir, 's3cmd.cfg'), [
      '[default]',
      `access_key = ${t.account.accessKeyId}`,
      `secret_key = ${t.account.secretAccessKey}`,
      `host_base = ${host}`,
      `host_bucket = ${host}`,
      'use_https = False',
      'signature_v2 = False',
      'bucket_location = us-east-1',
      'multipart_chunk_size_mb = 15',
      'check_ssl_certificate = False',
      ''
    ].join('\n'))
    await cmd('mb', 's3://s3cmd-bucket')
    await cmd('put', join(dir, 'small.bin'), 's3://s3cmd-bucket/small.bin')
    await cmd('put', join(dir, 'large.bin'), 's3://s3cmd-bucket/dir/large.bin')
    await uploadsAreMultipart('s3cmd-bucket', 'dir/large.bin')
    const listing = await cmd('ls', '--recursive', 's3://s3cmd-bucket')
    expect(listing).toContain('s3://s3cmd-bucket/small.bin')
    expect(listing).toContain('s3://s3cmd-bucket/dir/large.bin')
    await cmd('get', '--force', 's3://s3cmd-bucket/dir/large.bin', join(dir, 's3cmd-large.out'))
    expect(sha256(await readFile(join(dir, 's3cmd-large.out')))).toBe(sha256(large))
    // s3cmd has no ranged download; its resumed get (--continue) asks for the rest with a Range
    await writeFile(join(dir, 's3cmd-partial.out'), small.subarray(0, 300))
    await cmd('get', '--continue', 's3://s3cmd-bucket/small.bin', join(dir, 's3cmd-partial.out'))
    expect(sha256(await readFile(join(dir, 's3cmd-partial.out')))).toBe(sha256(small))
    await cmd('cp', 's3://s3cmd-bucket/small.bin', 's3://s3cmd-bucket/copy.bin')
    await cmd('get', '--force', 's3://s3cmd-bucket/copy.bin', join(dir, 's3cmd-copy.out'))
    expect(sha256(await readFile(join(dir, 's3cmd-copy.out')))).toBe(sha256(small))
    await cmd('del', '--recursive', '--force', 's3://s3cmd-bucket')
    await cmd('rb', 's3://s3cmd-bucket')
    await bucketGone('s3cmd-bucket')
  }, 180_000)
})

const rclone = checkTool('rclone', ['version'], 'apt-get install rclone')
describe('rclone', () => {
  if (!toolGate(rclone, it)) return
  const env = (): NodeJS.ProcessEnv => ({
    ...process.env,
    // rclone's AWS SDK refuses a custom CA bundle on its plain-HTTP transport: none is needed
    AWS_CA_BUNDLE: '',
    RCLONE_CONFIG: join(dir, 'rclone.conf'),
    RCLONE_CONFIG_ATLAS_TYPE: 's3',
    RCLONE_CONFIG_ATLAS_PROVIDER: 'Other',
    RCLONE_CONFIG_ATLAS_ACCESS_KEY_ID: t.account.accessKeyId,
    RCLONE_CONFIG_ATLAS_SECRET_ACCESS_KEY: t.account.secretAccessKey,
    RCLONE_CONFIG_ATLAS_ENDPOINT: t.url,
    RCLONE_CONFIG_ATLAS_REGION: 'us-east-1',
    RCLONE_CONFIG_ATLAS_FORCE_PATH_STYLE: 'true'
  })
  const rc = async (...args: string[]): Promise<string> => (await run('rclone', ['--s3-upload-cutoff', '16M', '--s3-chunk-size', '8M', '--retries', '1', '--low-level-retries', '1', ...args], { env: env(), maxBuffer: 64 * MiB })).stdout

  it('runs the whole object life cycle', async () => {
    await writeFile(join(dir, 'rclone.conf'), '')
    await rc('mkdir', 'atlas:rclone-bucket')
    await rc('copyto', join(dir, 'small.bin'), 'atlas:rclone-bucket/small.bin')
    await rc('copyto', join(dir, 'large.bin'), 'atlas:rclone-bucket/dir/large.bin')
    await uploadsAreMultipart('rclone-bucket', 'dir/large.bin')
    const listing = await rc('lsf', '-R', 'atlas:rclone-bucket')
    expect(listing.split('\n')).toEqual(expect.arrayContaining(['small.bin', 'dir/large.bin']))
    await rc('copyto', 'atlas:rclone-bucket/dir/large.bin', join(dir, 'rclone-large.out'))
    expect(sha256(await readFile(join(dir, 'rclone-large.out')))).toBe(sha256(large))
    const range = (await run('rclone', ['cat', '--offset', '100', '--count', '100', 'atlas:rclone-bucket/small.bin'], { env: env(), encoding: 'buffer' })).stdout
    expect(Buffer.from(range)).toEqual(small.subarray(100, 200))
    await rc('copyto', 'atlas:rclone-bucket/small.bin', 'atlas:rclone-bucket/copy.bin')
    await rc('copyto', 'atlas:rclone-bucket/copy.bin', join(dir, 'rclone-copy.out'))
    expect(sha256(await readFile(join(dir, 'rclone-copy.out')))).toBe(sha256(small))
    await rc('purge', 'atlas:rclone-bucket')
    await bucketGone('rclone-bucket')
  }, 180_000)
})

const boto3 = checkTool('python3', ['-c', 'import boto3'], 'pip install boto3 (it comes with awscli)')
describe('boto3', () => {
  if (!toolGate(boto3, it)) return
  it('runs the whole object life cycle', async () => {
    const script = `
import hashlib, json, sys
import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
endpoint, key_id, secret, folder = sys.argv[1:5]
s3 = boto3.client('s3', endpoint_url=endpoint, aws_access_key_id=key_id, aws_secret_access_key=secret,
                  region_name='us-east-1', config=Config(s3={'addressing_style': 'path'}))
sha = lambda b: hashlib.sha256(b).hexdigest()
s3.create_bucket(Bucket='boto3-bucket')
s3.upload_file(folder + '/small.bin', 'boto3-bucket', 'small.bin')
s3.upload_file(folder + '/large.bin', 'boto3-bucket', 'dir/large.bin', Config=TransferConfig(multipart_threshold=8 * 1024 * 1024, multipart_chunksize=8 * 1024 * 1024))
keys = [o['Key'] for o in s3.list_objects_v2(Bucket='boto3-bucket')['Contents']]
large = s3.get_object(Bucket='boto3-bucket', Key='dir/large.bin')['Body'].read()
ranged = s3.get_object(Bucket='boto3-bucket', Key='small.bin', Range='bytes=100-199')['Body'].read()
s3.copy_object(Bucket='boto3-bucket', Key='copy.bin', CopySource={'Bucket': 'boto3-bucket', 'Key': 'small.bin'})
copy = s3.get_object(Bucket='boto3-bucket', Key='copy.bin')['Body'].read()
for k in keys + ['copy.bin']:
    s3.delete_object(Bucket='boto3-bucket', Key=k)
s3.delete_bucket(Bucket='boto3-bucket')
print(json.dumps({'keys': keys, 'large': sha(large), 'ranged': ranged.hex(), 'copy': sha(copy)}))
`
    await writeFile(join(dir, 'boto3-run.py'), script)
    const { stdout } = await run('python3', [join(dir, 'boto3-run.py'), t.url, t.account.accessKeyId, t.account.secretAccessKey, dir], { maxBuffer: 8 * MiB })
    const result = JSON.parse(stdout.trim().split('\n').pop() as string)
    expect(result.keys).toEqual(['dir/large.bin', 'small.bin'])
    expect(result.large).toBe(sha256(large))
    expect(result.ranged).toBe(small.subarray(100, 200).toString('hex'))
    expect(result.copy).toBe(sha256(small))
    await bucketGone('boto3-bucket')
  }, 180_000)
})
