// Helpers shared by every package's AssemblyScript kernels (assembly/<family>.ts), imported by
// relative path: `import { horizontalSum } from '../../../tools/build-wasm/assembly/simd';`. Each is
// @inline, so it is compiled into the caller's loop; none is exported from a built module.

/** Sum of the four lanes of an f32x4: one shuffle and one vector add, then one scalar add. */
// @ts-ignore: decorator
@inline export function horizontalSum(v: v128): f32 {
  const pairs = f32x4.add(v, i32x4.shuffle(v, v, 2, 3, 0, 1));
  return f32x4.extract_lane(pairs, 0) + f32x4.extract_lane(pairs, 1);
}
