import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { readGenerationConfig } from '../src';

describe('readGenerationConfig: sampling defaults as transformers applies them', () => {
  let dir: string;
  beforeEach(() => (dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-genconfig-'))));
  afterEach(() => fs.rmSync(dir, { recursive: true, force: true }));
  const read = (json: object) => {
    fs.writeFileSync(path.join(dir, 'generation_config.json'), JSON.stringify(json));
    return readGenerationConfig(dir)!;
  };

  it('samples only with do_sample; then temperature (default 1), top_k and top_p; 0 / 1 mean off', () => {
    expect(read({ eos_token_id: [3, 4], temperature: 0.7, top_p: 0.9 }).sampling).toEqual({});
    expect(read({ do_sample: true, temperature: 0.7, top_k: 40, top_p: 0.9 }).sampling).toEqual({ temperature: 0.7, topK: 40, topP: 0.9 });
    expect(read({ do_sample: true, top_k: 0, top_p: 1 }).sampling).toEqual({ temperature: 1 });
    expect(read({ do_sample: true, temperature: 'hot', top_k: 2.5 }).sampling).toEqual({ temperature: 1 });
  });

  it('repetition_penalty applies with or without sampling (1 is off)', () => {
    expect(read({ repetition_penalty: 1.2 }).sampling).toEqual({ repetitionPenalty: 1.2 });
    expect(read({ do_sample: true, repetition_penalty: 1 }).sampling).toEqual({ temperature: 1 });
    expect(read({ eos_token_id: 5 }).eosTokenIds).toEqual([5]);
  });
});
