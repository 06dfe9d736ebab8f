/**
 * Text-level helpers around a {@link GraniteModel}: the tokenizer (or a clear error when a folder
 * has none) and rendering a conversation through the chat template.
 */
import type { ChatMessage, GraniteModel, GraniteTokenizer } from '@graniteflow/granite';
import { CliError } from './errors';

export type { ChatMessage, TextEvent } from '@graniteflow/granite';

/** The model's tokenizer, or a clear error when its folder has none. */
export function requireTokenizer(model: Pick<GraniteModel, 'tokenizer' | 'folder'>): GraniteTokenizer {
  if (model.tokenizer === null) {
    throw new CliError(
      `${model.folder} has no tokenizer.json, so text cannot be encoded or decoded. Use a complete model folder, or give token ids (graniteflow logits --ids 1,2,3).`,
    );
  }
  return model.tokenizer;
}

/** The chat template's rendering of `messages`, ending with the header of the assistant's turn. */
export function renderChat(
  tokenizer: GraniteTokenizer,
  messages: readonly ChatMessage[],
  options: { tools?: readonly unknown[]; documents?: readonly unknown[] } = {},
): string {
  return tokenizer.applyChatTemplate(messages, {
    addGenerationPrompt: true,
    ...(options.tools?.length ? { tools: options.tools } : {}),
    ...(options.documents?.length ? { documents: options.documents } : {}),
  });
}
