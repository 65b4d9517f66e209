/**
 * Conversion of whatever was thrown into an AtlasError, at the HTTP boundary. Fastify's own
 * errors (body limits, bad content types, schema validation) and @fastify/multipart's are told
 * apart by their `code`, never by message text. Unknown errors become InternalError and their
 * details stay in the log.
 */
import { AtlasError, isAbortError } from '../core/errors.ts'

/** Fastify and plugin error codes, mapped to Atlas codes */
const FRAMEWORK_CODES: Record<string, AtlasError['code']> = {
  FST_ERR_CTP_BODY_TOO_LARGE: 'EntityTooLarge',
  FST_ERR_CTP_INVALID_MEDIA_TYPE: 'UnsupportedMediaType',
  FST_ERR_CTP_INVALID_CONTENT_LENGTH: 'BadRequest',
  FST_ERR_CTP_EMPTY_JSON_BODY: 'MalformedRequest',
  FST_ERR_CTP_INVALID_JSON_BODY: 'MalformedRequest',
  FST_ERR_VALIDATION: 'InvalidArgument',
  FST_ERR_NOT_FOUND: 'NotFound',
  FST_REQ_FILE_TOO_LARGE: 'EntityTooLarge',
  FST_PARTS_LIMIT: 'EntityTooLarge',
  FST_FILES_LIMIT: 'EntityTooLarge',
  FST_FIELDS_LIMIT: 'EntityTooLarge',
  FST_PROTO_VIOLATION: 'MalformedRequest',
  FST_INVALID_MULTIPART_CONTENT_TYPE: 'UnsupportedMediaType',
  FST_NO_FORM_DATA: 'MalformedRequest'
}

export function toAtlasError (err: unknown): AtlasError {
  if (err instanceof AtlasError) return err
  if (isAbortError(err)) return new AtlasError('ClientClosed', 'The client closed the connection', { cause: err })
  if (typeof err === 'object' && err !== null) {
    const e = err as { code?: unknown, statusCode?: unknown, message?: unknown, validation?: unknown }
    const code = typeof e.code === 'string' ? FRAMEWORK_CODES[e.code] : undefined
    if (code !== undefined) {
      // framework messages describe the request (never internals), so they are safe to pass on
      return new AtlasError(code, typeof e.message === 'string' ? e.message : code, { cause: err })
    }
    if (e.validation !== undefined) return new AtlasError('InvalidArgument', String(e.message), { cause: err })
    if (err instanceof SyntaxError && typeof e.statusCode === 'number' && e.statusCode === 400) {
      return new AtlasError('MalformedRequest', 'The request body is not valid JSON', { cause: err })
    }
    if (typeof e.statusCode === 'number' && e.statusCode >= 400 && e.statusCode < 500) {
      return new AtlasError('BadRequest', typeof e.message === 'string' ? e.message : 'Bad request', { cause: err })
    }
  }
  return new AtlasError('InternalError', 'We encountered an internal error. Please try again.', { cause: err })
}
