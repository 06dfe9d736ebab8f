/** A learning rate for each optimizer step (0-based). */
export type LearningRateSchedule = (step: number) => number;

/** Options of {@link warmupCosine}. */
export interface WarmupCosineOptions {
  /** The rate reached at the end of warmup. */
  peak: number;
  /** Steps of linear warmup from 0 to `peak`. */
  warmupSteps: number;
  /** Steps in the whole run; the rate reaches `min` at this step. */
  totalSteps: number;
  /** The floor the cosine decays to (default 0). */
  min?: number;
}

/**
 * Linear warmup then cosine decay, as transformers' `get_cosine_schedule_with_warmup`: step s <
 * warmup gives peak·s / warmup (so step 0 has rate 0), then min + (peak − min)·½(1 + cos(π·p))
 * with p = (s − warmup) / (total − warmup), held at `min` past the end.
 */
export function warmupCosine(options: WarmupCosineOptions): LearningRateSchedule {
  const { peak, warmupSteps, totalSteps } = options;
  const min = options.min ?? 0;
  if (!(peak >= 0) || !(min >= 0) || min > peak) throw new RangeError(`warmupCosine: need 0 ≤ min ≤ peak, got min ${min}, peak ${peak}.`);
  if (!Number.isInteger(warmupSteps) || !Number.isInteger(totalSteps) || warmupSteps < 0 || totalSteps <= warmupSteps) {
    throw new RangeError(`warmupCosine: need whole numbers 0 ≤ warmupSteps < totalSteps, got ${warmupSteps} and ${totalSteps}.`);
  }
  return (step) => {
    if (step < warmupSteps) return (peak * step) / Math.max(1, warmupSteps);
    const progress = Math.min(1, (step - warmupSteps) / (totalSteps - warmupSteps));
    return min + (peak - min) * 0.5 * (1 + Math.cos(Math.PI * progress));
  };
}
