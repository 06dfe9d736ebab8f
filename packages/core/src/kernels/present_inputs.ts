/**
 * tfjs saves inputs for backprop by a fixed name list, which cannot skip an absent optional input.
 * So every declared input is passed (absent ones as an empty placeholder) and this attr lists the
 * ones really present; the backend adapters and the gradient drop the rest.
 */
export const PRESENT_INPUTS_ATTR = '__graniteflowInputs';

/** Splits the present-input list carried in the attrs. */
export function presentInputNames(attrs: { [name: string]: unknown }): string[] {
  const list = attrs[PRESENT_INPUTS_ATTR];
  return typeof list === 'string' && list !== '' ? list.split(',') : [];
}
