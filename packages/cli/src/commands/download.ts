/** `graniteflow download`: a hub model into the standard Hugging Face cache, with progress bars. */
import { resolveModelFolder } from '@graniteflow/granite';
import { COMMON_OPTIONS, flag, formatHelp, parseCommandArgs, stringOption, type OptionTable } from '../args';
import { UsageError } from '../errors';
import type { CliIO } from '../io';
import { downloadProgressBar } from '../progress';
import type { Command } from './common';

const OPTIONS: OptionTable = {
  revision: { type: 'string', value: 'REV', description: 'branch, tag or commit (default main)' },
  'cache-dir': {
    type: 'string',
    value: 'DIR',
    description: 'cache directory (default HF_HUB_CACHE, HF_HOME/hub, ~/.cache/huggingface/hub)',
  },
  offline: {
    type: 'boolean',
    description: 'no network at all: print the folder if the model is already in the cache, else fail (also HF_HUB_OFFLINE=1)',
  },
  ...COMMON_OPTIONS,
};

const REPO_ID = /^[A-Za-z0-9][A-Za-z0-9_.-]*\/[A-Za-z0-9][A-Za-z0-9_.-]*$/;

export const downloadCommand: Command = {
  name: 'download',
  summary: 'download a model from the Hugging Face hub into the standard cache',
  help: () =>
    formatHelp(
      'graniteflow download [options] org/name',
      'Downloads a model repo into the Hugging Face cache (shared with Python tools) and prints its folder. Files already there are reused; ' +
        'an interrupted or stalled download (no data for HF_HUB_DOWNLOAD_TIMEOUT seconds, default 30) resumes when run again. ' +
        'HF_TOKEN, HF_ENDPOINT and HF_HUB_OFFLINE are honoured.',
      OPTIONS,
      ['graniteflow download ibm-granite/granite-4.0-h-micro', 'graniteflow download ibm-granite/granite-4.0-h-tiny --revision main'],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('download', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(downloadCommand.help());
      return 0;
    }
    if (positionals.length !== 1)
      throw new UsageError('download takes one repo id, e.g. graniteflow download ibm-granite/granite-4.0-h-micro.', 'download');
    const repoId = positionals[0];
    if (!REPO_ID.test(repoId)) throw new UsageError(`"${repoId}" is not a hub repo id of the form org/name.`, 'download');
    const quiet = flag(values, 'quiet');
    const folder = await resolveModelFolder(repoId, {
      revision: stringOption(values, 'revision'),
      cacheDir: stringOption(values, 'cache-dir'),
      // Without --offline, undefined (not false) so that HF_HUB_OFFLINE still decides.
      offline: flag(values, 'offline') || undefined,
      onProgress: downloadProgressBar(io.stderr, repoId, quiet),
    });
    io.stdout.write(`${folder}\n`);
    return 0;
  },
};
