/**
 * The progress of `graniteflow train` on stderr: on a terminal one line redrawn in place (step, bar,
 * loss, learning rate, tokens/s, ETA); elsewhere (a pipe, a log, CI) a line every 5% of the run.
 * Held-out measurements always get a line of their own.
 */
import { formatDuration } from '../format';
import type { ProgressStream } from '../progress';
import type { EvalReport, StepReport } from './training_loop';

export class TrainingProgress {
  private lastLine = '';
  private open = false;

  constructor(
    private readonly stream: ProgressStream,
    private readonly silent: boolean,
  ) {}

  /** The line for one step (exposed for tests). */
  static line(r: StepReport, width = 20): string {
    const filled = Math.round((r.step / r.steps) * width);
    return (
      `step ${r.step}/${r.steps} [${'#'.repeat(filled)}${'-'.repeat(width - filled)}] loss ${r.loss.toFixed(3)} · lr ${r.learningRate.toExponential(1)} · ` +
      `${Math.round(r.tokensPerSecond).toLocaleString('en-US')} tok/s · ETA ${formatDuration(r.etaMs)}`
    );
  }

  step(r: StepReport): void {
    if (this.silent) return;
    this.lastLine = TrainingProgress.line(r);
    if (this.stream.isTTY) {
      this.stream.write(`\r${this.lastLine}\x1b[K`);
      this.open = true;
    } else if (r.step === 1 || r.step === r.steps || r.step % Math.max(1, Math.round(r.steps / 20)) === 0) {
      this.stream.write(`${this.lastLine}\n`);
    }
  }

  heldOut(r: EvalReport): void {
    if (this.silent) return;
    this.endLine();
    this.stream.write(`held-out loss at step ${r.step}: ${r.loss.toFixed(3)} nats/token, ${r.lossPerByte.toFixed(3)} nats/byte\n`);
  }

  done(): void {
    if (!this.silent) this.endLine();
  }

  private endLine(): void {
    if (this.open) this.stream.write('\n');
    this.open = false;
  }
}
