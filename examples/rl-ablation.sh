#!/usr/bin/env bash
# Ablation: which RL stage? PPO (the paper's), RLOO and GRPO (no value model) against the same
# reward model, and DPO on the same judged pairs (no reward model), all from the same SFT
# model; each answers the same held-out prompts, and caitool eval judges them against each
# other and the SFT model for harmlessness and helpfulness (win rates and Elo scores).
# ALGORITHMS may add rloo-judge and grpo-judge: the feedback model itself as the reward
# (direct AI feedback, no reward model).
#
# It starts from a run directory of `make all` (or `make smoke`), which holds the shared
# stages: sft/, rm/, prefs.jsonl, helpful-prefs.jsonl and the prompt files. Each algorithm's
# model, metrics and answers go to OUT; a model already there is not trained again.
#
#   make all RUN=runs/qwen MODEL=Qwen/Qwen2.5-1.5B-Instruct
#   RUN=runs/qwen JUDGE=Qwen/Qwen2.5-7B-Instruct bash examples/rl-ablation.sh
# A dry run on CPU in a few minutes, on the tiny random model of make smoke:
#   make smoke && RUN=runs/smoke JUDGE=runs/smoke/tiny STEPS=2 MAX_NEW_TOKENS=12 bash examples/rl-ablation.sh
set -euo pipefail

RUN=${RUN:-runs/default}                      # a make all run directory
JUDGE=${JUDGE:-smollm2}                       # judges the answers (and rewards the -judge runs)
ALGORITHMS=${ALGORITHMS:-ppo rloo grpo dpo}   # also: rloo-judge grpo-judge
CONSTITUTION=${CONSTITUTION:-harmless}        # the -judge runs' comparison principles
STEPS=${STEPS:-100}                           # optimizer steps (PPO: rollout batches) each
KL=${KL:-0.05}                                # KL coefficient of the RL runs (DPO: --beta 0.1)
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-256}         # as make all's, the SFT data's length
SEED=${SEED:-0}
OUT=${OUT:-$RUN/rl-ablation}
PLOT=${PLOT-$OUT/elo.png}                     # PLOT= (empty) skips the picture (needs matplotlib)

for need in sft/config.json rm/config.json prefs.jsonl helpful-prefs.jsonl prompts.jsonl \
            helpful-prompts.jsonl eval-prompts.jsonl; do
  if [[ ! -e "$RUN/$need" ]]; then
    echo "no $RUN/$need: run make all RUN=$RUN (or make smoke) first" >&2
    exit 2
  fi
done

mkdir -p "$OUT"
prompts=("$RUN/prompts.jsonl" "$RUN/helpful-prompts.jsonl")
pairs=("$RUN/prefs.jsonl" "$RUN/helpful-prefs.jsonl")
common=(-m "$RUN/sft" --max-steps "$STEPS" --seed "$SEED")
rl=(--max-new-tokens "$MAX_NEW_TOKENS" --kl-coef "$KL")
answer=(--backend hf --max-new-tokens "$MAX_NEW_TOKENS" --seed "$SEED")

train() {  # ALGORITHM OUTPUT_DIR
  case "$1" in
    ppo | rloo | grpo)
      caitool "train-$1" "${prompts[@]}" "${common[@]}" "${rl[@]}" -r "$RUN/rm" -o "$2" \
        --metrics "$OUT/$1-metrics.jsonl" ;;
    rloo-judge | grpo-judge)
      caitool "train-${1%-judge}" "${prompts[@]}" "${common[@]}" "${rl[@]}" --reward judge \
        --judge "$JUDGE" -c "$CONSTITUTION" -o "$2" --metrics "$OUT/$1-metrics.jsonl" ;;
    dpo)
      caitool train-dpo "${pairs[@]}" "${common[@]}" --beta 0.1 -o "$2" \
        --metrics "$OUT/$1-metrics.jsonl" ;;
    *)
      echo "unknown algorithm '$1' (ppo, rloo, grpo, dpo, rloo-judge, grpo-judge)" >&2
      exit 2 ;;
  esac
}

names=sl-cai
files=("$OUT/answers-sft.jsonl")
[[ -e "$OUT/answers-sft.jsonl" ]] \
  || caitool generate -m "$RUN/sft" "${answer[@]}" "$RUN/eval-prompts.jsonl" -o "$OUT/answers-sft.jsonl"
for algorithm in $ALGORITHMS; do
  model="$OUT/$algorithm"
  [[ -e "$model/config.json" ]] || train "$algorithm" "$model"
  [[ -e "$OUT/answers-$algorithm.jsonl" ]] \
    || caitool generate -m "$model" "${answer[@]}" "$RUN/eval-prompts.jsonl" -o "$OUT/answers-$algorithm.jsonl"
  names+=",$algorithm"
  files+=("$OUT/answers-$algorithm.jsonl")
done

caitool eval -m "$JUDGE" --seed "$SEED" --names "$names" ${PLOT:+--plot "$PLOT"} \
  --judgments "$OUT/judgments.jsonl" -o "$OUT/eval.json" "${files[@]}"

echo "done: $OUT/eval.json${PLOT:+ and $PLOT}" >&2
echo "each run's reward and KL per step: $OUT/*-metrics.jsonl" >&2
