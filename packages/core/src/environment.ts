/**
 * The value of environment variable `name`, or undefined where there is none (browsers have no
 * `process`): module-level settings read through this so that loading a module never throws
 * outside Node.
 */
export function environmentVariable(name: string): string | undefined {
  const env = (globalThis as { process?: { env?: Record<string, string | undefined> } }).process?.env;
  return env?.[name];
}
