/**
 * The GPT-2 byte-level alphabet: every byte 0–255 is shown as one printable code point, so BPE
 * tokens are strings. Printable Latin-1 bytes map to themselves; the rest are shifted to U+0100+.
 * Same table as `bytes_to_unicode` in GPT-2 and `tokenizers`' ByteLevel.
 */
function buildByteToChar(): string[] {
  const printable: number[] = [];
  for (let b = 0x21; b <= 0x7e; b++) printable.push(b);
  for (let b = 0xa1; b <= 0xac; b++) printable.push(b);
  for (let b = 0xae; b <= 0xff; b++) printable.push(b);
  const table: string[] = new Array<string>(256);
  for (const b of printable) table[b] = String.fromCodePoint(b);
  let next = 0;
  for (let b = 0; b < 256; b++) {
    if (table[b] === undefined) table[b] = String.fromCodePoint(256 + next++);
  }
  return table;
}

/** Byte value → byte-level alphabet character. */
export const BYTE_TO_CHAR: readonly string[] = buildByteToChar();

/** Byte-level alphabet character → byte value. */
export const CHAR_TO_BYTE: ReadonlyMap<string, number> = new Map(BYTE_TO_CHAR.map((c, b) => [c, b]));

/**
 * Bytes of a byte-level token string, or `undefined` when the string holds characters outside the
 * alphabet (added tokens such as `<|end_of_text|>` are stored as plain text, not in the alphabet).
 */
export function byteLevelToBytes(token: string): Uint8Array | undefined {
  const out: number[] = [];
  for (const ch of token) {
    const b = CHAR_TO_BYTE.get(ch);
    if (b === undefined) return undefined;
    out.push(b);
  }
  return Uint8Array.from(out);
}
