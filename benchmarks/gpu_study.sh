#!/usr/bin/env bash
# One prepared GPU run (issue 9, item 5): supervised vs mean-teacher vs actionpp variants on phantoms that were not
# tuned on, 3 seeds, many runs in parallel processes on one GPU. Results (results_*.md / .json) go to $OUT.
# Run from a folder holding src/, benchmarks/ and whl/ (MONAI and SimpleITK wheels; torch is on the machine):
#   bash benchmarks/gpu_study.sh                          # phantom variants (below)
#   STUDY=label_efficiency bash benchmarks/gpu_study.sh   # benchmarks/label_efficiency.py --preset gpu (not yet timed
#                                                         # on a GPU: set ITS1 lower if 8 minutes are all there is)
#   STUDY=label_efficiency MATCHED=1 SEEDS="0 1 2 3 4" bash benchmarks/gpu_study.sh
#       # the same with every arm given ACTION++'s optimiser steps (its pre-training + ITS1), as the CPU study at 1000
#       # iterations (benchmarks/README.md, "Five times longer, step-matched"); KINDS="atrium" LABELED="2" narrow it
set -u
cd "$(dirname "$0")/.."
OUT=${OUT:-/tmp/gpu_study_out}
mkdir -p "$OUT" "${STUDY_ROOT:-/tmp}"
[ -n "${SKIP_INSTALL:-}" ] || [ -d /tmp/site/monai ] || python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site whl/*.whl || exit 1
export PYTHONPATH=/tmp/site:$PWD/src${PYTHONPATH:+:$PYTHONPATH} OMP_NUM_THREADS=1 PYTHONUNBUFFERED=1
{ nvidia-smi -L; ${PY:-python3} -c "import torch, monai; print('torch', torch.__version__, 'monai', monai.__version__, \
  torch.cuda.get_device_name(0))"; nproc; } > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"
if [ "${STUDY:-variants}" = label_efficiency ]; then  # STUDY=label_efficiency: the label-efficiency study, GPU preset
  t0=$SECONDS
  LE_ARMS=()
  if [ -n "${MATCHED:-}" ]; then  # step-matched: ACTION++'s default pre-training steps + its iterations, from Config
    its=${ITS1:-1000}
    steps=$(${PY:-python3} -c "from actionpp.config import Config; print(Config(method='actionpp', iterations=$its).pretrain_iterations + $its)") || exit 1
    LE_ARMS=(--arm app=actionpp --arm sup_$steps=supervised,iterations=$steps --arm mt_$steps=mean-teacher,iterations=$steps
             --arm app_nopre_$steps=actionpp,pretrain_iterations=0,iterations=$steps)
  fi
  ${PY:-python3} benchmarks/label_efficiency.py --out ${STUDY_ROOT:-/tmp}/le --preset gpu --device ${DEVICE:-cuda} \
      --jobs ${JOBS:-16} ${ITS1:+--iterations $ITS1} ${SEEDS:+--seeds $SEEDS} ${KINDS:+--kinds $KINDS} \
      ${LABELED:+--labeled $LABELED} "${LE_ARMS[@]}" \
      > ${STUDY_ROOT:-/tmp}/log_le.txt 2>&1
  cp ${STUDY_ROOT:-/tmp}/le/results.md ${STUDY_ROOT:-/tmp}/le/results.json ${STUDY_ROOT:-/tmp}/le/label_efficiency.png \
      "$OUT"/ 2>/dev/null
  echo "== label_efficiency: $((SECONDS - t0)) s"; tail -c 6000 ${STUDY_ROOT:-/tmp}/log_le.txt
  exit 0
fi
# app = today's default actionpp (pre-training 25 % of the budget); the others change one thing each
ARMS=(--arm sup=supervised --arm mt=mean-teacher --arm app=actionpp --arm app_nopre=actionpp,pretrain_iterations=0
      --arm app_ramp=actionpp,unsup_rampup=0.4 --arm app_official=actionpp,teacher=official)
study() {  # name, iterations, phantom flags...
  local name=$1 its=$2; shift 2
  local t0=$SECONDS
  ${PY:-python3} benchmarks/paired_study.py --out ${STUDY_ROOT:-/tmp}/study_$name --jobs ${JOBS:-18} --threads 1 \
      --iterations "$its" --seeds ${SEEDS:-0 1 2} --device ${DEVICE:-cuda} "${ARMS[@]}" "$@" > ${STUDY_ROOT:-/tmp}/log_$name.txt 2>&1
  { echo "== $name"; tail -c 3000 ${STUDY_ROOT:-/tmp}/log_$name.txt; } >> "$OUT/log_all.txt"
  cp ${STUDY_ROOT:-/tmp}/study_$name/results.md "$OUT/results_$name.md" 2>/dev/null
  cp ${STUDY_ROOT:-/tmp}/study_$name/results.json "$OUT/results_$name.json" 2>/dev/null
  echo "== $name: $((SECONDS - t0)) s"; cat "$OUT/results_$name.md" 2>/dev/null || tail -20 ${STUDY_ROOT:-/tmp}/log_$name.txt
}
# variant A: 1.4 x 9 mm, oblique 35 deg, other contrast + gamma (the issue's description), phantom seed 777
study varA_400 ${ITS1:-400} --phantom-seed 777 --spacing 1.4 9 --oblique 35 --intensity alt
# variant B: 1.1 x 6 mm, oblique 70 deg, default contrast, phantom seed 4242
study varB_400 ${ITS1:-400} --phantom-seed 4242 --spacing 1.1 6 --oblique 70
# longer budget on variant A (3x)
study varA_1200 ${ITS2:-1200} --phantom-seed 777 --spacing 1.4 9 --oblique 35 --intensity alt
