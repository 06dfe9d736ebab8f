#!/bin/sh
# Compiles test/native_test.c together with the kernel sources (not the Node-API binding) under
# AddressSanitizer + UndefinedBehaviorSanitizer and runs it: any report, or any failed check,
# exits non-zero. Needs gcc; no Node headers.
set -eu
cd "$(dirname "$0")/.."
sources=""
for f in csrc/*.c; do
  case "$f" in
    */addon.c) ;;
    *) sources="$sources $f" ;;
  esac
done
binary="${TMPDIR:-/tmp}/graniteflow-native-asan-$$"
trap 'rm -f "$binary"' EXIT INT TERM
# shellcheck disable=SC2086
gcc -std=c11 -g -O1 -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=all \
  -D_GNU_SOURCE -Wall -Wextra -Werror -o "$binary" test/native_test.c $sources -lm -lpthread
ASAN_OPTIONS="detect_leaks=1:halt_on_error=1:${ASAN_OPTIONS:-}" \
UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:${UBSAN_OPTIONS:-}" \
  "$binary"
# The portable configuration (scalar level only, as on other architectures) must build and pass.
echo "portable build (GF_PORTABLE: scalar level only):"
# shellcheck disable=SC2086
gcc -std=c11 -g -O1 -fsanitize=address,undefined -fno-sanitize-recover=all -DGF_PORTABLE \
  -D_GNU_SOURCE -Wall -Wextra -Werror -o "$binary" test/native_test.c $sources -lm -lpthread
"$binary"
