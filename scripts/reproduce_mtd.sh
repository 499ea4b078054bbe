#!/usr/bin/env bash
# Reproduce the MTD tables of docs/results.md: the equal-training control vs KIST.
#
#   scripts/reproduce_mtd.sh [DATA_DIR] [RUNS_DIR]
#
# SIZE=128 (default) runs the main table: CAE, seeds 0, 1 and 2, control, KIST
# with rulebooks/mtd_tuned.rules at lambda 1 and 0.3 (each evaluated after every
# update phase) and (seed 0) KIST with the faithful Table I rulebook; then the
# U-Net (skips from 1/4 resolution, the default), seeds 0, 1.
# SIZE=64 runs the earlier 64 px table, which also has the U-Net, the paper's push
# and a 10-sigma margin. DATA_DIR defaults to the MTD development split in the
# shared data beside the repository, RUNS_DIR to runs/mtd$SIZE beside it; both
# live outside the repository. Existing runs in RUNS_DIR are replaced. Two trainings run side by
# side with one torch thread each (on a 2-core CPU that is several times faster
# than one process with two threads). At 128 px: 20-50 minutes per initial
# model, 15-40 per arm and about 5 per arm's per-phase evaluations on a 2-core
# CPU (the range is two machines), 4-8 hours in all. A killed run loses at most
# --checkpoint-minutes of its phase: rerun the same line with --resume.
set -euo pipefail
cd "$(dirname "$0")/.."
SIZE=${SIZE:-128}
DATA=${1:-../shared/datasets/mtd}
RUNS=${2:-../runs/mtd$SIZE}
KIST=${KISTRULES:-.venv/bin/kistrules}
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"

# Every arm: width 16, 40 initial epochs, 5 iterations x 4 update epochs.
options() {  # options SEED
  echo --data "$DATA" --size "$SIZE" --width 16 --epochs 40 --iterations 5 --update-epochs 4 \
    --seed "$1" --threads 1 --no-progress --force
}

evaluate() {  # evaluate NAME
  "$KIST" evaluate --model "$RUNS/$1" --data "$DATA" --device cpu > "$RUNS/$1.eval.txt"
}

phases() {  # phases NAME: evaluate the update phases before the last
  for phase in update_1 update_2 update_3 update_4; do
    "$KIST" evaluate --model "$RUNS/$1" --data "$DATA" --device cpu --phase "$phase" \
      > "$RUNS/$1.eval_$phase.txt"
  done
}

initial() {  # initial MODEL SEED NAME [options...]: the initial model (eq. 8) only, evaluated
  local model=$1 seed=$2 name=$3
  shift 3
  # shellcheck disable=SC2046
  "$KIST" train $(options "$seed") --model "$model" --baseline --stop-after initial \
    --out "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1
  evaluate "$name"
}

arm() {  # arm MODEL SEED INIT NAME [options...]: one arm from a shared initial model
  local model=$1 seed=$2 init=$3 name=$4
  shift 4
  # shellcheck disable=SC2046
  "$KIST" train $(options "$seed") --model "$model" --init-from "$RUNS/$init" \
    --out "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1
  evaluate "$name"
}

audit() {  # audit RUN RULES [PHASE]: label precision / recall against the test masks,
  # at the masks' resolution and (_grid) on the working grid where training uses them
  local phase=${3:-initial} grid
  for grid in "" --grid; do
    "$KIST" audit --model "$RUNS/$1" --phase "$phase" --rulebook "rulebooks/$2.rules" \
      --data "$DATA" --device cpu $grid --json "$RUNS/audit_$1_${phase}_$2${grid:+_grid}.json" \
      > "$RUNS/audit_$1_${phase}_$2${grid:+_grid}.txt"
  done
}

TUNED=rulebooks/mtd_tuned.rules
TABLE1=rulebooks/mtd.rules
if [ "$SIZE" = 64 ]; then
  initial cae 0 init_cae &
  # The 64 px U-Net had skips at every level (--skip-from 0, the old default).
  initial unet 0 init_unet --skip-from 0 &
  wait
  arm cae 0 init_cae cae_baseline --baseline &
  arm cae 0 init_cae cae_kist_tuned --rulebook "$TUNED" &
  wait
  arm unet 0 init_unet unet_baseline --baseline --skip-from 0 &
  arm unet 0 init_unet unet_kist_tuned --rulebook "$TUNED" --skip-from 0 &
  wait
  arm cae 0 init_cae cae_kist_table1 --rulebook "$TABLE1" &
  arm cae 0 init_cae cae_kist_tuned_paper --rulebook "$TUNED" --push paper &
  wait
  arm cae 0 init_cae cae_kist_tuned_m10 --rulebook "$TUNED" --margin-sigmas 10 &
  initial cae 1 init_cae_s1 &
  wait
  arm cae 1 init_cae_s1 cae_baseline_s1 --baseline &
  arm cae 1 init_cae_s1 cae_kist_tuned_s1 --rulebook "$TUNED" &
  wait
else
  initial cae 0 init_cae &
  initial cae 1 init_cae_s1 &
  wait
  arm cae 0 init_cae cae_baseline --baseline &
  arm cae 0 init_cae cae_kist_tuned --rulebook "$TUNED" &
  wait
  arm cae 0 init_cae cae_kist_table1 --rulebook "$TABLE1" &
  arm cae 1 init_cae_s1 cae_baseline_s1 --baseline &
  wait
  arm cae 1 init_cae_s1 cae_kist_tuned_s1 --rulebook "$TUNED" &
  initial cae 2 init_cae_s2 &
  wait
  arm cae 2 init_cae_s2 cae_baseline_s2 --baseline &
  arm cae 2 init_cae_s2 cae_kist_tuned_s2 --rulebook "$TUNED" &
  wait
  phases cae_baseline_s2 &
  phases cae_kist_tuned_s2 &
  wait
  # A weaker push (docs/results.md, "Precise BatchNorm statistics"); its control is above.
  arm cae 2 init_cae_s2 cae_kist_lam03_s2 --rulebook "$TUNED" --lam 0.3 &
  arm cae 0 init_cae cae_kist_lam03 --rulebook "$TUNED" --lam 0.3 &
  wait
  arm cae 1 init_cae_s1 cae_kist_lam03_s1 --rulebook "$TUNED" --lam 0.3 &
  for name in cae_kist_lam03_s2 cae_kist_lam03 cae_baseline cae_kist_tuned; do
    phases "$name"
  done &
  wait
  for name in cae_kist_lam03_s1 cae_baseline_s1 cae_kist_tuned_s1; do
    phases "$name" &
  done
  wait
  initial unet 0 init_unet &
  initial unet 1 init_unet_s1 &
  wait
  arm unet 0 init_unet unet_baseline --baseline &
  arm unet 0 init_unet unet_kist_tuned --rulebook "$TUNED" &
  wait
  arm unet 1 init_unet_s1 unet_baseline_s1 --baseline &
  arm unet 1 init_unet_s1 unet_kist_tuned_s1 --rulebook "$TUNED" &
  wait
fi

# The label audits: both rulebooks on the initial models, and per iteration on the
# KIST run (what relabelling with the updated model would give; training keeps
# the iteration-1 labels).
for rules in mtd mtd_tuned; do
  audit init_cae "$rules"
  audit init_cae_s1 "$rules"
done
if [ "$SIZE" != 64 ]; then
  audit init_cae_s2 mtd_tuned
  audit init_unet mtd_tuned
  audit init_unet_s1 mtd_tuned
fi
for phase in update_1 update_2 update_3 update_4 update_5; do
  audit cae_kist_tuned mtd_tuned "$phase"
done

for run in "$RUNS"/*.eval.txt; do
  echo "== $(basename "$run" .eval.txt)"
  cat "$run"
done
