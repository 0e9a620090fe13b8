#!/usr/bin/env bash
# The GPU pass of the model benchmark: each default model (MODELS) at its released size, in bf16
# and 4-bit nf4 (PRECISIONS), on one CUDA device, through bench/model.py. For every run it checks
# that the environment can load the model, and records load memory, peak memory, time to first
# token, decode speed and stop latency; JSON per run, a Markdown table (bench/run_all.py) and the
# nf4-versus-bf16 goals (goals.txt) go to $OUT. Each run is capped at RUN_TIMEOUT seconds.
#
# With no package index on the GPU machine, fetch the pinned wheels beforehand where there is one:
#     bash bench/gpu_check.sh --fetch-wheels        # -> build/wheels (git-ignored)
# then copy build/wheels next to the checkout there and run:
#     bash bench/gpu_check.sh
set -uo pipefail

cd "$(dirname "$0")/.."
WHEELS=${WHEELS:-build/wheels}
PYTHON=${PYTHON:-python3}
RUNS=${RUNS:-2}
RUN_TIMEOUT=${RUN_TIMEOUT:-150}
MODELS=${MODELS:-"gemma-4-E4B-it gemma-4-E2B-it Qwen2.5-Omni-7B"}
PRECISIONS=${PRECISIONS:-"bf16 nf4"}
# What bench/model.py needs beyond torch (the versions these figures were written against).
PINNED="bitsandbytes==0.50.2 transformers==5.23.0 accelerate==1.15.0"

if [[ "${1:-}" == "--fetch-wheels" ]]; then
    mkdir -p "$WHEELS"
    # Wheels for Linux x86_64 and the Python found here; anything else missing is reported at run time.
    $PYTHON -m pip download --no-deps --only-binary=:all: --platform manylinux_2_24_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$WHEELS" $PINNED
    du -sh "$WHEELS"
    exit 0
fi

OUT=${OUT:-out/gpu}
mkdir -p "$OUT"
export HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false
LOG="$OUT/gpu_check.log"
exec > >(tee -a "$LOG") 2>&1

echo "== $(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null)"

missing=$($PYTHON - <<'EOF'
import importlib
need = []
for module, spec in [("bitsandbytes", "bitsandbytes==0.50.2"), ("accelerate", "accelerate==1.15.0")]:
    try:
        importlib.import_module(module)
    except Exception:
        need.append(spec)
try:
    import transformers
    from transformers import Gemma4ForConditionalGeneration, Qwen2_5OmniForConditionalGeneration  # noqa: F401
except Exception:
    need.append("transformers==5.23.0")
print(" ".join(need))
EOF
)
if [[ -n "$missing" ]]; then
    echo "== installing from $WHEELS: $missing"
    $PYTHON -m pip install --no-index --find-links "$WHEELS" $missing || echo "!! install failed: provide $WHEELS (bash bench/gpu_check.sh --fetch-wheels)"
fi
$PYTHON - <<'EOF' || { echo "!! the environment cannot run bench/model.py"; exit 2; }
import torch, transformers, bitsandbytes, torchvision, PIL
assert torch.cuda.is_available(), "no CUDA device visible to torch"
print("== torch", torch.__version__, "transformers", transformers.__version__, "bitsandbytes", bitsandbytes.__version__,
      "torchvision", torchvision.__version__, "device", torch.cuda.get_device_name(0))
EOF

status=0
for model in $MODELS; do
    for precision in $PRECISIONS; do
        name="$OUT/model_${model}_${precision}.json"
        echo "== $model $precision"
        start=$SECONDS
        if timeout "$RUN_TIMEOUT" $PYTHON bench/model.py --model "$model" --device cuda --precision "$precision" \
                --runs "$RUNS" --decode-tokens 256 --out "$name" > "$OUT/model_${model}_${precision}.stdout"; then
            $PYTHON -c "import json,sys; d=json.load(open(sys.argv[1])); print('   ', d['memory'], 'ttft', d['ttft_s'], 'decode', d['decode_tok_s'], 'tok/s', 'stop', d['stop_latency_s'])" "$name"
        else
            echo "!! $model $precision failed (exit $?)"; status=1
        fi
        echo "   $((SECONDS - start)) s"
    done
done

shopt -s nullglob
results=("$OUT"/model_*.json)
if (( ${#results[@]} )); then
    $PYTHON bench/run_all.py --skip-run --merge "${results[@]}" --out "$OUT/results.json" --no-readme > "$OUT/table.md"
    cat "$OUT/table.md"
    # The goals for 4-bit: nf4 peak memory <= 35 % of bf16, decode >= 60 % of bf16.
    $PYTHON - "$OUT" <<'EOF'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
rows = {}
for path in out.glob("model_*.json"):
    d = json.loads(path.read_text())
    rows[(d["model"], d["precision"])] = d
lines = []
for model in sorted({m for m, _ in rows}):
    b, q = rows.get((model, "bf16")), rows.get((model, "nf4"))
    if not (b and q):
        continue
    mem = q["memory"]["load_allocated_gib"] / b["memory"]["load_allocated_gib"]
    peak = q["memory"]["run_peak_gib"] / b["memory"]["run_peak_gib"]
    speed = (q["decode_tok_s"] or 0) / (b["decode_tok_s"] or 1)
    lines.append(f"{model}: nf4/bf16 memory {mem:.0%} (peak {peak:.0%}, goal <= 35%), decode {speed:.0%} (goal >= 60%)")
(out / "goals.txt").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
EOF
fi
exit $status
