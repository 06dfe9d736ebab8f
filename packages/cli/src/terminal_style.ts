/**
 * Colour for text meant for a person at a terminal, as plain ANSI SGR codes (no dependency). Off
 * unless the stream is a terminal, and off when the environment asks for none: `NO_COLOR` set to
 * anything but the empty string (https://no-color.org), `FORCE_COLOR=0` (or `false`), or
 * `TERM=dumb`. Nothing here forces colour on where it is off.
 */

/** A stream that may be a terminal (process.stdout, process.stderr, a test buffer). */
export interface MaybeTerminal {
  isTTY?: boolean;
}

/** Whether text written to `stream` may hold colour codes. */
export function colorEnabled(stream: MaybeTerminal, env: NodeJS.ProcessEnv = process.env): boolean {
  if (stream.isTTY !== true) return false;
  if (env.NO_COLOR !== undefined && env.NO_COLOR !== '') return false;
  const force = env.FORCE_COLOR?.toLowerCase();
  if (force === '0' || force === 'false') return false;
  return env.TERM !== 'dumb';
}

/** Wraps text in one style; the identity when colour is off. */
export type Paint = (text: string) => string;

/** The styles the commands use, each the identity when colour is off. */
export interface TerminalStyle {
  readonly enabled: boolean;
  readonly bold: Paint;
  readonly dim: Paint;
  readonly red: Paint;
  readonly green: Paint;
  readonly yellow: Paint;
  readonly cyan: Paint;
  /** Bold and green: the user's prompt. */
  readonly user: Paint;
  /** Bold and cyan: the assistant's label. */
  readonly assistant: Paint;
}

function sgr(enabled: boolean, open: string, close: string): Paint {
  // An empty string stays empty, so that a caller's `if (text)` keeps meaning "nothing to show".
  return enabled ? (text) => (text === '' ? text : `\x1b[${open}m${text}\x1b[${close}m`) : (text) => text;
}

/** The styles for text written to `stream` (see the module comment for when colour is on). */
export function terminalStyle(stream: MaybeTerminal, env: NodeJS.ProcessEnv = process.env): TerminalStyle {
  const on = colorEnabled(stream, env);
  return {
    enabled: on,
    bold: sgr(on, '1', '22'),
    dim: sgr(on, '2', '22'),
    red: sgr(on, '31', '39'),
    green: sgr(on, '32', '39'),
    yellow: sgr(on, '33', '39'),
    cyan: sgr(on, '36', '39'),
    user: sgr(on, '1;32', '39;22'),
    assistant: sgr(on, '1;36', '39;22'),
  };
}
