// Public surface of the tokenizer folder: tokenizer, chat template, tool-call parsing.
export { GraniteTokenizer, TokenizerError, type DecodeOptions, type TokenizerExtras } from './tokenizer';
export {
  ChatTemplate,
  ChatTemplateError,
  type ApplyChatTemplateOptions,
  type ChatMessage,
  type ChatTemplateConfig,
  type ChatToolCall,
  type TextContentPart,
} from './chat_template';
export {
  ToolCallStreamParser,
  parseToolCalls,
  parseToolCallBody,
  TOOL_CALL_OPEN,
  TOOL_CALL_CLOSE,
  type InvalidToolCall,
  type ParsedToolCalls,
  type ToolCall,
  type ToolCallStreamEvent,
} from './tool_calls';
export { pythonJsonDumps, pythonFloatRepr, type PythonJsonOptions } from './python_json';
export { byteLevelBpeFiles, END_OF_TEXT, type TokenizerFiles } from './byte_level_bpe_files';
export { trainByteLevelBpe, type TrainBpeOptions } from './train_bpe';
