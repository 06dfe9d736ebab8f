import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import {
  Checkpoint,
  dequantizeRowsInto,
  halfToFloat,
  quantizeCheckpoint,
  quantizeRows,
  readGgufHeader,
  readGgufTensorBytes,
  writeSafetensors,
  type GgufHeader,
  type GgufValue,
} from '@graniteflow/core';
import { exportGguf, GgufExportError, parseConfig, writeRandomCheckpoint } from '../src';
import { CHAT_TINY_DIR, GOLDEN_DIR, TINY_MOE_DIR, readJson } from './helpers/golden';

const MICRO_DENSE_DIR = path.join(GOLDEN_DIR, 'micro_dense');

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-gguf-'));
});
afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

function value(h: GgufHeader, key: string): GgufValue['value'] | undefined {
  return h.metadata.get(key)?.value;
}

function floats(bytes: Uint8Array): Float32Array {
  return new Float32Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
}

/** The GGUF tensor `name` decoded from F32. */
function ggufF32(file: string, h: GgufHeader, name: string): { shape: number[]; data: Float32Array } {
  const info = h.tensors.find((t) => t.name === name);
  if (!info) throw new Error(`no tensor ${name} in ${file}`);
  expect(info.type).toBe('F32');
  return { shape: info.shape, data: floats(readGgufTensorBytes(file, info)) };
}

function expectClose(actual: Float32Array, expected: ArrayLike<number>): void {
  expect(actual.length).toBe(expected.length);
  let worst = 0;
  for (let i = 0; i < actual.length; i++) worst = Math.max(worst, Math.abs(actual[i] - expected[i]));
  expect(worst).toBe(0);
}

describe('exportGguf metadata', () => {
  test('writes every hyper-parameter llama.cpp reads for granitehybrid, from config.json (MoE, 2 groups)', async () => {
    const out = path.join(tmp, 'moe.gguf');
    await exportGguf(TINY_MOE_DIR, out, { format: 'f32', allowGroupedNorm: true });
    const cfg = readJson<Record<string, unknown>>(path.join(TINY_MOE_DIR, 'config.json'));
    const h = readGgufHeader(out);
    const types = cfg.layer_types as string[];
    const f32 = (x: unknown) => Math.fround(x as number);
    expect(Object.fromEntries([...h.metadata].filter(([k]) => !k.startsWith('tokenizer.')).map(([k, v]) => [k, v.value]))).toEqual({
      'general.architecture': 'granitehybrid',
      'general.type': 'model',
      'general.name': 'tiny_moe',
      'general.file_type': 0,
      'general.alignment': 32,
      'granitehybrid.vocab_size': cfg.vocab_size,
      'granitehybrid.context_length': 1048576,
      'granitehybrid.embedding_length': cfg.hidden_size,
      'granitehybrid.block_count': types.length,
      'granitehybrid.feed_forward_length': cfg.intermediate_size,
      'granitehybrid.attention.head_count': cfg.num_attention_heads,
      'granitehybrid.attention.head_count_kv': types.map((t) => (t === 'attention' ? cfg.num_key_value_heads : 0)),
      'granitehybrid.attention.layer_norm_rms_epsilon': f32(cfg.rms_norm_eps),
      'granitehybrid.attention.scale': f32(cfg.attention_multiplier),
      'granitehybrid.embedding_scale': f32(cfg.embedding_multiplier),
      'granitehybrid.residual_scale': f32(cfg.residual_multiplier),
      'granitehybrid.logit_scale': f32(cfg.logits_scaling),
      'granitehybrid.rope.freq_base': f32(cfg.rope_theta),
      'granitehybrid.rope.dimension_count': (cfg.hidden_size as number) / (cfg.num_attention_heads as number),
      'granitehybrid.rope.scaling.finetuned': false,
      'granitehybrid.expert_count': cfg.num_local_experts,
      'granitehybrid.expert_used_count': cfg.num_experts_per_tok,
      'granitehybrid.expert_shared_feed_forward_length': cfg.shared_intermediate_size,
      'granitehybrid.ssm.conv_kernel': cfg.mamba_d_conv,
      'granitehybrid.ssm.state_size': cfg.mamba_d_state,
      'granitehybrid.ssm.group_count': cfg.mamba_n_groups,
      'granitehybrid.ssm.inner_size': (cfg.mamba_n_heads as number) * (cfg.mamba_d_head as number),
      'granitehybrid.ssm.time_step_rank': cfg.mamba_n_heads,
    });
    // Key types as llama.cpp's loader checks them.
    expect(h.metadata.get('granitehybrid.block_count')?.type).toBe('u32');
    expect(h.metadata.get('granitehybrid.attention.scale')?.type).toBe('f32');
    expect(h.metadata.get('granitehybrid.rope.scaling.finetuned')?.type).toBe('bool');
  });

  test('a dense model: its FFN is the shared MLP, sized by shared_intermediate_size; no experts used', async () => {
    const out = path.join(tmp, 'dense.gguf');
    await exportGguf(MICRO_DENSE_DIR, out, { format: 'f32' });
    const cfg = readJson<Record<string, number>>(path.join(MICRO_DENSE_DIR, 'config.json'));
    expect(cfg.intermediate_size).not.toBe(cfg.shared_intermediate_size); // the fixture differs on purpose
    const h = readGgufHeader(out);
    expect(value(h, 'granitehybrid.feed_forward_length')).toBe(cfg.shared_intermediate_size);
    expect(value(h, 'granitehybrid.expert_count')).toBe(0);
    expect(value(h, 'granitehybrid.expert_used_count')).toBe(0);
    const names = h.tensors.map((t) => t.name);
    expect(names).toContain('blk.0.ffn_gate.weight');
    expect(names.some((n) => n.includes('exps') || n.includes('shexp') || n.includes('gate_inp'))).toBe(false);
    expect(h.tensors.find((t) => t.name === 'blk.0.ffn_gate.weight')?.shape).toEqual([cfg.shared_intermediate_size, cfg.hidden_size]);
  });
});

describe('exportGguf tensors', () => {
  test('renames and reshapes every tensor as llama.cpp expects, values exact in f32', async () => {
    const out = path.join(tmp, 'moe.gguf');
    await exportGguf(TINY_MOE_DIR, out, { format: 'f32', allowGroupedNorm: true });
    const cfg = readJson<Record<string, number>>(path.join(TINY_MOE_DIR, 'config.json'));
    const h = readGgufHeader(out);
    const src = Checkpoint.open(TINY_MOE_DIR);
    try {
      const read = (n: string) => src.read(n).data as Float32Array;
      const [H, E, I, S, G, Hm, K] = [
        cfg.hidden_size,
        cfg.num_local_experts,
        cfg.intermediate_size,
        cfg.shared_intermediate_size,
        cfg.mamba_n_groups,
        cfg.mamba_n_heads,
        cfg.mamba_d_conv,
      ];
      const dIn = Hm * cfg.mamba_d_head;
      const convDim = dIn + 2 * G * cfg.mamba_d_state;

      // Tied: no output tensor; llama.cpp reuses token_embd.
      expect(h.tensors.some((t) => t.name === 'output.weight')).toBe(false);
      const embd = ggufF32(out, h, 'token_embd.weight');
      expect(embd.shape).toEqual([cfg.vocab_size, H]);
      expect(h.tensors.find((t) => t.name === 'token_embd.weight')?.ne).toEqual([H, cfg.vocab_size]);
      expectClose(embd.data, read('model.embed_tokens.weight'));

      // Mamba layer 0: A = −exp(A_log) as [Hm, 1]; D as [Hm, 1]; conv squeezed to [C, K]; norm [G, D/G].
      const a = ggufF32(out, h, 'blk.0.ssm_a');
      expect(a.shape).toEqual([Hm, 1]);
      expectClose(
        a.data,
        Array.from(read('model.layers.0.mamba.A_log'), (v) => Math.fround(-Math.exp(v))),
      );
      expect(ggufF32(out, h, 'blk.0.ssm_d').shape).toEqual([Hm, 1]);
      const conv = ggufF32(out, h, 'blk.0.ssm_conv1d.weight');
      expect(conv.shape).toEqual([convDim, K]);
      expectClose(conv.data, read('model.layers.0.mamba.conv1d.weight'));
      expectClose(ggufF32(out, h, 'blk.0.ssm_conv1d.bias').data, read('model.layers.0.mamba.conv1d.bias'));
      expectClose(ggufF32(out, h, 'blk.0.ssm_dt.bias').data, read('model.layers.0.mamba.dt_bias'));
      const norm = ggufF32(out, h, 'blk.0.ssm_norm.weight');
      expect(norm.shape).toEqual([G, dIn / G]);
      expectClose(norm.data, read('model.layers.0.mamba.norm.weight'));
      expect(ggufF32(out, h, 'blk.0.ssm_in.weight').shape).toEqual([2 * dIn + 2 * G * cfg.mamba_d_state + Hm, H]);
      expectClose(ggufF32(out, h, 'blk.0.ssm_out.weight').data, read('model.layers.0.mamba.out_proj.weight'));
      expectClose(ggufF32(out, h, 'blk.0.attn_norm.weight').data, read('model.layers.0.input_layernorm.weight'));
      expectClose(ggufF32(out, h, 'blk.0.ffn_norm.weight').data, read('model.layers.0.post_attention_layernorm.weight'));

      // Experts: input_linear [E, 2I, H] splits into gate (first I rows of each expert) and up.
      const inputLinear = read('model.layers.0.block_sparse_moe.input_linear.weight');
      const gate = ggufF32(out, h, 'blk.0.ffn_gate_exps.weight');
      const up = ggufF32(out, h, 'blk.0.ffn_up_exps.weight');
      expect(gate.shape).toEqual([E, I, H]);
      const gateWant = new Float32Array(E * I * H);
      const upWant = new Float32Array(E * I * H);
      for (let e = 0; e < E; e++) {
        gateWant.set(inputLinear.subarray(e * 2 * I * H, e * 2 * I * H + I * H), e * I * H);
        upWant.set(inputLinear.subarray(e * 2 * I * H + I * H, (e + 1) * 2 * I * H), e * I * H);
      }
      expectClose(gate.data, gateWant);
      expectClose(up.data, upWant);
      expect(ggufF32(out, h, 'blk.0.ffn_down_exps.weight').shape).toEqual([E, H, I]);
      expectClose(ggufF32(out, h, 'blk.0.ffn_gate_inp.weight').data, read('model.layers.0.block_sparse_moe.router.layer.weight'));
      // Shared expert: rows [0, S) gate, [S, 2S) up.
      const shared = read('model.layers.0.shared_mlp.input_linear.weight');
      expectClose(ggufF32(out, h, 'blk.0.ffn_gate_shexp.weight').data, shared.subarray(0, S * H));
      expectClose(ggufF32(out, h, 'blk.0.ffn_up_shexp.weight').data, shared.subarray(S * H));
      expectClose(ggufF32(out, h, 'blk.0.ffn_down_shexp.weight').data, read('model.layers.0.shared_mlp.output_linear.weight'));

      // Attention layer 2.
      for (const [hf, gg] of [
        ['q_proj', 'attn_q'],
        ['k_proj', 'attn_k'],
        ['v_proj', 'attn_v'],
        ['o_proj', 'attn_output'],
      ]) {
        expectClose(ggufF32(out, h, `blk.2.${gg}.weight`).data, read(`model.layers.2.self_attn.${hf}.weight`));
      }
      expect(h.tensors.some((t) => t.name.startsWith('blk.2.ssm'))).toBe(false);
      expect(h.tensors.some((t) => t.name.startsWith('blk.0.attn_q'))).toBe(false);
      expectClose(ggufF32(out, h, 'output_norm.weight').data, read('model.norm.weight'));
    } finally {
      src.close();
    }
  });

  test('q8_0 / q4_0 / bf16: 2-D weights in the format, bytes as ggml quantizes them; norms, conv, router, SSM vectors f32', async () => {
    const src = Checkpoint.open(CHAT_TINY_DIR);
    try {
      for (const format of ['q8_0', 'q4_0', 'bf16'] as const) {
        const out = path.join(tmp, `${format}.gguf`);
        const result = await exportGguf(CHAT_TINY_DIR, out, { format });
        const h = readGgufHeader(out);
        expect(value(h, 'general.file_type')).toBe({ q8_0: 7, q4_0: 2, bf16: 32 }[format]);
        const typeOf = (n: string) => h.tensors.find((t) => t.name === n)?.type;
        const packed = format.toUpperCase();
        for (const n of [
          'token_embd.weight',
          'blk.0.ssm_in.weight',
          'blk.0.ssm_out.weight',
          'blk.1.attn_q.weight',
          'blk.0.ffn_gate_exps.weight',
          'blk.0.ffn_down_shexp.weight',
        ]) {
          expect([n, typeOf(n)]).toEqual([n, packed]);
        }
        for (const n of [
          'blk.0.attn_norm.weight',
          'blk.0.ssm_norm.weight',
          'blk.0.ssm_conv1d.weight',
          'blk.0.ssm_conv1d.bias',
          'blk.0.ssm_a',
          'blk.0.ssm_d',
          'blk.0.ssm_dt.bias',
          'blk.0.ffn_gate_inp.weight',
          'output_norm.weight',
        ]) {
          expect([n, typeOf(n)]).toEqual([n, 'F32']);
        }
        const info = h.tensors.find((t) => t.name === 'blk.0.ssm_in.weight')!;
        const weight = src.read('model.layers.0.mamba.in_proj.weight');
        const [rows, cols] = weight.shape;
        expect(
          Buffer.from(readGgufTensorBytes(out, info)).equals(Buffer.from(quantizeRows(format, weight.data as Float32Array, rows, cols))),
        ).toBe(true);
        expect(result.bytes).toBe(fs.statSync(out).size);
      }
    } finally {
      src.close();
    }
  });

  test('a quantized row that is not whole 32-weight blocks falls back to F16, as the converter does', async () => {
    const dir = path.join(tmp, 'odd');
    const cfg = parseConfig({
      ...readJson<Record<string, unknown>>(path.join(MICRO_DENSE_DIR, 'config.json')),
      shared_intermediate_size: 40,
      intermediate_size: 40,
    });
    writeRandomCheckpoint(dir, cfg, { seed: 3, dtype: 'F32' });
    const out = path.join(tmp, 'odd.gguf');
    await exportGguf(dir, out, { format: 'q8_0' });
    const h = readGgufHeader(out);
    const down = h.tensors.find((t) => t.name === 'blk.0.ffn_down.weight')!;
    expect([down.type, down.shape]).toEqual(['F16', [cfg.hidden_size, 40]]);
    expect(h.tensors.find((t) => t.name === 'blk.0.ffn_gate.weight')?.type).toBe('Q8_0');
    const src = Checkpoint.open(dir);
    const want = src.read('model.layers.0.shared_mlp.output_linear.weight').data as Float32Array;
    src.close();
    const bytes = readGgufTensorBytes(out, down);
    const halves = new Uint16Array(bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength));
    let worst = 0;
    halves.forEach((b, i) => (worst = Math.max(worst, Math.abs(halfToFloat(b) - want[i]) / Math.max(Math.abs(want[i]), 1e-3))));
    expect(worst).toBeLessThan(1e-3);
  });
});

describe('exportGguf from a graniteflow packed checkpoint', () => {
  test('copies q4_0 block rows as they are when the format is theirs, dequantizes them for another', async () => {
    const dir = path.join(tmp, 'packed');
    fs.mkdirSync(dir);
    const source = Checkpoint.open(CHAT_TINY_DIR);
    try {
      await quantizeCheckpoint(source, dir, {
        policy: (name, shape) => (shape.length === 2 && !name.includes('router') && shape[1] % 32 === 0 ? 'q4_0' : 'f32'),
      });
    } finally {
      source.close();
    }
    for (const f of ['config.json', 'tokenizer.json', 'tokenizer_config.json'])
      fs.copyFileSync(path.join(CHAT_TINY_DIR, f), path.join(dir, f));
    const packed = Checkpoint.open(dir);
    try {
      const name = 'model.layers.0.mamba.in_proj.weight';
      expect(packed.info(name).packed?.format).toBe('q4_0');
      const stored = packed.readBytes(name);
      const [rows, cols] = packed.info(name).packed!.shape;

      const q4 = path.join(tmp, 'q4.gguf');
      await exportGguf(dir, q4, { format: 'q4_0' });
      const h = readGgufHeader(q4);
      const info = h.tensors.find((t) => t.name === 'blk.0.ssm_in.weight')!;
      expect([info.type, info.shape]).toEqual(['Q4_0', [rows, cols]]);
      expect(Buffer.from(readGgufTensorBytes(q4, info)).equals(Buffer.from(stored))).toBe(true);

      const f32 = path.join(tmp, 'f32.gguf');
      await exportGguf(dir, f32, { format: 'f32' });
      const want = new Float32Array(rows * cols);
      dequantizeRowsInto('q4_0', stored, cols, 0, rows, want);
      expectClose(ggufF32(f32, readGgufHeader(f32), 'blk.0.ssm_in.weight').data, want);
    } finally {
      packed.close();
    }
  });
});

describe('exportGguf vocabulary', () => {
  test("the folder's tokenizer.json: tokens, types, merges, special ids, flags and chat template", async () => {
    const out = path.join(tmp, 'chat.gguf');
    const result = await exportGguf(CHAT_TINY_DIR, out, { format: 'f32' });
    expect(result.tokenizer).toBe('tokenizer.json');
    const h = readGgufHeader(out);
    const tok = readJson<{
      model: { vocab: Record<string, number>; merges: [string, string][] | string[] };
      added_tokens: { id: number; content: string; special: boolean }[];
    }>(path.join(CHAT_TINY_DIR, 'tokenizer.json'));
    const cfg = readJson<{ vocab_size: number }>(path.join(CHAT_TINY_DIR, 'config.json'));
    const tcfg = readJson<{ chat_template: string; add_bos_token: boolean }>(path.join(CHAT_TINY_DIR, 'tokenizer_config.json'));
    expect(value(h, 'tokenizer.ggml.model')).toBe('gpt2');
    expect(value(h, 'tokenizer.ggml.pre')).toBe('dbrx');
    const tokens = value(h, 'tokenizer.ggml.tokens') as string[];
    const types = value(h, 'tokenizer.ggml.token_type') as number[];
    expect(tokens.length).toBe(cfg.vocab_size);
    for (const [text, id] of Object.entries(tok.model.vocab)) expect(tokens[id]).toBe(text);
    for (const a of tok.added_tokens) {
      expect(tokens[a.id]).toBe(a.content);
      // Control when special or shaped like <|…|>, else user-defined (matched whole in text).
      expect([a.content, types[a.id]]).toEqual([a.content, a.special || /^<\|.*\|>$/.test(a.content) ? 3 : 4]);
    }
    const maxId = Math.max(...tok.added_tokens.map((a) => a.id));
    expect(tokens.slice(maxId + 1)).toEqual(Array.from({ length: cfg.vocab_size - maxId - 1 }, (_, i) => `[PAD${maxId + 1 + i}]`));
    expect(types.slice(maxId + 1).every((t) => t === 5)).toBe(true);
    const merges = tok.model.merges.map((m) => (typeof m === 'string' ? m : m.join(' ')));
    expect(value(h, 'tokenizer.ggml.merges')).toEqual(merges);
    const idOf = (content: string) => tok.added_tokens.find((a) => a.content === content)!.id;
    expect(value(h, 'tokenizer.ggml.bos_token_id')).toBe(idOf('<|end_of_text|>'));
    expect(value(h, 'tokenizer.ggml.eos_token_id')).toBe(idOf('<|end_of_text|>'));
    expect(value(h, 'tokenizer.ggml.padding_token_id')).toBe(idOf('<|pad|>'));
    expect(value(h, 'tokenizer.ggml.unknown_token_id')).toBe(idOf('<|unk|>'));
    expect(value(h, 'tokenizer.ggml.add_bos_token')).toBe(tcfg.add_bos_token);
    expect(value(h, 'tokenizer.chat_template')).toBe(tcfg.chat_template);
  });

  test('a folder without tokenizer.json gets the 256 byte tokens and its config ids', async () => {
    const out = path.join(tmp, 'dense.gguf');
    const result = await exportGguf(MICRO_DENSE_DIR, out, { format: 'f32' });
    expect(result.tokenizer).toBe('bytes');
    const h = readGgufHeader(out);
    const cfg = readJson<{ vocab_size: number; bos_token_id: number; eos_token_id: number; pad_token_id: number }>(
      path.join(MICRO_DENSE_DIR, 'config.json'),
    );
    const tokens = value(h, 'tokenizer.ggml.tokens') as string[];
    const types = value(h, 'tokenizer.ggml.token_type') as number[];
    expect(tokens.length).toBe(cfg.vocab_size);
    // GPT-2's byte alphabet: 'A' is itself, the space byte is U+0120.
    expect([tokens[65], tokens[32], tokens[10]]).toEqual(['A', '\u0120', '\u010a']);
    expect(new Set(tokens.slice(0, 256)).size).toBe(256);
    expect(value(h, 'tokenizer.ggml.merges')).toEqual([]);
    expect(value(h, 'tokenizer.ggml.eos_token_id')).toBe(cfg.eos_token_id);
    expect(value(h, 'tokenizer.ggml.padding_token_id')).toBe(cfg.pad_token_id);
    expect([types[cfg.eos_token_id], types[cfg.pad_token_id], types[300]]).toEqual([3, 3, 5]);
  });
});

describe('exportGguf refuses what llama.cpp would compute differently, and writes nothing', () => {
  function variant(name: string, patch: Record<string, unknown>, from = MICRO_DENSE_DIR): string {
    const dir = path.join(tmp, name);
    fs.mkdirSync(dir);
    for (const f of fs.readdirSync(from)) fs.copyFileSync(path.join(from, f), path.join(dir, f));
    const cfg = readJson<Record<string, unknown>>(path.join(dir, 'config.json'));
    fs.writeFileSync(path.join(dir, 'config.json'), JSON.stringify({ ...cfg, ...patch }));
    return dir;
  }

  async function expectRefusal(dir: string, message: RegExp, options = {}): Promise<void> {
    const outDir = path.join(tmp, 'out');
    fs.mkdirSync(outDir, { recursive: true });
    const err = await exportGguf(dir, path.join(outDir, 'x.gguf'), { format: 'f32', ...options }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(Error);
    expect((err as Error).message).toMatch(message);
    expect(fs.readdirSync(outDir)).toEqual([]);
  }

  test('more than one Mamba group, unless asked', async () => {
    await expectRefusal(
      TINY_MOE_DIR,
      /tiny_moe\/config\.json: this checkpoint has mamba_n_groups = 2: llama\.cpp normalises the Mamba gated norm per group.*allowGroupedNorm/,
    );
  });

  test('RoPE, a dt clamp, projection biases', async () => {
    await expectRefusal(variant('rope', { position_embedding_type: 'rope' }), /position_embedding_type "rope".*turns RoPE off/);
    await expectRefusal(variant('clamp', { time_step_limit: [0.001, 100] }), /clamps dt to time_step_limit \[0\.001, 100\]/);
    await expectRefusal(variant('bias', { mamba_proj_bias: true }), /mamba_proj_bias: true/);
  });

  test('weights that do not match config.json, or are not floats', async () => {
    const missing = variant('missing', {});
    const st = path.join(missing, 'model.safetensors');
    const src = Checkpoint.open(MICRO_DENSE_DIR);
    const tensors = new Map(
      src
        .names()
        .filter((n) => n !== 'model.layers.1.mamba.D')
        .map((n) => [n, { shape: src.info(n).shape, data: src.read(n).data as Float32Array }]),
    );
    src.close();
    writeSafetensors(st, tensors);
    await expectRefusal(missing, /the weights do not match config\.json; missing "model\.layers\.1\.mamba\.D"/);

    const ints = variant('ints', {});
    tensors.set('model.layers.1.mamba.D', { shape: [8], data: new Int32Array(8) as never });
    writeSafetensors(path.join(ints, 'model.safetensors'), tensors);
    await expectRefusal(ints, /tensor "model\.layers\.1\.mamba\.D" is I32; the GGUF export reads F32, BF16 and F16 weights/);
  });

  test('an unknown format', async () => {
    await expectRefusal(MICRO_DENSE_DIR, /Unknown GGUF format "q5_k"; expected one of f32, bf16, q8_0, q4_0/, { format: 'q5_k' });
  });

  test('it is a GgufExportError', async () => {
    await expect(exportGguf(TINY_MOE_DIR, path.join(tmp, 'x.gguf'))).rejects.toBeInstanceOf(GgufExportError);
  });
});
