import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { SafetensorsFile, writeSafetensors, type Module, type Parameter } from '@graniteflow/core';
import type { AdamW } from './adamw';

/** The optimizer's moments, by parameter name (`<name>.exp_avg`, `<name>.exp_avg_sq`, as PyTorch calls them). */
export const OPTIMIZER_FILE = 'optimizer.safetensors';
/** The step count and whatever the caller adds (JSON). */
export const TRAINER_STATE_FILE = 'trainer_state.json';

/** What {@link saveTrainerState} writes to trainer_state.json and {@link loadTrainerState} returns. */
export interface TrainerState {
  /** Optimizer steps taken. */
  step: number;
  /** The caller's own fields (schedule position, tokens seen, loss history, data position...). */
  [key: string]: unknown;
}

/** Storage layout → checkpoint layout (a transposed weight's moments are transposed back). */
function toCheckpointLayout(p: Parameter, t: tf.Tensor): tf.Tensor {
  return p.layout === 'transposed' ? tf.transpose(t) : tf.clone(t);
}

/**
 * Saves what resuming needs besides the weights (save those with the model's own saver, e.g.
 * granite's `saveCheckpoint`, into the same folder): AdamW's moments of every trainable parameter
 * by parameter name, in checkpoint layout, and trainer_state.json with `state` and the step count.
 * Each file is written under a temporary name and renamed into place.
 */
export function saveTrainerState(dir: string, model: Module, optimizer: AdamW, state: Omit<TrainerState, 'step'> = {}): void {
  fs.mkdirSync(dir, { recursive: true });
  const tensors = new Map<string, tf.Tensor>();
  try {
    for (const [name, p] of model.trainableParameters()) {
      const moments = optimizer.momentsFor(p.value);
      if (moments === undefined) continue; // not stepped yet: starts from zero moments either way
      tensors.set(`${name}.exp_avg`, toCheckpointLayout(p, moments.m));
      tensors.set(`${name}.exp_avg_sq`, toCheckpointLayout(p, moments.v));
    }
    writeSafetensors(path.join(dir, OPTIMIZER_FILE), tensors, { metadata: { format: 'graniteflow-adamw' } });
  } finally {
    tf.dispose([...tensors.values()]);
  }
  const file = path.join(dir, TRAINER_STATE_FILE);
  const tmp = `${file}.tmp-${process.pid}`;
  fs.writeFileSync(tmp, `${JSON.stringify({ ...state, step: optimizer.iterations }, null, 2)}\n`);
  fs.renameSync(tmp, file);
}

/**
 * Restores what {@link saveTrainerState} saved into `optimizer` (moments matched to `model`'s
 * parameters by name, shapes checked) and returns the trainer state. Errors name the file and
 * the tensor that does not fit.
 */
export function loadTrainerState(dir: string, model: Module, optimizer: AdamW): TrainerState {
  const stateFile = path.join(dir, TRAINER_STATE_FILE);
  if (!fs.existsSync(stateFile)) throw new Error(`${stateFile} is missing: ${dir} holds no trainer state to resume from.`);
  let state: TrainerState;
  try {
    state = JSON.parse(fs.readFileSync(stateFile, 'utf8')) as TrainerState;
  } catch (err) {
    throw new Error(`${stateFile} is not valid JSON: ${(err as Error).message}`);
  }
  if (!Number.isInteger(state.step) || state.step < 0)
    throw new Error(`${stateFile}: "step" must be a whole number ≥ 0, got ${JSON.stringify(state.step)}.`);
  const file = SafetensorsFile.open(path.join(dir, OPTIMIZER_FILE));
  try {
    const params = new Map(model.trainableParameters());
    for (const name of file.names()) {
      const m = /^(.*)\.(exp_avg|exp_avg_sq)$/.exec(name);
      const p = m ? params.get(m[1]) : undefined;
      if (!m || p === undefined)
        throw new Error(`${path.join(dir, OPTIMIZER_FILE)}: "${name}" is not the moment of a trainable parameter of this model.`);
      if (m[2] === 'exp_avg_sq') continue; // read with its exp_avg
      const read = (key: string) => {
        const t = file.readTensor(key);
        if (t.shape.length !== p.shape.length || t.shape.some((d, i) => d !== p.shape[i])) {
          t.dispose();
          throw new Error(`${path.join(dir, OPTIMIZER_FILE)}: "${key}" has shape [${t.shape}], the parameter [${p.shape}].`);
        }
        const stored = p.layout === 'transposed' ? tf.transpose(t) : t;
        if (stored !== t) t.dispose();
        return stored;
      };
      const first = read(`${m[1]}.exp_avg`);
      const second = read(`${m[1]}.exp_avg_sq`);
      optimizer.setMomentsFor(p.value, first, second);
      tf.dispose([first, second]);
    }
  } finally {
    file.close();
  }
  optimizer.setIterations(state.step);
  return state;
}
