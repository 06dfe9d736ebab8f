// Paths and readers for the golden fixtures shared by the tokenizer, chat-template and hub tests.
import * as fs from 'node:fs';
import * as path from 'node:path';

export const GOLDEN_DIR = path.resolve(__dirname, '../../../../fixtures/golden');
export const TOKENIZER_DIR = path.join(GOLDEN_DIR, 'tokenizer');
export const CHAT_TINY_DIR = path.join(GOLDEN_DIR, 'chat_tiny');
export const TINY_MOE_DIR = path.join(GOLDEN_DIR, 'tiny_moe');

export function readJson<T = unknown>(file: string): T {
  return JSON.parse(fs.readFileSync(file, 'utf8')) as T;
}
