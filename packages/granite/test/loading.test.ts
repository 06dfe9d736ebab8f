import { execFileSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { initBackend, SafetensorsError, StateDictError, writeSafetensors } from '@graniteflow/core';
import { describeBackends, expectNoTensorLeak } from '@graniteflow/core/testing';
import {
  ConfigError,
  GraniteMoeHybridForCausalLM,
  InsufficientMemoryError,
  ModelFileError,
  TokenizerError,
  UnsupportedModelError,
  WeightPolicyError,
  assertFitsInMemory,
  estimateMemory,
  fromPretrained,
  parseConfig,
  preset,
  writeRandomCheckpoint,
  type LoadNote,
  type LoadProgress,
} from '../src';
import { CHAT_TINY_DIR, TINY_MOE_DIR } from './helpers/golden';
import { startHubServer, type HubServer } from './helpers/hub_server';

let tmp: string;
let server: HubServer;

beforeAll(async () => {
  await initBackend('cpu');
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-load-'));
  server = await startHubServer({
    'ibm-test/tiny-moe': {
      dir: TINY_MOE_DIR,
      files: ['config.json', 'model.safetensors.index.json', 'model-00001-of-00002.safetensors', 'model-00002-of-00002.safetensors'],
      commit: 'a'.repeat(40),
    },
  });
});
afterAll(async () => {
  await server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function copyModel(from: string, name: string): string {
  const dir = path.join(tmp, name);
  fs.cpSync(from, dir, { recursive: true });
  for (const f of fs.readdirSync(dir)) fs.chmodSync(path.join(dir, f), 0o644);
  return dir;
}

function logitsOf(granite: Awaited<ReturnType<typeof fromPretrained>>): Float32Array {
  return tf.tidy(() => granite.model.forward(tf.tensor2d([[5, 6, 7]], undefined, 'int32')).logits!.dataSync() as Float32Array);
}

describe('fromPretrained', () => {
  it('downloads a sharded repo from the hub into the HF cache layout, with progress, then loads it', async () => {
    const cacheDir = path.join(tmp, 'hf-cache');
    const events: LoadProgress[] = [];
    const fromHub = await fromPretrained('ibm-test/tiny-moe', { cacheDir, endpoint: server.url, onProgress: (p) => events.push(p) });
    expect(fs.existsSync(path.join(cacheDir, 'models--ibm-test--tiny-moe', 'refs', 'main'))).toBe(true);
    expect(fromHub.folder).toContain(path.join('models--ibm-test--tiny-moe', 'snapshots', 'a'.repeat(40)));
    expect(events.some((e) => e.phase === 'download' && e.done)).toBe(true);
    const weights = events.filter((e): e is Extract<LoadProgress, { phase: 'weights' }> => e.phase === 'weights');
    expect(weights[weights.length - 1]).toMatchObject({ loadedTensors: weights[0].totalTensors, loadedBytes: weights[0].totalBytes });
    const local = await fromPretrained(TINY_MOE_DIR);
    expect(Array.from(logitsOf(fromHub))).toEqual(Array.from(logitsOf(local)));
    fromHub.dispose();
    local.dispose();
    // A second load is served from the cache without a request.
    server.log.length = 0;
    (await fromPretrained('ibm-test/tiny-moe', { cacheDir, endpoint: server.url })).dispose();
    expect(server.log).toEqual([]);
  });

  it('reports every wrongly shaped, missing and unexpected tensor together and loads nothing', async () => {
    const dir = copyModel(CHAT_TINY_DIR, 'bad-shapes');
    const cfg = parseConfig(JSON.parse(fs.readFileSync(path.join(dir, 'config.json'), 'utf8')));
    const skeleton = new GraniteMoeHybridForCausalLM(cfg);
    const tensors: Record<string, { shape: number[]; data: Float32Array }> = {};
    for (const [name, p] of skeleton.namedParameters()) tensors[name] = { shape: [...p.shape], data: new Float32Array(p.size) };
    delete tensors['model.layers.1.self_attn.k_proj.weight'];
    tensors['model.layers.0.mamba.A_log'] = { shape: [9], data: new Float32Array(9) };
    tensors['model.layers.1.mamba.A_log'] = { shape: [8], data: new Float32Array(8) };
    writeSafetensors(path.join(dir, 'model.safetensors'), tensors);
    const before = tf.memory().numTensors;
    const err = await fromPretrained(dir).catch((e) => e);
    expect(err).toBeInstanceOf(StateDictError);
    expect(err.missing).toEqual(['model.layers.1.self_attn.k_proj.weight']);
    expect(err.unexpected).toEqual(['model.layers.1.mamba.A_log']);
    expect(err.mismatched).toEqual([{ name: 'model.layers.0.mamba.A_log', expected: [8], actual: [9] }]);
    expect(err.message).toContain(dir);
    skeleton.dispose();
    expect(tf.memory().numTensors).toBe(before);
  });

  it('names the file and tensor of a corrupt checkpoint', async () => {
    const dir = copyModel(CHAT_TINY_DIR, 'truncated');
    const file = path.join(dir, 'model.safetensors');
    fs.truncateSync(file, fs.statSync(file).size - 100);
    await expect(fromPretrained(dir)).rejects.toThrow(SafetensorsError);
    await expect(fromPretrained(dir)).rejects.toThrow(/model\.safetensors: tensor ".*": data_offsets .* run past the end/);
  });

  it('rejects an unsupported model_type and a bad config field by name', async () => {
    const dir = copyModel(CHAT_TINY_DIR, 'llama');
    const configFile = path.join(dir, 'config.json');
    const config = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    fs.writeFileSync(configFile, JSON.stringify({ ...config, model_type: 'llama' }));
    await expect(fromPretrained(dir)).rejects.toThrow(UnsupportedModelError);
    await expect(fromPretrained(dir)).rejects.toThrow(
      /model_type "llama" is not supported; graniteflow runs .*"granitemoehybrid" \(IBM Granite 4\.0: hybrid/,
    );
    fs.writeFileSync(configFile, JSON.stringify({ ...config, num_key_value_heads: 3 }));
    await expect(fromPretrained(dir)).rejects.toThrow(ConfigError);
    await expect(fromPretrained(path.join(tmp, 'nowhere'))).rejects.toThrow(/nowhere/);
  });

  it('refuses a model that cannot fit before reading any weight, saying what to do', async () => {
    const tiny = preset('granite-4.0-h-tiny');
    const estimate = estimateMemory(tiny, { contextLength: 8192 });
    const GiB = 1024 ** 3;
    expect(() => assertFitsInMemory(estimate, 'wasm', 64 * GiB, 64 * GiB)).toThrow(InsufficientMemoryError);
    expect(() => assertFitsInMemory(estimate, 'wasm', 64 * GiB, 64 * GiB)).toThrow(/at dtype f32 .*wasm backend can hold .*--backend cpu/);
    expect(assertFitsInMemory(estimate, 'cpu', 4 * GiB, 64 * GiB)).toMatch(
      /only 4\.0 GiB of this machine's 64\.0 GiB of memory is free now/,
    );
    expect(() => assertFitsInMemory(estimateMemory(preset('granite-4.0-h-350m')), 'wasm', 64 * GiB, 64 * GiB)).not.toThrow();
    // A folder whose config is h-tiny-sized is refused from its config alone (no weights exist).
    const dir = path.join(tmp, 'huge');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...tiny, time_step_limit: null }));
    await expect(fromPretrained(dir, { backend: 'wasm' })).rejects.toThrow(InsufficientMemoryError);
    await initBackend('cpu');
  });

  it('refuses a context that cannot fit a loaded model before any work, naming the context', async () => {
    const granite = await fromPretrained(TINY_MOE_DIR, { backend: 'wasm' });
    try {
      expect(granite.assertContextFits(4096).contextLength).toBe(4096);
      expect(() => granite.assertContextFits(1e9)).toThrow(InsufficientMemoryError);
      expect(() => granite.assertContextFits(1e9)).toThrow(
        /state and KV cache for 1 × 1000000000 tokens \+ .* of activations for a prefill chunk of 512 tokens\), more than the wasm backend can hold/,
      );
    } finally {
      granite.dispose();
    }
  });

  it('checks memory at the dtype asked for: full H-Micro is refused on wasm at f32 (naming q4_0) and passes at q4_0', async () => {
    const dir = path.join(tmp, 'micro-config-only');
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...preset('granite-4.0-h-micro'), time_step_limit: null }));
    const refused = await fromPretrained(dir, { backend: 'wasm', dtype: 'f32' }).catch((e) => e);
    expect(refused).toBeInstanceOf(InsufficientMemoryError);
    expect(refused.message).toMatch(
      /^This model at dtype f32 needs about 12\.2 GiB .* more than the wasm backend can hold .* At dtype q4_0 it needs about 1\.9 GiB, which fits: load it with dtype 'q4_0' \(--dtype q4_0\)\./,
    );
    // At q4_0 the check passes and loading goes on, to the weights this folder does not have.
    await expect(fromPretrained(dir, { backend: 'wasm', dtype: 'q4_0' })).rejects.toThrow(
      /no model\.safetensors or model\.safetensors\.index\.json in this folder/,
    );
    await initBackend('cpu');
  });

  it('refuses an unknown dtype or an override naming no weight before reading anything', async () => {
    await expect(fromPretrained(path.join(tmp, 'nowhere'), { dtype: 'q5' as 'q4_0' })).rejects.toThrow(
      new WeightPolicyError('dtype must be one of f32, bf16, q8_0, q4_0; got "q5".'),
    );
    const before = tf.memory().numTensors;
    await expect(
      fromPretrained(CHAT_TINY_DIR, { dtype: 'q8_0', dtypeOverrides: { 'model.layers.*.mamba.x_proj.weight': 'f32' } }),
    ).rejects.toThrow(/dtypeOverrides "model\.layers\.\*\.mamba\.x_proj\.weight" matches no parameter of this model/);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('keeps float32, and says so, the weights whose rows are not whole blocks (a shared MLP of 40)', async () => {
    const cfg = parseConfig({
      ...JSON.parse(fs.readFileSync(path.join(CHAT_TINY_DIR, 'config.json'), 'utf8')),
      shared_intermediate_size: 40,
    });
    const dir = path.join(tmp, 'shared-40');
    writeRandomCheckpoint(dir, cfg, { seed: 5, std: 0.2 });
    const notes: LoadNote[] = [];
    const granite = await fromPretrained(dir, { dtype: 'q4_0', onNote: (n) => notes.push(n) });
    expect(notes).toEqual(
      cfg.layer_types.map((_, i) => ({
        kind: 'dtype',
        message: `model.layers.${i}.shared_mlp.output_linear.weight [64,40] stays f32: its rows of 40 weights are not whole q4_0 blocks of 32.`,
      })),
    );
    const dtypes = new Map([...granite.model.namedParameters()].map(([n, p]) => [n, p.dtype]));
    expect(dtypes.get('model.layers.0.shared_mlp.output_linear.weight')).toBe('f32');
    expect(dtypes.get('model.layers.0.shared_mlp.input_linear.weight')).toBe('q4_0');
    await expectNoTensorLeak(async () => {
      for await (const _ of granite.generate([5, 6, 7], { maxNewTokens: 3 })) void _;
    });
    granite.dispose();
  });

  it('refuses a million layers by name within seconds, before allocating anything', async () => {
    const dir = copyModel(CHAT_TINY_DIR, 'million-layers');
    const configFile = path.join(dir, 'config.json');
    const { layer_types: _dropped, ...config } = JSON.parse(fs.readFileSync(configFile, 'utf8'));
    fs.writeFileSync(configFile, JSON.stringify({ ...config, num_hidden_layers: 1_000_000 }));
    const before = tf.memory().numTensors;
    const started = Date.now();
    const err = await fromPretrained(dir).catch((e) => e);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeInstanceOf(ConfigError);
    expect(err.message).toBe(`${configFile}: config field "num_hidden_layers" must be an integer from 1 to 4096, got 1000000`);
    expect(tf.memory().numTensors).toBe(before);
  });

  it('refuses the largest config within the limits from its estimate alone', async () => {
    const dir = path.join(tmp, 'largest');
    fs.mkdirSync(dir);
    const layers = 4096;
    fs.writeFileSync(
      path.join(dir, 'config.json'),
      JSON.stringify({
        ...preset('granite-4.0-h-small'),
        time_step_limit: null,
        num_hidden_layers: layers,
        layer_types: Array.from({ length: layers }, (_, i) => (i % 8 === 5 ? 'attention' : 'mamba')),
        hidden_size: 65_536,
        vocab_size: 4_194_304,
        num_local_experts: 4096,
        num_experts_per_tok: 8,
        intermediate_size: 262_144,
        mamba_n_heads: 8192,
        mamba_d_head: 'auto',
      }),
    );
    const started = Date.now();
    const err = await fromPretrained(dir, { backend: 'cpu' }).catch((e) => e);
    expect(Date.now() - started).toBeLessThan(5000);
    expect(err).toBeInstanceOf(InsufficientMemoryError);
    expect(err.message).toMatch(
      /at dtype f32 needs about [\d.]+ EiB .* more than the cpu backend can hold \(80% of this machine's [\d.]+ [KMGT]iB of memory/,
    );
  });

  describe('model files that are not regular files, or not valid', () => {
    it.each([
      [
        'config.json',
        'a FIFO',
        (f: string) => execFileSync('mkfifo', [f]),
        ModelFileError,
        /config\.json is a FIFO \(named pipe\), expected a regular file\.$/,
      ],
      [
        'config.json',
        'a directory',
        (f: string) => fs.mkdirSync(f),
        ModelFileError,
        /config\.json is a directory, expected a regular file\.$/,
      ],
      [
        'config.json',
        'a symbolic link loop',
        (f: string) => fs.symlinkSync('config.json', f),
        ModelFileError,
        /config\.json is a symbolic link loop \(ELOOP\), expected a regular file\.$/,
      ],
      [
        'generation_config.json',
        'a FIFO',
        (f: string) => execFileSync('mkfifo', [f]),
        ModelFileError,
        /generation_config\.json is a FIFO \(named pipe\), expected a regular file\.$/,
      ],
      [
        'tokenizer.json',
        'a FIFO',
        (f: string) => execFileSync('mkfifo', [f]),
        TokenizerError,
        /Cannot read .*tokenizer\.json: it is a FIFO \(named pipe\), expected a regular file$/,
      ],
      [
        'tokenizer_config.json',
        'a directory',
        (f: string) => fs.mkdirSync(f),
        TokenizerError,
        /Cannot read .*tokenizer_config\.json: it is a directory, expected a regular file$/,
      ],
      [
        'tokenizer.json',
        'a symbolic link loop',
        (f: string) => fs.symlinkSync('tokenizer.json', f),
        TokenizerError,
        /tokenizer\.json: it is a symbolic link loop \(ELOOP\)/,
      ],
      [
        'model.safetensors',
        'a FIFO',
        (f: string) => execFileSync('mkfifo', [f]),
        SafetensorsError,
        /model\.safetensors: is a FIFO \(named pipe\), expected a regular file$/,
      ],
      [
        'model.safetensors',
        'a symbolic link loop',
        (f: string) => fs.symlinkSync('model.safetensors', f),
        SafetensorsError,
        /model\.safetensors: is a symbolic link loop \(ELOOP\), expected a regular file$/,
      ],
    ])('%s that is %s is refused at once, naming it', async (name, kind, make, errorClass, message) => {
      const dir = copyModel(CHAT_TINY_DIR, `${name}-${kind}`.replace(/\W+/g, '-'));
      const file = path.join(dir, name);
      fs.rmSync(file);
      make(file);
      const err = await fromPretrained(dir).catch((e) => e);
      expect(err).toBeInstanceOf(errorClass);
      expect(err.message).toContain(file);
      expect(err.message).toMatch(message);
    });

    it('an invalid generation_config.json is reported as itself, not as a tokenizer problem', async () => {
      const dir = copyModel(CHAT_TINY_DIR, 'bad-generation-config');
      const file = path.join(dir, 'generation_config.json');
      fs.writeFileSync(file, '{"eos_token_id": [0, 1,');
      const err = await fromPretrained(dir).catch((e) => e);
      expect(err).toBeInstanceOf(ModelFileError);
      expect(err.file).toBe(file);
      expect(err.message).toMatch(
        /generation_config\.json is not valid JSON \(.*\); generation_config\.json holds the model's generation defaults/,
      );
      // A pretty-printed file cut short: V8 quotes the text, newlines and all; the message stays one line.
      fs.writeFileSync(file, '{\n  "eos_token_id": [0,\n  tru\n}');
      const cut = await fromPretrained(dir).catch((e) => e);
      expect(cut).toBeInstanceOf(ModelFileError);
      expect(cut.message).toMatch(/generation_config\.json is not valid JSON \(Unexpected token/);
      expect(cut.message).not.toContain('\n');
      fs.writeFileSync(file, '[317]');
      await expect(fromPretrained(dir)).rejects.toThrow(/generation_config\.json holds a list, not a JSON object/);
      fs.writeFileSync(file, 'null');
      await expect(fromPretrained(dir)).rejects.toThrow(/generation_config\.json holds null, not a JSON object/);
    });
  });
});

// What loading produced, computed on every test backend (cpu, wasm, native; tfjs-node when installed),
// as the golden tests do; the checks above are about files, errors and memory, not numbers.
describeBackends('fromPretrained: loaded weights compute as they should', (backend) => {
  it('applies overrides while loading: the embedding at q8_0, one in_proj float32, the rest q4_0', async () => {
    const granite = await fromPretrained(CHAT_TINY_DIR, {
      backend,
      dtype: 'q4_0',
      dtypeOverrides: { 'model.embed_tokens.weight': 'q8_0', 'model.layers.0.mamba.in_proj.weight': 'f32' },
    });
    const dtypes = new Map([...granite.model.namedParameters()].map(([n, p]) => [n, p.dtype]));
    expect(dtypes.get('model.embed_tokens.weight')).toBe('q8_0');
    expect(dtypes.get('model.layers.0.mamba.in_proj.weight')).toBe('f32');
    expect(dtypes.get('model.layers.2.mamba.in_proj.weight')).toBe('q4_0');
    expect(dtypes.get('model.layers.0.mamba.A_log')).toBe('f32');
    // A float32 Linear weight is held transposed, as a q4_0-free load holds it: same logits there.
    const plain = await fromPretrained(CHAT_TINY_DIR, { backend });
    const layer = (g: typeof granite) => (g.model as GraniteMoeHybridForCausalLM).model.layers[0].mamba!.in_proj;
    const x = tf.randomNormal([2, 64], 0, 1, 'float32', 7);
    expect(Array.from(tf.tidy(() => layer(granite).forward(x).dataSync()))).toEqual(
      Array.from(tf.tidy(() => layer(plain).forward(x).dataSync())),
    );
    x.dispose();
    granite.dispose();
    plain.dispose();
  });

  // That RoPE itself is right is rope.test.ts's: against a float64 implementation, and in the model.
  it('loads a generated random checkpoint with RoPE, sharded, and keeps cached decoding exact', async () => {
    const cfg = parseConfig({
      ...preset('granite-4.0-350m'),
      time_step_limit: null,
      hidden_size: 32,
      num_hidden_layers: 2,
      layer_types: ['attention', 'attention'],
      num_attention_heads: 4,
      num_key_value_heads: 2,
      shared_intermediate_size: 16,
      intermediate_size: 16,
      vocab_size: 50,
      mamba_n_heads: 4,
    });
    const dir = path.join(tmp, `rope-${backend}`);
    writeRandomCheckpoint(dir, cfg, { seed: 3, std: 0.5, maxShardBytes: 2000 });
    expect(fs.existsSync(path.join(dir, 'model.safetensors.index.json'))).toBe(true);
    const granite = await fromPretrained(dir, { backend });
    await expectNoTensorLeak(() => {
      const ids = [3, 9, 4, 1, 7];
      const full = tf.tidy(() => granite.model.forward(tf.tensor2d([ids], undefined, 'int32')).logits!.dataSync());
      const cache = granite.makeCache();
      tf.tidy(() => {
        granite.model.forward(tf.tensor2d([ids.slice(0, 3)], undefined, 'int32'), { cache, logits: 'none' });
      });
      const step = tf.tidy(() => granite.model.forward(tf.tensor2d([ids.slice(3)], undefined, 'int32'), { cache }).logits!.dataSync());
      cache.dispose();
      for (let i = 0; i < step.length; i++) expect(Math.abs(step[i] - full[3 * 50 + i])).toBeLessThan(1e-5);
    });
    granite.dispose();
  });
});
