#!/usr/bin/env bash
# The long-context benchmark figures quoted in the notes, in one sequential run (2-core CPU:
# ~2 h 45 min; nothing else should run meanwhile, every figure is a speed). Output in bench-out/.
set -euo pipefail
out=${1:-bench-out}
mkdir -p "$out"
# full on its home ground and past it, vs plain transformers on the same prompts.
longchat bench passkey -p full --lengths 1k,2k,4k,8k,16k --samples 5,16k:2 --set context.window=16400 \
  --vs-transformers --json "$out/full.json" 2> "$out/full.log" | tee "$out/full.txt"
longchat bench startup | tee "$out/startup.txt"
# infllm (disk tier on) far past the window; 4k/8k in the same run for the scaling ratios.
longchat bench passkey -p infllm --set infllm.disk=true --lengths 4k,8k,16k,32k,64k,128k \
  --samples 2,16k:20,32k:20,64k:5,128k:5 --json "$out/infllm.json" --plot "$out/infllm.png" \
  2> "$out/infllm.log" | tee "$out/infllm.txt"
longchat bench needles -p full,infllm --lengths 2k,32k --samples 10 --json "$out/needles.json" \
  --plot "$out/needles.png" 2> "$out/needles.log" | tee "$out/needles.txt"
# Two more prompt sets for the default (consensus + re-ranking); consensus alone; the
# reference's per-layer retrieval; and the asked needle's block forced into every layer.
for seed in 1 2; do
  longchat bench needles -p infllm --lengths 32k --samples 10 --seed $seed --json "$out/needles-s$seed.json" \
    2> "$out/needles-s$seed.log" | tee "$out/needles-s$seed.txt"
done
longchat bench needles -p infllm --lengths 32k --samples 10 --set infllm.rerank=0 \
  --json "$out/needles-consensus.json" 2> "$out/needles-consensus.log" | tee "$out/needles-consensus.txt"
longchat bench needles -p infllm --lengths 32k --samples 10 --set infllm.consensus=false \
  --json "$out/needles-per-layer.json" 2> "$out/needles-per-layer.log" | tee "$out/needles-per-layer.txt"
python bench/needle_retrieval.py --length 32k --samples 10 --oracle | tee "$out/needle-oracle.txt"
# On a CUDA GPU only (skipped elsewhere): a random-weight Llama-3-8B-shaped model in bf16,
# infllm at 128k and 1M (8-bit blocks: 1M x 16-bit would be ~137 GB of host RAM), full at 32k.
if python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  longchat bench scale --shape llama3-8b --runs infllm:128k,full:32k --json "$out/gpu-scale.json" \
    2> "$out/gpu-scale.log" | tee "$out/gpu-scale.txt"
  longchat bench scale --shape llama3-8b --runs infllm:1m --set infllm.store_bits=8 \
    --json "$out/gpu-scale-1m.json" 2> "$out/gpu-scale-1m.log" | tee "$out/gpu-scale-1m.txt"
fi
