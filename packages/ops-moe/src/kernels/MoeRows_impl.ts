/** `out[p, :] = x[rows[p], :]` for p < rows.length; rows of width `h`. */
export function gatherRowsImpl(x: Float32Array, rows: Int32Array, h: number, out: Float32Array): void {
  for (let p = 0; p < rows.length; p++) out.set(x.subarray(rows[p] * h, rows[p] * h + h), p * h);
}

/** `out[rows[p], :] += src[p, :]` for p < rows.length; `out` arrives zero-filled. */
export function scatterRowsImpl(src: Float32Array, rows: Int32Array, h: number, out: Float32Array): void {
  for (let p = 0; p < rows.length; p++) {
    const dst = rows[p] * h;
    const from = p * h;
    for (let c = 0; c < h; c++) out[dst + c] += src[from + c];
  }
}
