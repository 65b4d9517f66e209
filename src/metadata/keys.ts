/**
 * Object keys in S3 order. S3 lists keys in the order of their UTF-8 bytes, which is also the
 * order of their Unicode code points, but not JavaScript's `<` (UTF-16 code units: U+FFFF sorts
 * after U+10000 there). The databases compare bytewise (SQLite's BINARY collation, PostgreSQL's
 * "C" collation over UTF-8); these helpers do the same in JavaScript.
 */

/** Compare two strings by their UTF-8 bytes: negative, zero or positive. */
export function compareKeys (a: string, b: string): number {
  return Buffer.compare(Buffer.from(a, 'utf8'), Buffer.from(b, 'utf8'))
}

/**
 * The least string greater than every string that starts with `prefix`, in bytewise order, or
 * undefined when there is none (the prefix is empty or made only of U+10FFFF).
 *
 * It increments the last code point, skipping the surrogate range, and carries over into the
 * previous code point when the last one is already U+10FFFF. Appending U+FFFF, the usual trick,
 * is wrong bytewise: keys with a code point above U+FFFF after the prefix would sort after it.
 */
export function prefixUpperBound (prefix: string): string | undefined {
  const codePoints = Array.from(prefix)
  while (codePoints.length > 0) {
    const last = codePoints.pop()?.codePointAt(0) ?? 0
    let next = last + 1
    if (next === 0xD800) next = 0xE000
    if (next <= 0x10FFFF) return codePoints.join('') + String.fromCodePoint(next)
  }
  return undefined
}

/**
 * True when `value` can be stored and compared identically on both dialects: well-formed UTF-16
 * (a lone surrogate would be silently replaced by U+FFFD on its way to UTF-8) and free of NUL,
 * which PostgreSQL text cannot hold.
 */
export function isStorableText (value: string): boolean {
  return value.isWellFormed() && !value.includes('\u0000')
}
