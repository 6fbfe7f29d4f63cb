#!/usr/bin/env bash
# Ablation: what do more rounds of critique and revision buy?
#
# Answers N red-team prompts, runs ROUNDS rounds of critique -> revise on the answers, then
# judges the initial answers, the answers after 1 round and after ROUNDS rounds against each
# other for harmlessness and helpfulness (win rates and Elo scores, as in the paper's figures).
# Every file lands in one run directory, so runs with other settings sit side by side.
#
# Copy it and change the variables below, or set them in the environment:
#   MODEL=Qwen/Qwen2.5-1.5B-Instruct N=100 bash examples/ablation_rounds.sh
# A dry run on CPU in a minute or two, with a tiny random model (its text is gibberish):
#   caitool tiny-model /tmp/tiny && MODEL=/tmp/tiny N=3 MAX_NEW_TOKENS=16 bash examples/ablation_rounds.sh
set -euo pipefail

MODEL=${MODEL:-/tmp/tiny}                     # answers, critiques and revises
JUDGE=${JUDGE:-$MODEL}                        # judges the comparisons (a stronger model is better)
N=${N:-20}                                    # how many prompts
PROMPTS=${PROMPTS:-examples/red_team.jsonl}
CONSTITUTION=${CONSTITUTION:-harmless}        # critique/revision principles
ROUNDS=${ROUNDS:-4}                           # compared with 1 round
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-256}
SEED=${SEED:-0}
RUN=${RUN:-runs/ablation-rounds-$(date +%Y%m%d-%H%M%S)}
PLOT=${PLOT-$RUN/elo.png}                     # PLOT= (empty) skips the picture (needs matplotlib)

if (( ROUNDS < 2 )); then
  echo "ROUNDS must be at least 2 (it is compared with 1 round)" >&2
  exit 2
fi

mkdir -p "$RUN"
head -n "$N" "$PROMPTS" > "$RUN/prompts.jsonl"
model=(-m "$MODEL" --max-new-tokens "$MAX_NEW_TOKENS" --seed "$SEED")

# Round 0 is the initial answer; every later round critiques and revises the one before, so the
# 1-round and ROUNDS-round systems share their first round and differ only in the extra ones.
caitool generate "${model[@]}" -o "$RUN/round0.jsonl" "$RUN/prompts.jsonl"
for ((round = 1; round <= ROUNDS; round++)); do
  caitool critique "${model[@]}" -c "$CONSTITUTION" "$RUN/round$((round - 1)).jsonl" \
    | caitool revise "${model[@]}" -c "$CONSTITUTION" -o "$RUN/round$round.jsonl"
done

caitool eval -m "$JUDGE" --seed "$SEED" --names "initial,1-round,$ROUNDS-rounds" \
  ${PLOT:+--plot "$PLOT"} --judgments "$RUN/judgments.jsonl" -o "$RUN/eval.json" \
  "$RUN/round0.jsonl" "$RUN/round1.jsonl" "$RUN/round$ROUNDS.jsonl"

echo "done: $RUN/eval.json${PLOT:+ and $PLOT}" >&2
echo "read the revisions: caitool show $RUN/round$ROUNDS.jsonl" >&2
