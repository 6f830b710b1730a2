#!/usr/bin/env bash
# The GPU measurements the issues ask for, as one prepared run that fits a short GPU lease (about 10 minutes):
#   1. the meta-step benchmark on CUDA (higher loop vs torch.func + vmap vs func + torch.compile)   -> issue 4
#   2. the shipped restoration checkpoints at full size, with wall time, tasks/s, peak GPU memory    -> issue 11
#   3. the restoration benchmark at full size, loading those checkpoints                             -> issue 5
#   4. the generation benchmark at full size, if time is left                                        -> issue 6
# Every step has its own time limit and writes its JSON as it goes, so a step cut short keeps what it finished.
#
#   OUT=runs/gpu bash scripts/gpu_session.sh            # results in $OUT (default runs/gpu)
#   STEPS="meta-step pretrain" bash scripts/gpu_session.sh
#
# It needs the kit importable (pip install -e . or PYTHONPATH=$PWD) with its dependencies; on a machine
# without internet, install the wheels first (docs/scaling_out.md, "A GPU session").
set -u
OUT=${OUT:-runs/gpu}
STEPS=${STEPS:-meta-step pretrain bench-restoration bench-generation}
PY=${PYTHON:-python3}
mkdir -p "$OUT"
export TQDM_DISABLE=1 METALEARN_KIT_PROFILE=full

step() {  # step NAME SECONDS COMMAND...: run COMMAND if NAME is in $STEPS, under a time limit, logged
    local name=$1 limit=$2
    shift 2
    case " $STEPS " in *" $name "*) ;; *) return 0 ;; esac
    echo "== $name (limit ${limit}s): $*"
    local start=$SECONDS
    timeout --signal=INT --kill-after=20 "$limit" "$@" >"$OUT/$name.log" 2>&1
    local code=$?
    tail -n 25 "$OUT/$name.log"
    echo "== $name: exit $code after $((SECONDS - start)) s"
}

$PY -c "import metalearn_kit as mk; print(mk.describe_machine())"
step meta-step 150 $PY -m metalearn_kit.cli bench meta-step --device cuda --meta-batch 8 32 \
    --json "$OUT/meta_step_cuda.json"
step pretrain 240 $PY -m metalearn_kit.cli pretrain --prefix restoration_ --profile full \
    --json "$OUT/pretrain_full.json"
step bench-restoration 150 $PY -m metalearn_kit.cli bench restoration --profile full \
    --json "$OUT/restoration_full.json"
step bench-generation 120 $PY -m metalearn_kit.cli bench generation --profile full \
    --json "$OUT/generation_full.json"
ls -la "$OUT"
