import type { ChatMessage } from '../tokenizer/chat_template';
import type { GraniteTokenizer } from '../tokenizer/tokenizer';
import { IGNORE_INDEX, type CausalLmBatch } from './causal_lm_loss';

/** One conversation as training data: its token ids and, position for position, the label (next token or ignored). */
export interface ChatExample {
  ids: number[];
  /** `labels[t]` is the token the model should produce after `ids[0..t]`: an assistant token, else {@link IGNORE_INDEX}. */
  labels: number[];
}

/**
 * Renders a conversation with the model's chat template and marks what the model should learn:
 * the tokens of assistant turns only (as TRL's `assistant_only_loss`). Each assistant turn's tokens
 * are those the template adds after the conversation so far rendered with its generation prompt,
 * so the turn's header is context and its end-of-turn token is learned. Throws when the template
 * does not render a conversation as an extension of its beginning (then no span can be marked).
 *
 * @param maxLength the example is cut to this many tokens (its first ones)
 */
export function chatExample(tokenizer: GraniteTokenizer, messages: readonly ChatMessage[], maxLength = Infinity): ChatExample {
  if (!messages.some((m) => m.role === 'assistant')) throw new RangeError('The conversation has no assistant message to learn from.');
  const ids = tokenizer.encodeChat(messages);
  const learn = new Array<boolean>(ids.length).fill(false);
  messages.forEach((m, i) => {
    if (m.role !== 'assistant') return;
    const before = tokenizer.encodeChat(messages.slice(0, i), { addGenerationPrompt: true });
    const through = tokenizer.encodeChat(messages.slice(0, i + 1));
    const isPrefix = (a: number[], b: number[]) => a.length <= b.length && a.every((id, k) => id === b[k]);
    if (!isPrefix(before, through) || !isPrefix(through, ids)) {
      throw new RangeError(
        `The chat template does not render message ${i + 1} as a continuation of the ones before it, so its tokens cannot be found.`,
      );
    }
    for (let k = before.length; k < through.length; k++) learn[k] = true;
  });
  const n = Math.min(ids.length, maxLength);
  const labels = new Array<number>(n);
  // Position t predicts token t + 1: it counts when that next token is one to learn.
  for (let t = 0; t < n; t++) labels[t] = t + 1 < ids.length && learn[t + 1] ? ids[t + 1] : IGNORE_INDEX;
  return { ids: ids.slice(0, n), labels };
}

/**
 * Rows of equal length from examples of different lengths: each padded on the right with `padId`
 * (labels ignored there). Exact for causal models: no real position sees a later one.
 */
export function padExamples(examples: readonly ChatExample[], padId: number): CausalLmBatch {
  const width = Math.max(...examples.map((e) => e.ids.length));
  return {
    inputs: examples.map((e) => [...e.ids, ...new Array<number>(width - e.ids.length).fill(padId)]),
    labels: examples.map((e) => [...e.labels, ...new Array<number>(width - e.labels.length).fill(IGNORE_INDEX)]),
  };
}
