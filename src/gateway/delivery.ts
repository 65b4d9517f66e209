/**
 * Delivering content: the lane a response goes out in, and its metering.
 *
 * Every route that sends content (REST, S3, /v1/content, /ipfs, /bt and the webseed) builds a
 * {@link DeliveryContext} before it sets any header, and streams through {@link deliver}:
 * - the lane comes from `x-atlas-lane`, else the `lane` query parameter, else the key's default,
 *   else the gateway's; an unknown lane is a 400 before anything is sent;
 * - with billing on, a hold for the whole response at the lane's price is placed before the
 *   first byte (402 / S3 AccountProblem when it cannot be), the bytes are counted as they leave,
 *   and the hold is settled to that count when the response ends, finished or aborted;
 * - a throttled lane paces the stream with a token bucket (backpressure on the source, not a
 *   sleep after the fact).
 *
 * Who pays is the route's decision: the authenticated caller, or for an anonymous read of public
 * content the owner of the bucket that makes it public.
 */
import type { FastifyRequest } from 'fastify'
import type { Billing } from '../billing/billing.ts'
import { parseLane, throttle } from '../billing/lanes.ts'
import { laneCap, type Lane } from '../billing/pricing.ts'
import type { AtlasConfig } from '../config.ts'

export interface DeliveryContext {
  lane: Lane
  /** Bytes per second; undefined for an unthrottled lane */
  cap: number | undefined
  /** Set when the response is billed */
  billing?: Billing
  /** The account that pays */
  payer?: string
  bucket?: string
  key?: string
}

/** What a route needs for {@link deliveryFor}: the config, and billing when it is on. */
export interface DeliveryDeps {
  config: AtlasConfig
  billing?: Billing
}

/**
 * The delivery of a response to `request`, paid by `payer`.
 *
 * @throws AtlasError `InvalidLane` for a lane that does not exist
 */
export function deliveryFor (request: FastifyRequest, deps: DeliveryDeps, payer: string | undefined, where: { bucket?: string, key?: string } = {}): DeliveryContext {
  const lane = chooseLane(request, deps.config)
  return {
    lane,
    cap: laneCap(deps.config.billing, lane),
    ...(deps.billing === undefined || payer === undefined ? {} : { billing: deps.billing, payer }),
    ...where
  }
}

function chooseLane (request: FastifyRequest, config: AtlasConfig): Lane {
  const header = request.headers['x-atlas-lane']
  if (header !== undefined) return parseLane(header)
  const query = request.query as Record<string, unknown> | undefined
  if (query !== null && typeof query === 'object' && query.lane !== undefined) return parseLane(query.lane)
  const fromKey = request.principal?.defaultLane
  if (fromKey !== undefined) return parseLane(fromKey)
  return config.billing.defaultLane
}

/**
 * Start a metered, paced delivery of `bytes` bytes: place the hold (throws before anything is
 * sent when it cannot be placed), then hand back the source wrapped to pace and count it. The
 * hold is settled when `finished` resolves (the response ended, sent in full or not).
 *
 * @param bytes what the response will carry (for a stream of unknown length, an upper bound)
 */
export async function deliver (request: FastifyRequest, ctx: DeliveryContext, bytes: number, open: () => AsyncIterable<Uint8Array>, signal: AbortSignal): Promise<{ source: AsyncIterable<Uint8Array>, finish: () => Promise<void> }> {
  const delivery = ctx.billing === undefined || ctx.payer === undefined
    ? undefined
    : await ctx.billing.beginDelivery({ payer: ctx.payer, bytes, lane: ctx.lane, requestId: request.id, bucket: ctx.bucket, key: ctx.key })
  let source: AsyncIterable<Uint8Array>
  try {
    source = open()
  } catch (err) {
    await delivery?.end()
    throw err
  }
  if (ctx.cap !== undefined) source = throttle(source, { bytesPerSecond: ctx.cap, signal })
  if (delivery !== undefined) source = counted(source, (n) => { delivery.count(n) })
  return { source, finish: async () => { await delivery?.end() } }
}

async function * counted (source: AsyncIterable<Uint8Array>, count: (bytes: number) => void): AsyncGenerator<Uint8Array, void, undefined> {
  for await (const chunk of source) {
    yield chunk
    // counted once the consumer took it: a chunk still waiting when the client leaves is not paid
    count(chunk.byteLength)
  }
}
