#!/usr/bin/env bash
# The GPU measurements the issues ask for, as one prepared run that fits a short GPU lease (about 10 minutes):
#   1. meta-step:          the meta-step benchmark on CUDA (higher loop, torch.func + vmap, func + torch.compile)
#   2. pretrain:           full-size shipped checkpoints ($PRETRAIN), with wall time, tasks/s and peak GPU memory
#   3. bench-restoration:  the full-profile restoration benchmark for $BENCH_EXPERIMENTS, loading those checkpoints
#   4. bench-generation:   the full-profile generation benchmark (not in the default $STEPS: it trains 7 models)
# Every step has its own time limit; pretrain rewrites its JSON after each checkpoint, so a step cut short keeps
# what it finished. The whole full profile (every checkpoint, both benchmarks) takes more than one short lease:
# choose the next slice with PRETRAIN / BENCH_EXPERIMENTS / STEPS.
#
#   OUT=runs/gpu bash scripts/gpu_session.sh                  # results in $OUT (default runs/gpu)
#   STEPS="pretrain bench-restoration" PRETRAIN="restoration_sr_pretrained restoration_sr_mzsr" \
#       BENCH_EXPERIMENTS=super_resolution bash scripts/gpu_session.sh
#
# It needs the kit importable (pip install -e . or PYTHONPATH=$PWD) with its dependencies; on a machine
# without internet, install the wheels first (docs/scaling_out.md, "A GPU session").
set -u
OUT=${OUT:-runs/gpu}
STEPS=${STEPS:-meta-step pretrain bench-restoration}
PRETRAIN=${PRETRAIN:-restoration_siren_maml restoration_siren_metasgd restoration_denoise_maml}
BENCH_EXPERIMENTS=${BENCH_EXPERIMENTS:-image_fitting}
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
# shellcheck disable=SC2086  # the lists are meant to split into arguments
step meta-step 150 $PY -m metalearn_kit.cli bench meta-step --device cuda --meta-batch 8 32 \
    --json "$OUT/meta_step_cuda.json"
step pretrain 240 $PY -m metalearn_kit.cli pretrain $PRETRAIN --profile full --json "$OUT/pretrain_full.json"
step bench-restoration 150 $PY -m metalearn_kit.cli bench restoration --profile full \
    --experiments $BENCH_EXPERIMENTS --json "$OUT/restoration_full.json"
step bench-generation 300 $PY -m metalearn_kit.cli bench generation --profile full \
    --json "$OUT/generation_full.json"
ls -la "$OUT"
