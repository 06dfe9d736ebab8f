import { swigluImpl } from './MoeSwiGLU_impl';

/**
 * `y[yOff + r] = alpha · Σ_c w[wOff + r·cols + c] · x[xOff + c] + beta · y[yOff + r]`, r < rows.
 * The strategy the routed-expert kernel uses for its matrix-vector products.
 */
export type MatVec = (
  w: Float32Array,
  wOff: number,
  x: Float32Array,
  xOff: number,
  y: Float32Array,
  yOff: number,
  rows: number,
  cols: number,
  alpha: number,
  beta: number,
) => void;

/** Plain-JS {@link MatVec} with four partial sums per row. */
export const jsMatVec: MatVec = (w, wOff, x, xOff, y, yOff, rows, cols, alpha, beta) => {
  const cols4 = cols - (cols % 4);
  for (let r = 0; r < rows; r++) {
    const base = wOff + r * cols;
    let s0 = 0,
      s1 = 0,
      s2 = 0,
      s3 = 0;
    let c = 0;
    for (; c < cols4; c += 4) {
      s0 += w[base + c] * x[xOff + c];
      s1 += w[base + c + 1] * x[xOff + c + 1];
      s2 += w[base + c + 2] * x[xOff + c + 2];
      s3 += w[base + c + 3] * x[xOff + c + 3];
    }
    for (; c < cols; c++) s0 += w[base + c] * x[xOff + c];
    y[yOff + r] = alpha * (s0 + s1 + s2 + s3) + beta * y[yOff + r];
  }
};

/** Sizes of one routed-expert call. */
export interface ExpertDims {
  /** tokens */
  n: number;
  /** hidden size */
  h: number;
  /** expert intermediate size */
  i: number;
  /** experts per token */
  k: number;
}

/**
 * Routed SwiGLU experts, one token slot at a time, straight from the packed weights:
 * `y[n] = Σ_j w[n,j] · W2[e]·(silu(W1[e][:I]·x[n]) ⊙ W1[e][I:]·x[n])`, e = indices[n,j].
 * Only the selected experts' rows are read. `y` [N, H] arrives zero-filled; `a` (2I floats) and
 * `act` (I floats) are scratch, and must live where `matVec` can read them.
 */
export function moeExpertsGemvImpl(
  x: Float32Array,
  inputLinear: Float32Array,
  outputLinear: Float32Array,
  indices: Int32Array,
  weights: Float32Array,
  y: Float32Array,
  { n, h, i, k }: ExpertDims,
  a: Float32Array,
  act: Float32Array,
  matVec: MatVec = jsMatVec,
  aOffset = 0,
  actOffset = 0,
): void {
  const w1Size = 2 * i * h;
  const w2Size = h * i;
  for (let t = 0; t < n; t++) {
    for (let j = 0; j < k; j++) {
      const e = indices[t * k + j];
      const g = weights[t * k + j];
      a.fill(0, aOffset, aOffset + 2 * i); // scratch may hold NaN garbage, and 0·NaN is NaN
      matVec(inputLinear, e * w1Size, x, t * h, a, aOffset, 2 * i, h, 1, 0);
      swigluImpl(a, 1, i, act, aOffset, actOffset);
      matVec(outputLinear, e * w2Size, act, actOffset, y, t * h, h, i, g, 1);
    }
  }
}
