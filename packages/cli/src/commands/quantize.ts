/**
 * `graniteflow quantize`: a float checkpoint (folder or hub id) into a packed one (q4_0, q8_0 or
 * bf16 matrices; see the core README, "Packed checkpoints"), streamed tensor by tensor into a
 * folder that appears complete or not at all.
 */
import { randomBytes } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Checkpoint, PACKED_FORMATS, planQuantization, quantizeCheckpoint, SafetensorsError, type PackedFormat } from '@graniteflow/core';
import { formatBytes, MODEL_FILES, planWeightDtypes, resolveModelFolder } from '@graniteflow/granite';
import { COMMON_OPTIONS, flag, formatHelp, MODEL_OPTIONS, parseCommandArgs, stringOption, type OptionTable } from '../args';
import { CliError, UsageError } from '../errors';
import type { CliIO } from '../io';
import { resolveModelArg } from '../model_source';
import { downloadProgressBar, ProgressBar } from '../progress';
import type { Command } from './common';

const OPTIONS: OptionTable = {
  model: {
    ...MODEL_OPTIONS.model,
    description: 'the float checkpoint: a model folder, a Hugging Face repo id (org/name) or a preset name',
  },
  revision: MODEL_OPTIONS.revision,
  'cache-dir': MODEL_OPTIONS['cache-dir'],
  offline: MODEL_OPTIONS.offline,
  dtype: { type: 'string', short: 'd', value: 'DTYPE', description: `what the matrix weights become: ${PACKED_FORMATS.join(', ')}` },
  out: { type: 'string', short: 'o', value: 'DIR', description: 'the folder to write (must not exist, or be empty, unless --force)' },
  force: { type: 'boolean', description: 'replace DIR if it already holds files (once the new checkpoint is complete)' },
  'max-shard-size': {
    type: 'string',
    value: 'SIZE',
    description: 'start a new shard past SIZE of tensor data, e.g. 2GB or 500MiB (default 4GB)',
  },
  ...COMMON_OPTIONS,
};

/** Files copied next to the weights when the source has them. */
const SIDE_FILES = [
  ...MODEL_FILES.required,
  ...MODEL_FILES.tokenizer,
  ...MODEL_FILES.extra,
  'vocab.json',
  'merges.txt',
  'added_tokens.json',
];

const SIZE_UNITS: Record<string, number> = {
  '': 1,
  b: 1,
  kb: 1e3,
  mb: 1e6,
  gb: 1e9,
  tb: 1e12,
  kib: 2 ** 10,
  mib: 2 ** 20,
  gib: 2 ** 30,
  tib: 2 ** 40,
};

/** `--max-shard-size`: a number of bytes with an optional unit (KB, MB, GB, KiB, MiB, GiB). */
function parseSize(raw: string): number {
  const m = /^\s*(\d+(?:\.\d+)?)\s*([a-z]*)\s*$/i.exec(raw);
  const unit = m ? SIZE_UNITS[m[2].toLowerCase()] : undefined;
  const bytes = m && unit !== undefined ? Math.floor(Number(m[1]) * unit) : NaN;
  if (!Number.isSafeInteger(bytes) || bytes < 1) {
    throw new UsageError(`--max-shard-size must be a size such as 4GB, 500MB or 2GiB, got "${raw}".`, 'quantize');
  }
  return bytes;
}

/** Whether `inner` is `outer` or lies inside it. */
function within(inner: string, outer: string): boolean {
  const rel = path.relative(outer, inner);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Checks `--out` before anything is read: where the folder goes, and what would be replaced. */
function checkOut(out: string, force: boolean, sourceFolder: string | undefined): { parent: string; replace: boolean } {
  const parent = path.dirname(out);
  const parentStat = fs.statSync(parent, { throwIfNoEntry: false });
  if (!parentStat?.isDirectory()) {
    throw new CliError(
      `Cannot write ${out}: ${parent} ${parentStat ? 'is not a folder' : 'does not exist'} (quantize creates only the --out folder itself).`,
    );
  }
  if (sourceFolder !== undefined && (within(out, sourceFolder) || within(sourceFolder, out))) {
    throw new CliError(
      `--out ${out} ${out === sourceFolder ? 'is' : within(out, sourceFolder) ? 'is inside' : 'holds'} the source model folder ${sourceFolder}; choose a folder of its own.`,
    );
  }
  const stat = fs.lstatSync(out, { throwIfNoEntry: false });
  if (stat === undefined) return { parent, replace: false };
  if (stat.isSymbolicLink()) throw new CliError(`--out ${out} is a symbolic link; give the folder itself.`);
  if (!stat.isDirectory()) throw new CliError(`--out ${out} exists and is not a folder.`);
  const entries = fs.readdirSync(out);
  if (entries.length > 0 && !force) {
    throw new CliError(
      `--out ${out} already holds ${entries.length} file${entries.length === 1 ? '' : 's'} (e.g. ${entries[0]}); pass --force to replace it, or choose another folder.`,
    );
  }
  return { parent, replace: true };
}

/** Puts the finished folder `tmp` at `out`, replacing what is there only once `tmp` is complete. */
function moveIntoPlace(tmp: string, out: string, replace: boolean): void {
  if (!replace) {
    fs.renameSync(tmp, out);
    return;
  }
  const old = path.join(path.dirname(out), `.${path.basename(out)}.graniteflow-old-${process.pid}-${randomBytes(4).toString('hex')}`);
  fs.renameSync(out, old);
  try {
    fs.renameSync(tmp, out);
  } catch (err) {
    fs.renameSync(old, out);
    throw err;
  }
  fs.rmSync(old, { recursive: true, force: true });
}

export const quantizeCommand: Command = {
  name: 'quantize',
  summary: 'write a packed (q4_0, q8_0 or bf16) copy of a checkpoint that loads by memory map',
  help: () =>
    formatHelp(
      'graniteflow quantize --model M --dtype q4_0|q8_0|bf16 --out DIR [options]',
      'Reads a float (BF16 / F16 / F32) checkpoint tensor by tensor and writes DIR: model.safetensors (or shards and an index) with the matrix ' +
        'weights packed in GGUF block layouts (the router, norms, A_log, D, dt_bias and conv1d stay as they are), plus config.json, the ' +
        'tokenizer files, generation_config.json and the chat template. Memory stays at a few megabytes whatever the model size. DIR is ' +
        'written under a temporary name next to it and appears only when complete; nothing is left behind on an error or Ctrl-C.',
      OPTIONS,
      [
        'graniteflow quantize --model ibm-granite/granite-4.0-h-micro --dtype q4_0 --out ./granite-4.0-h-micro-q4_0',
        'graniteflow quantize --model ./my-model --dtype q8_0 --out ./my-model-q8_0 --max-shard-size 2GB',
      ],
    ),
  async run(argv: readonly string[], io: CliIO): Promise<number> {
    const { values, positionals } = parseCommandArgs('quantize', argv, OPTIONS);
    if (flag(values, 'help')) {
      io.stdout.write(quantizeCommand.help());
      return 0;
    }
    if (positionals.length) throw new UsageError(`quantize takes no positional arguments (got "${positionals[0]}").`, 'quantize');
    const dtype = stringOption(values, 'dtype');
    if (dtype === undefined) throw new UsageError(`quantize needs --dtype (${PACKED_FORMATS.join(', ')}).`, 'quantize');
    if (!(PACKED_FORMATS as readonly string[]).includes(dtype)) {
      throw new UsageError(`--dtype must be one of ${PACKED_FORMATS.join(', ')}; got "${dtype}".`, 'quantize');
    }
    const format = dtype as PackedFormat;
    const modelArg = stringOption(values, 'model');
    if (modelArg === undefined)
      throw new UsageError('quantize needs --model: the folder or hub repo id of the checkpoint to quantize.', 'quantize');
    const outArg = stringOption(values, 'out');
    if (outArg === undefined || outArg.trim() === '') throw new UsageError('quantize needs --out DIR: the folder to write.', 'quantize');
    const maxShardBytesArg = stringOption(values, 'max-shard-size');
    const maxShardBytes = maxShardBytesArg === undefined ? undefined : parseSize(maxShardBytesArg);
    const quiet = flag(values, 'quiet');
    const force = flag(values, 'force');
    const out = path.resolve(outArg);

    const source = resolveModelArg(modelArg);
    // A local folder is checked against --out before anything is read; a hub snapshot lives in the cache.
    checkOut(out, force, source.kind === 'hub' ? undefined : source.folder);
    let folder: string;
    if (source.kind === 'hub') {
      folder = await resolveModelFolder(source.repoId, {
        revision: stringOption(values, 'revision'),
        cacheDir: stringOption(values, 'cache-dir'),
        offline: flag(values, 'offline') || undefined,
        onProgress: downloadProgressBar(io.stderr, source.repoId, quiet),
      });
    } else {
      folder = source.folder;
    }
    if (!fs.existsSync(path.join(folder, 'config.json'))) {
      throw new CliError(`${folder} has no config.json: it is not a Hugging Face model folder.`);
    }
    const { parent, replace } = checkOut(out, force, folder);

    const checkpoint = Checkpoint.open(folder);
    const tmp = path.join(parent, `.${path.basename(out)}.graniteflow-quantize-${process.pid}-${randomBytes(4).toString('hex')}`);
    const controller = new AbortController();
    const onSigint = () => controller.abort(Object.assign(new Error('Cancelled.'), { name: 'AbortError' }));
    process.once('SIGINT', onSigint);
    try {
      const alreadyPacked = checkpoint.names().find((name) => checkpoint.info(name).packed !== undefined);
      if (alreadyPacked !== undefined) {
        throw new CliError(
          `${folder} is already a packed checkpoint (${alreadyPacked} is ${checkpoint.info(alreadyPacked).packed!.format}); quantize from the original float checkpoint instead.`,
        );
      }
      const plan = planWeightDtypes(
        checkpoint.names().map((name) => [name, checkpoint.info(name).shape] as const),
        { dtype: format },
      );
      const policy = (name: string) => plan.dtypes.get(name) ?? 'f32';
      if (!quiet) for (const note of plan.notes) io.stderr.write(`Note: ${note}\n`);
      const { totalBytes } = planQuantization(checkpoint, policy);
      const free = fs.statfsSync(parent);
      if (free.bavail * free.bsize < totalBytes) {
        throw new CliError(
          `Not enough disk space for ${out}: the packed checkpoint needs ${formatBytes(totalBytes)} and ${parent} has ${formatBytes(free.bavail * free.bsize)} free.`,
        );
      }
      fs.mkdirSync(tmp);
      const bar = new ProgressBar(io.stderr, `Quantizing ${source.name} to ${format}`, { silent: quiet });
      let result;
      try {
        result = await quantizeCheckpoint(checkpoint, tmp, {
          policy,
          maxShardBytes,
          signal: controller.signal,
          onProgress: (p) => bar.update(p.writtenBytes, p.totalBytes, p.tensor),
        });
      } catch (err) {
        if (err instanceof SafetensorsError && within(err.file, tmp)) {
          // A failed write of ours, not a damaged source: say where it was going.
          throw new CliError(`Could not write ${out}: ${err.message.split(tmp).join(out)}. Nothing was written.`);
        }
        throw err;
      }
      bar.done();
      for (const file of SIDE_FILES) {
        if (fs.existsSync(path.join(folder, file))) fs.copyFileSync(path.join(folder, file), path.join(tmp, file));
      }
      controller.signal.throwIfAborted();
      moveIntoPlace(tmp, out, replace);
      if (!quiet) {
        const packed =
          Object.entries(result.packed)
            .map(([f, n]) => `${n} packed as ${f}`)
            .join(', ') || 'none packed';
        io.stderr.write(
          `Wrote ${out}: ${checkpoint.names().length} tensors (${packed}, ${result.kept} kept as they were), ` +
            `${formatBytes(result.totalBytes)} in ${result.files.filter((f) => f.endsWith('.safetensors')).length} file(s).\n`,
        );
      }
      io.stdout.write(`${out}\n`);
      return 0;
    } finally {
      process.off('SIGINT', onSigint);
      checkpoint.close();
      fs.rmSync(tmp, { recursive: true, force: true });
    }
  },
};
