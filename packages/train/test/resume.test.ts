import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { initBackend } from '@graniteflow/core';
import { expectClose } from '@graniteflow/core/testing';
import {
  causalLmLoss,
  fromPretrained,
  GraniteMoeHybridForCausalLM,
  parseConfig,
  saveCheckpoint,
  type CausalLM,
} from '@graniteflow/granite';
import { AdamW, loadTrainerState, saveTrainerState, trainStep } from '../src';

const GOLDEN = path.resolve(__dirname, '../../../fixtures/golden');
const CONFIG = parseConfig(JSON.parse(fs.readFileSync(path.join(GOLDEN, 'tiny_moe', 'config.json'), 'utf8')));
const BATCH = { inputs: [[17, 42, 99, 5, 230, 64, 12, 17, 42, 99, 5, 230]], labels: [[42, 99, 5, 230, 64, 12, 17, 42, 99, 5, 230, 64]] };

function steps(model: CausalLM, optimizer: AdamW, n: number): void {
  for (let i = 0; i < n; i++)
    trainStep(optimizer, [BATCH], (b) => causalLmLoss(model, b), { variables: model.trainableVariables(), maxGradNorm: 1 });
}

describe('saving and resuming training', () => {
  let dir: string;
  beforeAll(async () => {
    await initBackend('wasm');
    dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-resume-'));
  });
  afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

  it('3 steps, save, load with fromPretrained, 2 more steps = 5 steps straight', async () => {
    const straight = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 2 });
    const o1 = new AdamW({ learningRate: 0.01, weightDecay: 0.1 });
    steps(straight, o1, 5);

    const first = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 2 });
    const o2 = new AdamW({ learningRate: 0.01, weightDecay: 0.1 });
    steps(first, o2, 3);
    const out = path.join(dir, 'ckpt');
    const files = await saveCheckpoint(first, out, { tokenizerFrom: path.join(GOLDEN, 'tokenizer') });
    expect(files).toEqual(expect.arrayContaining(['model.safetensors', 'config.json', 'tokenizer.json']));
    saveTrainerState(out, first, o2, { tokens: 36 });
    expect(parseConfig(JSON.parse(fs.readFileSync(path.join(out, 'config.json'), 'utf8')))).toEqual({ ...CONFIG, torch_dtype: 'float32' });

    const loaded = await fromPretrained(out, { backend: 'wasm' });
    expect(loaded.tokenizer).not.toBeNull();
    const o3 = new AdamW({ learningRate: 0.01, weightDecay: 0.1 });
    const state = loadTrainerState(out, loaded.model, o3);
    expect(state).toEqual({ tokens: 36, step: 3 });
    expect(o3.iterations).toBe(3);
    steps(loaded.model, o3, 2);
    const resumed = new Map(loaded.model.namedParameters());
    for (const [name, p] of straight.namedParameters()) {
      expectClose(resumed.get(name)!.value, p.value.dataSync(), { atol: 2e-6, rtol: 1e-4 });
    }
    [o1, o2, o3].forEach((o) => o.dispose());
    [straight, first, loaded.model].forEach((m) => m.dispose());
  });

  it('a failed save leaves the folder as it was; a state that does not fit the model is refused by name', async () => {
    const model = new GraniteMoeHybridForCausalLM(CONFIG, { seed: 3 });
    const out = path.join(dir, 'keep');
    await saveCheckpoint(model, out);
    const before = fs.readFileSync(path.join(out, 'model.safetensors'));
    const noTokenizer = fs.mkdtempSync(path.join(dir, 'empty-'));
    await expect(saveCheckpoint(model, out, { tokenizerFrom: noTokenizer })).rejects.toThrow(/has no tokenizer.json to copy/);
    expect(fs.readFileSync(path.join(out, 'model.safetensors')).equals(before)).toBe(true);
    expect(fs.readdirSync(dir).filter((f) => f.includes('.partial-') || f.includes('.old-'))).toEqual([]);

    const optimizer = new AdamW();
    steps(model, optimizer, 1);
    saveTrainerState(out, model, optimizer);
    const other = new GraniteMoeHybridForCausalLM({ ...CONFIG, vocab_size: 321 });
    expect(() => loadTrainerState(out, other, new AdamW())).toThrow(
      /optimizer\.safetensors: "model\.embed_tokens\.weight\.exp_avg" has shape \[320,64\], the parameter \[321,64\]/,
    );
    fs.writeFileSync(path.join(out, 'trainer_state.json'), '{"step": -1}');
    expect(() => loadTrainerState(out, model, new AdamW())).toThrow(/trainer_state\.json: "step" must be a whole number ≥ 0, got -1/);
    optimizer.dispose();
    model.dispose();
    other.dispose();
  });
});
