/**
 * The library's {@link GraniteChatSession} with what `graniteflow chat` adds: the CLI's sampling
 * flags, and `/save` / `/load` to files with errors that name the file.
 */
import * as fs from 'node:fs';
import { ChatSession as GraniteChatSession, type GenerateOptions, type GraniteModel } from '@graniteflow/granite';
import { CliError } from './errors';
import { requireTokenizer } from './text_generation';

export type { SavedChat, TurnStats } from '@graniteflow/granite';

/** A conversation of `graniteflow chat`; see the library's `ChatSession`. */
export class ChatSession extends GraniteChatSession {
  constructor(model: GraniteModel, sampling: GenerateOptions = {}, modelName = '') {
    requireTokenizer(model);
    super(model, { generation: sampling, modelName });
  }

  /** Writes the conversation to `file` (JSON), as the screen showed it. */
  save(file: string): void {
    fs.writeFileSync(file, `${JSON.stringify(this.toJSON(), null, 2)}\n`);
  }

  /** Replaces the conversation by the one in `file`; the next turn feeds it to the model once. */
  load(file: string): void {
    let saved: unknown;
    try {
      saved = JSON.parse(fs.readFileSync(file, 'utf8'));
    } catch (err) {
      throw new CliError(`Cannot read a conversation from ${file}: ${(err as Error).message}`);
    }
    try {
      this.restore(saved);
    } catch (err) {
      throw new CliError(`${file} is not a conversation saved by graniteflow chat (/save): ${(err as Error).message}.`);
    }
  }
}
