import * as fs from 'node:fs';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Module } from '../module/module';
import { PackedTensor } from '../packed/packed_tensor';
import { SafetensorsFile } from '../safetensors/reader';
import { writeSafetensors } from '../safetensors/writer';
import { ExpertLoraAdapter, isExpertAdaptable, type ExpertAdaptable } from './expert_lora';
import { Linear } from './linear';

/** Options of {@link LoraAdapters.attach}. */
export interface LoraOptions {
  /** Rank r of each adapter. */
  rank: number;
  /** α: the adapter's output is scaled by α / r (default 2r, scale 2). */
  alpha?: number;
  /**
   * Attribute names of the `Linear` layers to adapt (PEFT's `target_modules`). Default: the
   * Mamba-2 projections and the attention projections of Granite hybrids.
   */
  targets?: readonly string[];
  /**
   * Attribute names of the stacked expert weights to adapt (`ExpertLinear`s, PEFT's
   * `target_parameters` with `.weight` appended). Default: the routed experts of Granite hybrids,
   * `input_linear` and `output_linear` of each `block_sparse_moe`; `[]` leaves the experts alone.
   */
  expertTargets?: readonly string[];
  /** Seed of the A matrices' initialization. */
  seed?: number;
}

/** PEFT's default targets for Granite 4.0-H: the mixers' projections. */
export const DEFAULT_LORA_TARGETS = ['in_proj', 'out_proj', 'q_proj', 'k_proj', 'v_proj', 'o_proj'] as const;

/** The default expert targets: both stacked weights of Granite's routed experts. */
export const DEFAULT_LORA_EXPERT_TARGETS = ['input_linear', 'output_linear'] as const;

/** One adapted layer: a `Linear` or a stacked expert weight. */
type AdaptedLayer =
  | { path: string; linear: Linear; adapter: LoraAdapter }
  | { path: string; experts: Module & ExpertAdaptable; adapter: ExpertLoraAdapter };

/** PEFT's file names. */
export const ADAPTER_CONFIG_FILE = 'adapter_config.json';
export const ADAPTER_WEIGHTS_FILE = 'adapter_model.safetensors';

/**
 * One low-rank adapter: `Δy = (α/r) · x·Aᵀ·Bᵀ`, A [r, in] and B [out, r] as PEFT stores them
 * (`lora_A.weight`, `lora_B.weight`). A starts uniform in ±1/√in (PEFT's Kaiming init), B at
 * zero, so a new adapter changes nothing until trained.
 */
export class LoraAdapter extends Module {
  readonly lora_A: Linear;
  readonly lora_B: Linear;

  constructor(
    readonly inFeatures: number,
    readonly outFeatures: number,
    readonly rank: number,
    readonly scale: number,
  ) {
    super();
    this.lora_A = new Linear(inFeatures, rank);
    this.lora_B = new Linear(rank, outFeatures);
    const bound = 1 / Math.sqrt(inFeatures);
    this.lora_A.weight.setInitial(() => tf.randomUniform([rank, inFeatures], -bound, bound));
    this.lora_B.weight.setInitial(() => tf.zeros([outFeatures, rank]));
  }

  /** x [..., in] → Δy [..., out] */
  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => tf.mul(this.lora_B.forward(this.lora_A.forward(x)), this.scale));
  }

  /** (α/r)·B·A [out, in]: what merging adds to the base weight (checkpoint layout). */
  delta(): tf.Tensor {
    return tf.tidy(() => {
      const a = this.lora_A.weight.checkpointValue(); // [r, in]
      const b = this.lora_B.weight.checkpointValue(); // [out, r]
      return tf.mul(tf.matMul(b, a), this.scale);
    });
  }
}

/**
 * The LoRA adapters on a model's `Linear` layers, as one `Module`: its parameters are named after
 * the layers (`model.layers.0.mamba.in_proj.lora_A.weight`), so `trainableVariables()` is the
 * optimizer's `varList` and the base model stays frozen and untouched (its checkpoint keeps its
 * own names). Works on packed bases too: the adapters stay float32, gradients reach them through
 * the packed matmul. Save in PEFT's layout, load it back, or merge into the base weights.
 */
export class LoraAdapters extends Module {
  private constructor(
    private readonly entries: readonly AdaptedLayer[],
    readonly rank: number,
    readonly alpha: number,
    readonly targets: readonly string[],
    readonly expertTargets: readonly string[],
  ) {
    super();
  }

  protected override *children(): Generator<[string, Module]> {
    for (const { path: p, adapter } of this.entries) yield [p, adapter];
  }

  /** The adapted layers' dotted paths, in model order. */
  get paths(): string[] {
    return this.entries.map((e) => e.path);
  }

  /**
   * Adds an adapter to every `Linear` of `model` whose attribute name is in `options.targets` and
   * to every stacked expert weight whose module's name is in `options.expertTargets`, and freezes
   * the rest of the model. Throws when none matches (naming the layers there are) or when a layer
   * already has one.
   */
  static attach(model: Module, options: LoraOptions): LoraAdapters {
    const { rank } = options;
    if (!Number.isInteger(rank) || rank < 1) throw new RangeError(`LoRA rank must be a whole number ≥ 1, got ${rank}.`);
    const alpha = options.alpha ?? 2 * rank;
    if (!(alpha > 0) || !Number.isFinite(alpha)) throw new RangeError(`LoRA alpha must be a positive number, got ${alpha}.`);
    const targets = options.targets ?? DEFAULT_LORA_TARGETS;
    const expertTargets = options.expertTargets ?? DEFAULT_LORA_EXPERT_TARGETS;
    const modules = [...model.namedModules()];
    const linears = modules.filter((e): e is [string, Linear] => e[1] instanceof Linear);
    const stacks = modules.filter((e): e is [string, Module & ExpertAdaptable] => isExpertAdaptable(e[1]));
    const named =
      (list: readonly string[]) =>
      ([p]: [string, Module]) =>
        list.includes(p.split('.').pop()!);
    const chosenLinears = linears.filter(named(targets));
    const chosenStacks = stacks.filter(named(expertTargets));
    if (chosenLinears.length + chosenStacks.length === 0) {
      const names = (found: [string, Module][]) => [...new Set(found.map(([p]) => p.split('.').pop()))].slice(0, 8).join(', ') || '(none)';
      throw new RangeError(
        `LoRA targets ${[...targets, ...expertTargets].join(', ')} match no layer; the model's Linear layers are named ${names(linears)}` +
          ` and its expert weights ${names(stacks)}.`,
      );
    }
    const entries: AdaptedLayer[] = [];
    for (const [p, linear] of chosenLinears) {
      if (linear.adapter !== null) throw new RangeError(`${p} already has a LoRA adapter.`);
      entries.push({ path: p, linear, adapter: new LoraAdapter(linear.inFeatures, linear.outFeatures, rank, alpha / rank) });
    }
    for (const [p, experts] of chosenStacks) {
      if (experts.adapter !== null) throw new RangeError(`${p} already has a LoRA adapter.`);
      const [e, rows, cols] = experts.weight.shape;
      entries.push({ path: p, experts, adapter: new ExpertLoraAdapter(e, rows, cols, rank, alpha / rank) });
    }
    const adapters = new LoraAdapters(entries, rank, alpha, [...targets], [...expertTargets]);
    if (options.seed !== undefined) {
      // A's seeded draw; B stays zero.
      for (const [name, p] of adapters.namedParameters()) {
        if (!name.endsWith('lora_A.weight')) continue;
        const bound = 1 / Math.sqrt(p.shape[1]);
        const seed = options.seed;
        p.setInitial(() => tf.randomUniform([...p.shape], -bound, bound, 'float32', seed + name.length * 7919));
      }
    }
    for (const e of entries) {
      if ('linear' in e) e.linear.attachAdapter(e.adapter);
      else e.experts.attachAdapter(e.adapter);
    }
    for (const [, p] of model.namedParameters()) p.trainable = false;
    return adapters;
  }

  /**
   * Writes PEFT's adapter folder: adapter_config.json and adapter_model.safetensors with the keys
   * `base_model.model.<layer>.lora_A.weight` / `lora_B.weight`, as `peft` saves and loads them.
   */
  save(dir: string, options: { baseModel?: string } = {}): string[] {
    fs.mkdirSync(dir, { recursive: true });
    const tensors = new Map<string, tf.Tensor>();
    try {
      for (const [name, p] of this.namedParameters()) tensors.set(`base_model.model.${name}`, p.checkpointValue());
      writeSafetensors(path.join(dir, ADAPTER_WEIGHTS_FILE), tensors, { metadata: { format: 'pt' } });
    } finally {
      tf.dispose([...tensors.values()]);
    }
    const config = {
      peft_type: 'LORA',
      task_type: 'CAUSAL_LM',
      base_model_name_or_path: options.baseModel ?? null,
      r: this.rank,
      lora_alpha: this.alpha,
      lora_dropout: 0,
      bias: 'none',
      fan_in_fan_out: false,
      target_modules: [...this.targets],
      target_parameters: this.expertTargets.map((t) => `${t}.weight`),
      inference_mode: true,
    };
    const file = path.join(dir, ADAPTER_CONFIG_FILE);
    fs.writeFileSync(`${file}.tmp-${process.pid}`, `${JSON.stringify(config, null, 2)}\n`);
    fs.renameSync(`${file}.tmp-${process.pid}`, file);
    return [ADAPTER_WEIGHTS_FILE, ADAPTER_CONFIG_FILE];
  }

  /** Attaches the adapters saved in a PEFT folder to `model` (LoRA, no bias, no fan-in-fan-out). */
  static load(model: Module, dir: string): LoraAdapters {
    const configFile = path.join(dir, ADAPTER_CONFIG_FILE);
    let config: {
      peft_type?: unknown;
      r?: unknown;
      lora_alpha?: unknown;
      target_modules?: unknown;
      target_parameters?: unknown;
      bias?: unknown;
      fan_in_fan_out?: unknown;
    };
    try {
      config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    } catch (err) {
      throw new Error(`${configFile} cannot be read as JSON: ${(err as Error).message}`);
    }
    if (config.peft_type !== 'LORA')
      throw new Error(`${configFile}: peft_type is ${JSON.stringify(config.peft_type)}; only "LORA" adapters are supported.`);
    if (config.bias !== undefined && config.bias !== 'none')
      throw new Error(`${configFile}: bias ${JSON.stringify(config.bias)} is not supported (only "none").`);
    if (config.fan_in_fan_out === true) throw new Error(`${configFile}: fan_in_fan_out adapters are not supported.`);
    const targets = Array.isArray(config.target_modules) ? (config.target_modules as string[]) : [...DEFAULT_LORA_TARGETS];
    // PEFT names a parameter target by its path's tail ("input_linear.weight"); no list: none.
    const parameterTargets = Array.isArray(config.target_parameters) ? (config.target_parameters as string[]) : [];
    const notWeights = parameterTargets.filter((t) => !t.endsWith('.weight'));
    if (notWeights.length > 0)
      throw new Error(
        `${configFile}: target_parameters ${notWeights.join(', ')} do not name a .weight; only expert weights can be adapted.`,
      );
    const expertTargets = parameterTargets.map((t) => t.slice(0, -'.weight'.length).split('.').pop()!);
    const adapters = LoraAdapters.attach(model, { rank: Number(config.r), alpha: Number(config.lora_alpha), targets, expertTargets });
    const file = SafetensorsFile.open(path.join(dir, ADAPTER_WEIGHTS_FILE));
    try {
      const shapes = new Map<string, readonly number[]>();
      for (const key of file.names()) shapes.set(key.replace(/^base_model\.model\./, '').replace('.default.', '.'), file.info(key).shape);
      adapters.checkStateDictShapes(shapes, { source: path.join(dir, ADAPTER_WEIGHTS_FILE) });
      for (const key of file.names()) {
        const name = key.replace(/^base_model\.model\./, '').replace('.default.', '.');
        const param = new Map(adapters.namedParameters()).get(name)!;
        param.assign(file.readTensor(key));
      }
    } catch (err) {
      adapters.detach();
      throw err;
    } finally {
      file.close();
    }
    return adapters;
  }

  /**
   * Adds each adapter into its base weight (W ← W + (α/r)·B·A; a packed weight is unpacked, added
   * to and packed again in its format) and removes the adapters; the model then runs at the base's
   * speed with the adapted behaviour.
   */
  merge(): void {
    for (const entry of this.entries) {
      const weight = 'linear' in entry ? entry.linear.weight : entry.experts.weight;
      const delta = entry.adapter.delta();
      const packed = weight.packed;
      const base = weight.checkpointValue();
      const merged = tf.add(base, delta);
      tf.dispose([base, delta]);
      if (packed !== null) {
        const format = packed.format;
        weight.assignPacked(PackedTensor.fromTensor(format, merged));
        merged.dispose();
      } else {
        weight.assign(merged);
      }
    }
    this.detach();
  }

  /** Removes the adapters from the model and frees them (the base is left as it is). */
  detach(): void {
    for (const entry of this.entries) {
      if ('linear' in entry) entry.linear.attachAdapter(null);
      else entry.experts.attachAdapter(null);
    }
    this.dispose();
  }
}
