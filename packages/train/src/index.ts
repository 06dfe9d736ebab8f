/**
 * Training for graniteflow modules (any `Module` whose parameters are tf.Variables): the AdamW
 * optimizer tfjs lacks, gradient clipping by global norm, warmup + cosine schedules, gradient
 * accumulation in {@link trainStep}, and packing of documents into full training rows.
 *
 * @packageDocumentation
 */
// tfjs-core alone registers no gradients of its own ops; core's entry does (see its register_tfjs_gradients).
import '@graniteflow/core';
export { AdamW, type AdamWOptions } from './adamw';
export { clipByGlobalNorm, globalNorm } from './clip';
export { warmupCosine, type LearningRateSchedule, type WarmupCosineOptions } from './schedule';
export { packTokenStream, type PackOptions, type TokenBatch } from './token_batches';
export { trainStep, type TrainStepOptions, type TrainStepResult } from './train_step';
export { loadTrainerState, OPTIMIZER_FILE, saveTrainerState, TRAINER_STATE_FILE, type TrainerState } from './trainer_state';
