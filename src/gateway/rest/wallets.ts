/**
 * REST API v1: the caller's TRON wallets and the BTT they move (src/billing/chain/).
 *
 * - `GET /v1/account/wallets/challenge`: a message to sign (tronweb's `signMessageV2`) with a
 *   single-use nonce that expires in 10 minutes.
 * - `POST /v1/account/wallets {address, signature, nonce?}`: link the address that signed it
 *   (201; 200 when this account had it already; 409 when another account has it).
 * - `GET /v1/account/wallets`: the linked wallets, and the deposit address to send BTT to.
 * - `GET /v1/account/deposits`: deposits from the linked wallets, with their state.
 * - `POST /v1/account/withdrawals {address, amount}`: BTT to a linked wallet; `amount` is decimal
 *   BTT text (`"12.5"`), exact to the unit (202: held and sent, settled once solidified).
 * - `GET /v1/account/withdrawals`: the withdrawals and their states.
 *
 * With billing off (no chain runs then) each answers 404, as the usage and ledger routes do.
 */
import type { FastifyInstance } from 'fastify'
import { amountJson } from '../../billing/usage.ts'
import type { Deposit } from '../../billing/chain/deposits.ts'
import type { ChainServices } from '../../billing/chain/setup.ts'
import type { Withdrawal } from '../../billing/chain/withdrawals.ts'
import { AtlasError } from '../../core/errors.ts'
import { requirePrincipal } from '../auth.ts'
import type { GatewayDeps } from '../server.ts'

/** Entries of a deposit or withdrawal listing when the query gives no limit */
export const DEFAULT_LIST_LIMIT = 100
const MAX_LIST_LIMIT = 1000

type Query = Record<string, string | string[] | undefined>

export async function walletRoutes (app: FastifyInstance, deps: GatewayDeps): Promise<void> {
  const chain = (): ChainServices => {
    if (deps.chain === undefined) throw new AtlasError('NotFound', 'Billing is off on this gateway: it takes no deposits and pays no withdrawals')
    return deps.chain
  }

  app.get('/v1/account/wallets/challenge', async (request) => {
    const principal = requirePrincipal(request)
    const challenge = await chain().wallets.challenge(principal.accountId)
    return { message: challenge.message, nonce: challenge.nonce, expiresAt: challenge.expiresAt.toISOString() }
  })

  app.post('/v1/account/wallets', async (request, reply) => {
    const principal = requirePrincipal(request)
    const services = chain()
    const body = objectBody(request.body)
    const { wallet, created } = await services.wallets.link(principal.accountId, {
      address: body.address as string,
      signature: body.signature as string,
      ...(body.nonce === undefined ? {} : { nonce: body.nonce as string })
    })
    return await reply.code(created ? 201 : 200).send({ address: wallet.address, linkedAt: wallet.linkedAt.toISOString() })
  })

  app.get('/v1/account/wallets', async (request) => {
    const principal = requirePrincipal(request)
    const services = chain()
    const wallets = await services.wallets.list(principal.accountId)
    return {
      depositAddress: services.client.depositAddress,
      tokenContract: services.client.tokenContract,
      wallets: wallets.map(w => ({ address: w.address, linkedAt: w.linkedAt.toISOString() }))
    }
  })

  app.get<{ Querystring: Query }>('/v1/account/deposits', async (request) => {
    const principal = requirePrincipal(request)
    const services = chain()
    const deposits = await services.deposits.list(principal.accountId, { limit: limitOf(request.query) })
    return { depositAddress: services.client.depositAddress, tokenContract: services.client.tokenContract, deposits: deposits.map(depositView) }
  })

  app.post('/v1/account/withdrawals', async (request, reply) => {
    const principal = requirePrincipal(request)
    const services = chain()
    const body = objectBody(request.body)
    const withdrawal = await services.withdrawals.request(principal.accountId, { address: body.address, amount: body.amount })
    return await reply.code(202).header('location', '/v1/account/withdrawals').send(withdrawalView(withdrawal))
  })

  app.get<{ Querystring: Query }>('/v1/account/withdrawals', async (request) => {
    const principal = requirePrincipal(request)
    const withdrawals = await chain().withdrawals.list(principal.accountId, { limit: limitOf(request.query) })
    return { withdrawals: withdrawals.map(withdrawalView) }
  })
}

function objectBody (body: unknown): Record<string, unknown> {
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new AtlasError('InvalidArgument', 'The body must be a JSON object')
  return body as Record<string, unknown>
}

function limitOf (q: Query): number {
  const text = q.limit
  if (text === undefined) return DEFAULT_LIST_LIMIT
  const limit = Array.isArray(text) ? Number.NaN : Number(text)
  if (typeof text !== 'string' || text.trim() === '' || !Number.isInteger(limit) || limit < 1 || limit > MAX_LIST_LIMIT) {
    throw new AtlasError('InvalidArgument', `limit must be an integer from 1 to ${MAX_LIST_LIMIT}, given once`)
  }
  return limit
}

function depositView (d: Deposit): Record<string, unknown> {
  return {
    txId: d.txId,
    logIndex: d.logIndex,
    blockNumber: d.blockNumber,
    from: d.from,
    amount: amountJson(d.amount),
    state: d.state,
    recordedAt: d.recordedAt.toISOString(),
    ...(d.transactionId === undefined ? {} : { transactionId: d.transactionId }),
    ...(d.creditedAt === undefined ? {} : { creditedAt: d.creditedAt.toISOString() })
  }
}

function withdrawalView (w: Withdrawal): Record<string, unknown> {
  return {
    id: w.id,
    address: w.address,
    amount: amountJson(w.amount),
    state: w.state,
    ...(w.txId === undefined ? {} : { txId: w.txId }),
    ...(w.blockNumber === undefined ? {} : { blockNumber: w.blockNumber }),
    ...(w.result === undefined ? {} : { result: w.result }),
    ...(w.error === undefined ? {} : { error: w.error }),
    ...(w.expiration === undefined ? {} : { expiresAt: w.expiration.toISOString() }),
    createdAt: w.createdAt.toISOString(),
    updatedAt: w.updatedAt.toISOString()
  }
}
