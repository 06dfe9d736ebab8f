// The progress bar's speed, time left and closing line, on a fake clock.
import { formatDuration } from '../src/format';
import { downloadProgressBar, formatSpeed, ProgressBar, SPEED_SAMPLE_MS } from '../src/progress';

const MiB = 1024 * 1024;

function sink(isTTY: boolean) {
  const out = { text: '', isTTY, columns: 120, write: (t: string) => (out.text += t) };
  return out;
}

/** A clock the test moves by hand. */
function fakeClock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => void (t += ms) };
}

/** The frames a terminal bar drew, without the carriage returns and clear-to-end codes. */
function frames(text: string): string[] {
  return text
    .split('\r')
    .filter((f) => f !== '')
    .map((f) => f.replace(/\x1b\[K/g, ''));
}

describe('formatDuration and formatSpeed', () => {
  test('seconds, minutes and seconds, hours and minutes', () => {
    expect(formatDuration(0)).toBe('0s');
    expect(formatDuration(42_400)).toBe('42s');
    expect(formatDuration(65_000)).toBe('1m05s');
    expect(formatDuration(3599_000)).toBe('59m59s');
    expect(formatDuration((2 * 3600 + 3 * 60 + 10) * 1000)).toBe('2h03m');
    expect(formatDuration(Infinity)).toBe('?');
    expect(formatDuration(NaN)).toBe('?');
  });

  test('speeds in binary units per second', () => {
    expect(formatSpeed(12.3 * MiB)).toBe('12.3 MiB/s');
    expect(formatSpeed(512)).toBe('512 B/s');
    expect(formatSpeed(1.5 * 1024 ** 3)).toBe('1.5 GiB/s');
  });
});

describe('ProgressBar speed and ETA', () => {
  test('on a terminal: no speed until a window is measured, then the speed and the time left', () => {
    const clock = fakeClock();
    const s = sink(true);
    const bar = new ProgressBar(s, 'Downloading m', { intervalMs: 0, now: clock.now });
    bar.update(0, 100 * MiB);
    clock.advance(SPEED_SAMPLE_MS - 1);
    bar.update(MiB / 4, 100 * MiB); // the window is not complete yet
    clock.advance(1001 - SPEED_SAMPLE_MS);
    bar.update(MiB, 100 * MiB); // 1 MiB in 1 s
    const drawn = frames(s.text);
    expect(drawn[0]).not.toMatch(/\/s|ETA/);
    expect(drawn[1]).not.toMatch(/\/s|ETA/);
    // 99 MiB left at ~1 MiB/s: 1m39s.
    expect(drawn[2]).toMatch(/^Downloading m \[[#-]+\] {3}1% 1\.0 MiB\/100\.0 MiB 1\.0 MiB\/s ETA 1m39s$/);
  });

  test('the speed is smoothed: a sudden change moves it part of the way, then it follows', () => {
    const clock = fakeClock();
    const bar = new ProgressBar(sink(true), 'x', { intervalMs: 0, now: clock.now });
    let bytes = 0;
    bar.update(bytes, 0);
    // 10 s at 1 MiB/s, in updates every 500 ms.
    for (let i = 0; i < 20; i++) {
      clock.advance(500);
      bytes += MiB / 2;
      bar.update(bytes, 0);
    }
    expect(bar.rate).toBeCloseTo(MiB, -3);
    // The rate jumps to 4 MiB/s: one 500 ms window moves the estimate only part of the way.
    clock.advance(500);
    bytes += 2 * MiB;
    bar.update(bytes, 0);
    const afterOne = bar.rate as number;
    expect(afterOne).toBeGreaterThan(1.2 * MiB);
    expect(afterOne).toBeLessThan(2 * MiB);
    // After 15 s more at 4 MiB/s it has caught up (within 1%).
    for (let i = 0; i < 30; i++) {
      clock.advance(500);
      bytes += 2 * MiB;
      bar.update(bytes, 0);
    }
    expect(Math.abs((bar.rate as number) / (4 * MiB) - 1)).toBeLessThan(0.01);
  });

  test('many tiny updates give the same speed as a few large ones', () => {
    const clock = fakeClock();
    const bar = new ProgressBar(sink(true), 'x', { intervalMs: 0, now: clock.now });
    let bytes = 0;
    bar.update(0, 0);
    for (let i = 0; i < 5000; i++) {
      clock.advance(1);
      bytes += 2048; // 2 MiB/s
      bar.update(bytes, 0);
    }
    expect(Math.abs((bar.rate as number) / (2000 * 1024) - 1)).toBeLessThan(0.01);
  });

  test('an unknown total shows the speed but no ETA', () => {
    const clock = fakeClock();
    const s = sink(true);
    const bar = new ProgressBar(s, 'y', { intervalMs: 0, now: clock.now });
    bar.update(0, 0);
    clock.advance(2000);
    bar.update(3 * MiB, 0);
    const last = frames(s.text).at(-1) as string;
    expect(last).toMatch(/^y \[-+\] 3\.0 MiB 1\.5 MiB\/s$/);
  });

  test('the last line gives the amount, the time taken and the average speed', () => {
    const clock = fakeClock();
    const s = sink(true);
    const bar = new ProgressBar(s, 'Downloading m', { intervalMs: 0, now: clock.now });
    clock.advance(500); // planning before the first byte counts in the time taken
    bar.update(0, 10 * MiB);
    for (let i = 1; i <= 19; i++) {
      clock.advance(500);
      bar.update((i * 10 * MiB) / 20, 10 * MiB);
    }
    clock.advance(100); // a last window shorter than a sample still counts
    bar.update(10 * MiB, 10 * MiB);
    bar.done();
    expect(s.text.endsWith('\rDownloading m: 10.0 MiB in 10.1 s (1013.9 KiB/s)\x1b[K\n')).toBe(true);
    expect(s.text.split('\n')).toHaveLength(2);
  });

  test('off a terminal: one line at the start, one at the end with the average speed', () => {
    const clock = fakeClock();
    const s = sink(false);
    const bar = new ProgressBar(s, 'Downloading x', { now: clock.now });
    for (let i = 0; i <= 100; i++) {
      bar.update(i * MiB, 100 * MiB);
      clock.advance(40); // 25 MiB/s
    }
    bar.done();
    expect(s.text).toBe('Downloading x (100.0 MiB)…\nDownloading x: 100.0 MiB in 4.0 s (24.8 MiB/s)\n');
  });

  test('bytes present at the first update (a resumed download) do not count toward the speed', () => {
    const clock = fakeClock();
    const s = sink(false);
    const bar = new ProgressBar(s, 'Downloading r', { now: clock.now });
    bar.update(60 * MiB, 100 * MiB); // 60 MiB resumed from the partial file
    for (let i = 1; i <= 40; i++) {
      clock.advance(100);
      bar.update(60 * MiB + i * MiB, 100 * MiB); // 40 MiB in 4 s
    }
    expect(bar.rate).toBeCloseTo(10 * MiB, -4);
    bar.done();
    expect(s.text.split('\n')[1]).toBe('Downloading r: 100.0 MiB in 4.0 s (10.0 MiB/s)');
  });

  test('an amount that goes back (a file started over) never gives a negative speed', () => {
    const clock = fakeClock();
    const s = sink(true);
    const bar = new ProgressBar(s, 'z', { intervalMs: 0, now: clock.now });
    bar.update(0, 10 * MiB);
    clock.advance(1000);
    bar.update(4 * MiB, 10 * MiB);
    clock.advance(1000);
    bar.update(1 * MiB, 10 * MiB); // restarted
    clock.advance(1000);
    bar.update(3 * MiB, 10 * MiB);
    expect(bar.rate).toBeGreaterThan(0);
    expect(s.text).not.toMatch(/-\d/);
    bar.done();
    // 4 MiB before the restart + 2 MiB after, in 3 s.
    expect(s.text).toMatch(/z: 10\.0 MiB in 3\.0 s \(2\.0 MiB\/s\)\x1b\[K\n$/);
  });

  test('counts show neither speed nor ETA; a finished bar with no time or bytes shows no speed', () => {
    const clock = fakeClock();
    const s = sink(true);
    const bar = new ProgressBar(s, 'Steps', { unit: 'count', intervalMs: 0, now: clock.now });
    bar.update(0, 10);
    clock.advance(1000);
    bar.update(5, 10);
    bar.done();
    expect(s.text).not.toMatch(/\/s|ETA/);
    expect(s.text).toMatch(/Steps: 10 in 1\.0 s\x1b\[K\n$/);
    const instant = sink(false);
    const quick = new ProgressBar(instant, 'q', { now: () => 5 });
    quick.update(1024, 1024);
    quick.done();
    expect(instant.text).toBe('q (1.0 KiB)…\nq: 1.0 KiB in 0.0 s\n');
  });

  test('downloadProgressBar draws the overall events with speed and ETA', () => {
    const clock = fakeClock();
    const s = sink(true);
    // downloadProgressBar builds its bar with the default clock: drive Date.now instead.
    const spy = jest.spyOn(Date, 'now').mockImplementation(clock.now);
    try {
      const onProgress = downloadProgressBar(s, 'org/model', false);
      onProgress({ file: 'model.safetensors', downloadedBytes: 0, totalBytes: 8 * MiB, done: false });
      onProgress({ file: null, downloadedBytes: 0, totalBytes: 8 * MiB, done: false });
      clock.advance(1000);
      onProgress({ file: null, downloadedBytes: 2 * MiB, totalBytes: 8 * MiB, done: false });
      clock.advance(3000);
      onProgress({ file: null, downloadedBytes: 8 * MiB, totalBytes: 8 * MiB, done: true });
    } finally {
      spy.mockRestore();
    }
    const drawn = frames(s.text);
    expect(drawn[1]).toMatch(/^Downloading org\/model \[[#-]+\] {2}25% 2\.0 MiB\/8\.0 MiB 2\.0 MiB\/s ETA 3s model\.safetensors$/);
    expect(s.text).toMatch(/Downloading org\/model: 8\.0 MiB in 4\.0 s \(2\.0 MiB\/s\)\x1b\[K\n$/);
  });
});
