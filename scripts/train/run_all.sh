#!/bin/bash
# Corpus -> sub-vocabulary -> training -> safetensors -> held-out evaluation (issue #4).
#
#   scripts/train/run_all.sh [train.py options...]
#   scripts/train/run_all.sh --steps 600 --bf16 --max-minutes 100
#
# Each step is skipped when its output exists, so re-running the script resumes: an interrupted
# or --max-minutes-limited training continues from RUN/checkpoint.pt (train.py --resume; the
# checkpoint's run settings win over the options given then). Delete an output to redo its step.
#
# Environment: DATA (default <repo>/build-train), RUN (default $DATA/run), WORLD_VOCAB (default
# <repo>/../shared/tokenizers/rwkv_vocab_v20230424.txt), PYTHON (default /usr/bin/python3),
# NICE (default 10: the machine is shared).
#
# Outputs: $DATA/train.txt, heldout.txt, corpus.json (prepare_corpus.py); $DATA/vocab.txt
# (+ .json) (build_vocab.py); $RUN/checkpoint.pt, train-log.jsonl, model.safetensors
# (train.py); $RUN/eval.json (eval.py). Exit status: 0 done, 3 training stopped early (run again),
# other = error.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
DATA="${DATA:-$repo/build-train}"
RUN="${RUN:-$DATA/run}"
WORLD_VOCAB="${WORLD_VOCAB:-$repo/../shared/tokenizers/rwkv_vocab_v20230424.txt}"
PYTHON="${PYTHON:-/usr/bin/python3}"
NICE="${NICE:-10}"
py() { nice -n "$NICE" "$PYTHON" "$@"; }

step() { printf '\n== %s\n' "$*"; }

step "self-test (chunked WKV == sequential recurrence)"
py "$here/train.py" --selftest

if [[ -s "$DATA/train.txt" && -s "$DATA/heldout.txt" ]]; then
  step "corpus: $DATA/train.txt exists, skipped"
else
  step "corpus -> $DATA"
  py "$here/prepare_corpus.py" --out "$DATA"
fi

if [[ -s "$DATA/vocab.txt" ]]; then
  step "vocab: $DATA/vocab.txt exists, skipped"
else
  step "vocab -> $DATA/vocab.txt"
  py "$here/build_vocab.py" "$WORLD_VOCAB" --train "$DATA/train.txt" --out "$DATA/vocab.txt"
fi

if [[ -s "$RUN/model.safetensors" ]]; then
  step "train: $RUN/model.safetensors exists, skipped"
else
  resume=()
  if [[ -f "$RUN/checkpoint.pt" ]]; then
    resume=(--resume)
    step "train: resuming $RUN/checkpoint.pt"
  else
    step "train -> $RUN"
  fi
  status=0
  py "$here/train.py" --data-dir "$DATA" --run-dir "$RUN" "${resume[@]}" "$@" || status=$?
  if [[ $status -ne 0 ]]; then
    [[ $status -eq 3 ]] && echo "training stopped early; run $0 again to continue"
    exit "$status"
  fi
fi

if [[ -s "$RUN/eval.json" ]]; then
  step "eval: $RUN/eval.json exists, skipped"
else
  step "held-out evaluation -> $RUN/eval.json"
  py "$here/eval.py" "$RUN/model.safetensors" --data-dir "$DATA" --json "$RUN/eval.json"
fi

step "done: $RUN/model.safetensors, tokenizer $DATA/vocab.txt"
echo "convert: rwkv-edge convert $RUN/model.safetensors model.gguf --tokenizer $DATA/vocab.txt --dtype f16"
