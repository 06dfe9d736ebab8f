import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { setImmediate as tick } from 'node:timers/promises';
import * as v8 from 'node:v8';
import * as vm from 'node:vm';
import { native } from './setup';

let dir: string;
beforeAll(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'gf-native-mmap-'));
});
afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

function file(name: string, bytes: Uint8Array): string {
  const p = path.join(dir, name);
  fs.writeFileSync(p, bytes);
  return p;
}

function mappedRegions(p: string): number {
  return fs
    .readFileSync('/proc/self/maps', 'utf8')
    .split('\n')
    .filter((l) => l.endsWith(p)).length;
}

function rssBytes(): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync('/proc/self/status', 'utf8'));
  return Number(m![1]) * 1024;
}

const content = Uint8Array.from({ length: 3 * 4096 + 123 }, (_, i) => (i * 7 + 3) & 0xff);

describe('mmapFile', () => {
  test('maps the whole file, or a range at any offset, byte for byte', () => {
    const p = file('data.bin', content);
    expect(new Uint8Array(native.mmapFile(p))).toEqual(content);
    const part = native.mmapFile(p, { offset: 4097, length: 5000 }); // not page-aligned
    expect(part.byteLength).toBe(5000);
    expect(new Uint8Array(part)).toEqual(content.subarray(4097, 9097));
    expect(new Uint8Array(native.mmapFile(p, { offset: 100, advice: 'willneed' }))).toEqual(content.subarray(100));
    expect(native.mmapFile(p, { offset: content.length }).byteLength).toBe(0);
  });

  test('reads the page cache itself: a later write to the file shows through (nothing was copied)', () => {
    const p = file('live.bin', content);
    const view = new Uint8Array(native.mmapFile(p, { offset: 8 }));
    const fd = fs.openSync(p, 'r+');
    fs.writeSync(fd, Uint8Array.of(0xde, 0xad), 0, 2, 4096 + 8);
    fs.closeSync(fd);
    expect(Array.from(view.subarray(4096, 4098))).toEqual([0xde, 0xad]);
  });

  test('a 1 GiB sparse file maps without the process growing by it, outside the JS heap', () => {
    const p = path.join(dir, 'sparse.bin');
    const fd = fs.openSync(p, 'w');
    fs.ftruncateSync(fd, 2 ** 30);
    fs.closeSync(fd);
    const rss = rssBytes(),
      buffers = process.memoryUsage().arrayBuffers;
    const mapped = native.mmapFile(p);
    const view = new Uint8Array(mapped);
    expect(mapped.byteLength).toBe(2 ** 30);
    let sum = 0;
    for (let i = 0; i < view.length; i += 64 << 20) sum += view[i]; // touch 16 pages
    expect(sum).toBe(0);
    expect(view[view.length - 1]).toBe(0);
    expect(rssBytes() - rss).toBeLessThan(64 << 20);
    expect(process.memoryUsage().arrayBuffers - buffers).toBeLessThan(64 << 20);
    expect(mappedRegions(p)).toBe(1);
  });

  test('a mapping past the largest ArrayBuffer is refused with a clear error, not a crash', () => {
    // Node 20 aborted with "free(): double free" here: it ran the finalizer of the buffer it could
    // not make, and the addon then unmapped and freed again.
    const { MAX_LENGTH } = require('node:buffer').constants as { MAX_LENGTH: number };
    const p = path.join(dir, 'huge-sparse.bin');
    const fd = fs.openSync(p, 'w');
    fs.ftruncateSync(fd, MAX_LENGTH + 1);
    fs.closeSync(fd);
    expect(() => native.mmapFile(p)).toThrow(/cannot map \d+ bytes of '.*huge-sparse\.bin' at once.*map it in pieces/);
    expect(() => native.mmapFile(p, { length: MAX_LENGTH + 1 })).toThrow(RangeError);
    expect(native.mmapFile(p, { offset: 1 }).byteLength).toBe(MAX_LENGTH);
    fs.unlinkSync(p);
  });

  test('the mapping is released when the ArrayBuffer is collected', async () => {
    v8.setFlagsFromString('--expose-gc');
    const gc = vm.runInNewContext('gc') as () => void;
    const p = file('collected.bin', content);
    (() => {
      const view = new Uint8Array(native.mmapFile(p));
      expect(view[1]).toBe(content[1]);
    })();
    expect(mappedRegions(p)).toBe(1);
    for (let i = 0; i < 50 && mappedRegions(p) > 0; i++) {
      gc();
      await tick(); // Node-API finalizers may run after the collection
    }
    expect(mappedRegions(p)).toBe(0);
  });

  test('clear errors naming the file', () => {
    const missing = path.join(dir, 'missing.bin');
    expect(() => native.mmapFile(missing)).toThrow(
      expect.objectContaining({ code: 'ENOENT', message: expect.stringContaining(`cannot open '${missing}'`) }),
    );
    expect(() => native.mmapFile(dir)).toThrow(`mmapFile: '${dir}' is not a regular file (it is a directory)`);
    const p = file('small.bin', content.subarray(0, 100));
    expect(() => native.mmapFile(p, { offset: 101 })).toThrow(
      expect.objectContaining({ name: 'RangeError', message: `mmapFile: offset 101 is beyond the end of '${p}' (100 bytes)` }),
    );
    expect(() => native.mmapFile(p, { offset: 50, length: 51 })).toThrow(
      expect.objectContaining({
        name: 'RangeError',
        message: `mmapFile: offset 50 + length 51 is beyond the end of '${p}' (100 bytes)`,
      }),
    );
    expect(() => native.mmapFile(p, { offset: -1 })).toThrow(RangeError);
    expect(() => native.mmapFile(p, { advice: 'soon' as never })).toThrow(/advice must be one of/);
  });
});
