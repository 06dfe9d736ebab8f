/** Makes the left-padded [B, T] ids and mask of a batch (HF padding_side = "left"). */
export function leftPad(prompts: readonly (readonly number[])[], padId: number) {
  const width = Math.max(...prompts.map((p) => p.length));
  const ids: number[] = [];
  const mask: number[] = [];
  for (const p of prompts) {
    for (let i = 0; i < width - p.length; i++) {
      ids.push(padId);
      mask.push(0);
    }
    // One element at a time: spreading a prompt into push() overflows the stack past ~120K tokens.
    for (const id of p) {
      ids.push(id);
      mask.push(1);
    }
  }
  return { ids, mask, width, padded: mask.includes(0) };
}
