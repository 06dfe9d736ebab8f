import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import * as tf from '@tensorflow/tfjs-core';
import { Linear, LoraAdapters, Module, SafetensorsFile } from '../src';
import { describeBackends, expectClose, maxAbsDiff, randomFloats } from '../src/testing';

class Mixer extends Module {
  readonly in_proj = new Linear(32, 32);
  readonly q_proj = new Linear(32, 8, { bias: true });
  readonly other = new Linear(8, 8);

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.other.forward(tf.tanh(this.q_proj.forward(tf.tanh(this.in_proj.forward(x))))));
  }
}

class Net extends Module {
  readonly layers = [new Mixer(), new Mixer()];

  forward(x: tf.Tensor): tf.Tensor {
    return tf.tidy(() => this.layers[1].forward(tf.tile(this.layers[0].forward(x), [1, 4])));
  }
}

function valuesOf(m: Module): Map<string, Float32Array> {
  return new Map([...m.namedParameters()].map(([n, p]) => [n, (p.packed ? p.packed.dequantize() : p.value).dataSync() as Float32Array]));
}

describeBackends('LoRA', () => {
  const x = () => tf.tensor2d(randomFloats(4 * 32, 1), [4, 32]);
  const target = () => tf.tensor2d(randomFloats(4 * 8, 2), [4, 8]);
  const loss = (net: Net, xs: tf.Tensor, ys: tf.Tensor) => tf.tidy(() => tf.mean(tf.square(tf.sub(net.forward(xs), ys))) as tf.Scalar);

  it.each(['f32', 'q8_0'] as const)(
    'trains only the adapters (base %s frozen and untouched), loss falls; merge keeps the outputs',
    (dtype) => {
      const net = new Net().initialize('hf', { seed: 3, std: 0.3 });
      if (dtype === 'q8_0') for (const l of net.layers) [l.in_proj, l.q_proj].forEach((lin) => lin.weight.pack('q8_0'));
      const [xs, ys] = [x(), target()];
      const before = tf.tidy(() => net.forward(xs));
      const lora = LoraAdapters.attach(net, { rank: 4, alpha: 8, seed: 1 });
      expect(lora.paths).toEqual(['layers.0.in_proj', 'layers.0.q_proj', 'layers.1.in_proj', 'layers.1.q_proj']);
      expect([...lora.namedParameters()].map(([n, p]) => [n, p.shape])).toContainEqual(['layers.0.in_proj.lora_A.weight', [4, 32]]);
      expect([...lora.namedParameters()].map(([n, p]) => [n, p.shape])).toContainEqual(['layers.1.q_proj.lora_B.weight', [8, 4]]);
      // The base model's own names are unchanged (checkpoints still load), and a new adapter changes nothing.
      expect([...net.namedParameters()].some(([n]) => n.includes('lora'))).toBe(false);
      const start = tf.tidy(() => net.forward(xs));
      expectClose(start, before.dataSync(), { atol: 1e-6 });
      const base = valuesOf(net);
      const opt = tf.train.adam(0.02);
      const first = loss(net, xs, ys).dataSync()[0];
      for (let s = 0; s < 40; s++) opt.minimize(() => loss(net, xs, ys), false, lora.trainableVariables());
      const trained = loss(net, xs, ys).dataSync()[0];
      expect(trained).toBeLessThan(first * 0.7);
      for (const [n, v] of valuesOf(net)) expect([n, Array.from(v)]).toEqual([n, Array.from(base.get(n)!)]);
      // Optimizers called without a varList leave the frozen base alone too.
      tf.train.sgd(0.1).minimize(() => loss(net, xs, ys));
      for (const [n, v] of valuesOf(net)) expect([n, Array.from(v)]).toEqual([n, Array.from(base.get(n)!)]);
      const adapted = tf.tidy(() => net.forward(xs));
      lora.merge();
      expect(net.layers[0].in_proj.adapter).toBeNull();
      expect(net.layers[0].in_proj.weight.dtype).toBe(dtype);
      const merged = tf.tidy(() => net.forward(xs));
      if (dtype === 'f32') {
        expectClose(merged, adapted.dataSync(), { atol: 1e-5 });
      } else {
        // Packed again after the add: within q8_0's rounding, far closer to the adapted model than the base was.
        expect(maxAbsDiff(merged.dataSync(), adapted.dataSync())).toBeLessThan(0.25 * maxAbsDiff(start.dataSync(), adapted.dataSync()));
      }
      tf.dispose([xs, ys, before, start, adapted, merged]);
      opt.dispose();
      net.dispose();
    },
  );

  it('saves in PEFT layout and loads back onto a fresh copy of the base', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-lora-'));
    try {
      const net = new Net().initialize('hf', { seed: 4 });
      const lora = LoraAdapters.attach(net, { rank: 2, targets: ['in_proj'] });
      for (const [, p] of lora.namedParameters()) p.assign(tf.randomNormal([...p.shape], 0, 0.1, 'float32', 5));
      const xs = x();
      const adapted = tf.tidy(() => net.forward(xs));
      expect(lora.save(dir, { baseModel: 'ibm-granite/granite-4.0-h-micro' })).toEqual([
        'adapter_model.safetensors',
        'adapter_config.json',
      ]);
      const config = JSON.parse(fs.readFileSync(path.join(dir, 'adapter_config.json'), 'utf8'));
      expect(config).toMatchObject({
        peft_type: 'LORA',
        r: 2,
        lora_alpha: 4,
        target_modules: ['in_proj'],
        base_model_name_or_path: 'ibm-granite/granite-4.0-h-micro',
      });
      const file = SafetensorsFile.open(path.join(dir, 'adapter_model.safetensors'));
      expect(file.names().sort()).toEqual(
        [
          'layers.0.in_proj.lora_A.weight',
          'layers.0.in_proj.lora_B.weight',
          'layers.1.in_proj.lora_A.weight',
          'layers.1.in_proj.lora_B.weight',
        ].map((n) => `base_model.model.${n}`),
      );
      file.close();
      const fresh = new Net();
      fresh.loadStateDict(net.stateDict());
      const loaded = LoraAdapters.load(fresh, dir);
      const again = tf.tidy(() => fresh.forward(xs));
      expectClose(again, adapted.dataSync(), { atol: 1e-6 });
      expect(() => LoraAdapters.attach(fresh, { rank: 2, targets: ['in_proj'] })).toThrow(/layers\.0\.in_proj already has a LoRA adapter/);
      loaded.detach();
      lora.detach();
      tf.dispose([xs, adapted, again]);
      [net, fresh].forEach((m) => m.dispose());
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('names the layers there are when no target matches; checks rank', () => {
    const net = new Net();
    expect(() => LoraAdapters.attach(net, { rank: 2, targets: ['gate_proj'] })).toThrow(
      /match no layer; the model's Linear layers are named in_proj, q_proj, other and its expert weights \(none\)/,
    );
    expect(() => LoraAdapters.attach(net, { rank: 0 })).toThrow(/rank must be a whole number ≥ 1, got 0/);
  });
});
