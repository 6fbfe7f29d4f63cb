#!/usr/bin/env bash
# Ablation: does the critique help the revision? (the paper's section 3.5)
#
# Answers N red-team prompts once, then revises those same answers for ROUNDS rounds in two
# ways: critique -> revise, and revise --direct (the revision request straight after the
# answer, no critique asked for or shown). Both runs use one seed, so in every round each
# record is revised under the same sampled principle and the two differ only in the critique.
# Then the initial answers, the critiqued revisions and the direct revisions are judged
# against each other for harmlessness and helpfulness (win rates and Elo scores).
# The paper found direct revisions about as good as critiqued ones for large models and
# worse for small ones; it kept the critiques for transparency.
#
# Copy it and change the variables below, or set them in the environment:
#   MODEL=Qwen/Qwen2.5-1.5B-Instruct N=100 bash examples/direct-revision.sh
# A dry run on CPU in a minute or two, with a tiny random model (its text is gibberish):
#   caitool tiny-model /tmp/tiny && MODEL=/tmp/tiny N=3 MAX_NEW_TOKENS=16 bash examples/direct-revision.sh
# Two of the built-in harmless constitution's revision requests speak of "the critique"; a
# direct revision has none to read, so a constitution of your own may word them otherwise.
set -euo pipefail

MODEL=${MODEL:-/tmp/tiny}                     # answers, critiques and revises
JUDGE=${JUDGE:-$MODEL}                        # judges the comparisons (a stronger model is better)
N=${N:-20}                                    # how many prompts
PROMPTS=${PROMPTS:-examples/red_team.jsonl}
CONSTITUTION=${CONSTITUTION:-harmless}        # critique/revision principles
ROUNDS=${ROUNDS:-1}                           # revision rounds, in each of the two ways
MAX_NEW_TOKENS=${MAX_NEW_TOKENS:-256}
SEED=${SEED:-0}
RUN=${RUN:-runs/direct-revision-$(date +%Y%m%d-%H%M%S)}
PLOT=${PLOT-$RUN/elo.png}                     # PLOT= (empty) skips the picture (needs matplotlib)

if (( ROUNDS < 1 )); then
  echo "ROUNDS must be at least 1" >&2
  exit 2
fi

mkdir -p "$RUN"
head -n "$N" "$PROMPTS" > "$RUN/prompts.jsonl"
model=(-m "$MODEL" --max-new-tokens "$MAX_NEW_TOKENS" --seed "$SEED")

# One set of initial answers for both ways, so that only the revising differs.
caitool generate "${model[@]}" -o "$RUN/round0.jsonl" "$RUN/prompts.jsonl"
critiqued=$RUN/round0.jsonl
direct=$RUN/round0.jsonl
for ((round = 1; round <= ROUNDS; round++)); do
  caitool critique "${model[@]}" -c "$CONSTITUTION" "$critiqued" \
    | caitool revise "${model[@]}" -c "$CONSTITUTION" -o "$RUN/critiqued$round.jsonl"
  caitool revise --direct "${model[@]}" -c "$CONSTITUTION" "$direct" -o "$RUN/direct$round.jsonl"
  critiqued=$RUN/critiqued$round.jsonl
  direct=$RUN/direct$round.jsonl
done

# The three systems judged pairwise on the same prompts: each way of revising against the
# initial answers, and the two ways against each other.
caitool eval -m "$JUDGE" --seed "$SEED" --names "initial,critiqued,direct" \
  ${PLOT:+--plot "$PLOT"} --judgments "$RUN/judgments.jsonl" -o "$RUN/eval.json" \
  "$RUN/round0.jsonl" "$critiqued" "$direct"

echo "done: $RUN/eval.json${PLOT:+ and $PLOT}" >&2
echo "read the revisions: caitool show $critiqued; caitool show $direct" >&2
