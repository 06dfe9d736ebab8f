/**
 * The one-call entry point: a model loaded from a folder or hub id, wrapped as a function from a
 * prompt to text, like transformers.js's `pipeline('text-generation', id)`.
 */
import type { GraniteModel, PromptOptions, TextGenerationOptions } from '../granite_model';
import { fromPretrained, type FromPretrainedOptions } from '../loading/from_pretrained';
import type { ChatMessage } from '../tokenizer/chat_template';
import { ChatSession, type ChatSessionOptions } from './chat_session';

/** Options of one call of a {@link TextGenerator}: sampling, limits, stop strings, `signal`, and how a prompt is rendered. */
export type TextGeneratorCallOptions = TextGenerationOptions & PromptOptions;

/** Options of {@link createTextGenerator}: how to load, and the defaults of every call. */
export interface TextGeneratorOptions extends FromPretrainedOptions {
  /** Defaults of every call (a call's own options override them); `generation_config.json` fills what both leave unset. */
  generation?: TextGeneratorCallOptions;
}

/**
 * A loaded model as a function. A string is continued as plain text (`chat: true` renders it as
 * a user message); a message list is rendered through the chat template. Resolves with the new
 * text only.
 */
export interface TextGenerator {
  (input: string | readonly ChatMessage[], options?: TextGeneratorCallOptions): Promise<string>;
  /** The same, as the text arrives. */
  stream(input: string | readonly ChatMessage[], options?: TextGeneratorCallOptions): AsyncGenerator<string>;
  /** A multi-turn {@link ChatSession} on the same model (its `generation` defaults to the generator's). */
  chat(options?: ChatSessionOptions): ChatSession;
  readonly model: GraniteModel;
  /** Frees the model's weights. */
  dispose(): void;
}

/** A call's options split into how the prompt is rendered and how text is generated. */
function splitOptions(options: TextGeneratorCallOptions): { prompt: PromptOptions; generation: TextGenerationOptions } {
  const { chat, system, tools, documents, templateName, ...generation } = options;
  return { prompt: { chat, system, tools, documents, templateName }, generation };
}

/**
 * Loads a model (see {@link fromPretrained}) and returns it as a {@link TextGenerator}.
 *
 * @example
 * ```ts
 * const generate = await createTextGenerator('ibm-granite/granite-4.0-h-micro', { dtype: 'q4_0' });
 * console.log(await generate([{ role: 'user', content: 'Say hello.' }], { maxNewTokens: 20 }));
 * for await (const piece of generate.stream('Once upon a time')) process.stdout.write(piece);
 * generate.dispose();
 * ```
 */
export async function createTextGenerator(pathOrRepoId: string, options: TextGeneratorOptions = {}): Promise<TextGenerator> {
  const { generation = {}, ...loadOptions } = options;
  const model = await fromPretrained(pathOrRepoId, loadOptions);
  async function* stream(input: string | readonly ChatMessage[], callOptions: TextGeneratorCallOptions = {}): AsyncGenerator<string> {
    const { prompt, generation: sampling } = splitOptions({ ...generation, ...callOptions });
    const ids = model.encodePrompt(input, prompt);
    for await (const event of model.streamText(ids, model.withSamplingDefaults(sampling))) {
      if (event.type === 'text' && event.text !== '') yield event.text;
    }
  }
  const generator = async (input: string | readonly ChatMessage[], callOptions?: TextGeneratorCallOptions) => {
    let text = '';
    for await (const piece of stream(input, callOptions)) text += piece;
    return text;
  };
  return Object.assign(generator, {
    stream,
    chat: (sessionOptions: ChatSessionOptions = {}) => {
      const defaults = splitOptions(generation).generation;
      return new ChatSession(model, { ...sessionOptions, generation: { ...defaults, ...sessionOptions.generation } });
    },
    model,
    dispose: () => model.dispose(),
  });
}
