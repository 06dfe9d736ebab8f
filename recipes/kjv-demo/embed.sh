#!/bin/sh
# Makes the model trained by `npm run train:demo` the CLI's embedded default: the matrix weights as
# bf16 (half the bytes in the package), sampling defaults (generation_config.json), a plain "Role: text" chat
# template (the corpus has no conversations, so no special tokens), the training log and loss curve.
set -e
cd "$(dirname "$0")/../.."
MODEL=recipes/kjv-demo/model
OUT=packages/cli/models/tiny-kjv-granite-4.0-h
if [ ! -f "$MODEL/model.safetensors" ]; then
  echo "embed.sh: $MODEL/model.safetensors is missing: run npm run train:demo first." >&2
  exit 1
fi
node packages/cli/dist/bin.js quantize --model "$MODEL" --dtype bf16 --out "$OUT" --force --quiet
cp recipes/kjv-demo/chat_template.jinja recipes/kjv-demo/generation_config.json recipes/kjv-demo/MODEL_CARD.md "$MODEL/loss.svg" "$MODEL/training_log.json" "$OUT/"
mv "$OUT/MODEL_CARD.md" "$OUT/README.md"
echo "embed.sh: wrote $OUT"
