#!/usr/bin/env bash
# Reproduce the MTD table of docs/results.md: baseline (equal-training control) vs KIST,
# CAE and U-Net, with and without the guided filter, one seed.
#
#   scripts/reproduce_mtd.sh [DATA_DIR] [RUNS_DIR]
#
# DATA_DIR defaults to ../shared/datasets/mtd (the development split), RUNS_DIR to
# ../runs/mtd; both live outside the repository. Existing runs in RUNS_DIR are replaced.
# Two training processes run side by side with one torch thread each (on a 2-core CPU
# that is several times faster than one process with two threads). About 35 minutes
# on a shared 2-core CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/mtd}
RUNS=${2:-../runs/mtd}
KIST=${KISTRULES:-.venv/bin/kistrules}
SEED=${SEED:-0}
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"

# Every arm: 64 px, width 16, 40 initial epochs, 5 iterations x 4 update epochs.
COMMON=(--data "$DATA" --size 64 --width 16 --epochs 40 --iterations 5 --update-epochs 4
        --seed "$SEED" --threads 1 --no-progress --force)

train() {  # train MODEL NAME [options...]: one arm from the shared initial model, then evaluate
  local model=$1 name=$2
  shift 2
  "$KIST" train "${COMMON[@]}" --model "$model" --init-from "$RUNS/init_$model" \
    --out "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1
  "$KIST" evaluate --model "$RUNS/$name" --data "$DATA" --device cpu > "$RUNS/$name.eval.txt"
}

# 1. One initial model per network (eq. 8), shared by every arm through --init-from.
for model in cae unet; do
  "$KIST" train "${COMMON[@]}" --model "$model" --baseline --stop-after initial \
    --out "$RUNS/init_$model" > "$RUNS/init_$model.log" 2>&1 &
done
wait

# 2. Label audit of both rulebooks on the initial CAE (development test masks).
for rules in mtd mtd_tuned; do
  "$KIST" audit --model "$RUNS/init_cae" --rulebook "rulebooks/$rules.rules" --data "$DATA" \
    --device cpu --json "$RUNS/audit_init_cae_$rules.json" > "$RUNS/audit_init_cae_$rules.txt"
done

# 3. The arms, two at a time: equal-training control (lambda = 0) and KIST.
train cae cae_baseline --baseline &
train cae cae_kist_tuned --rulebook rulebooks/mtd_tuned.rules &
wait
train unet unet_baseline --baseline &
train unet unet_kist_tuned --rulebook rulebooks/mtd_tuned.rules &
wait
train cae cae_kist_table1 --rulebook rulebooks/mtd.rules &
train cae cae_kist_tuned_paper --rulebook rulebooks/mtd_tuned.rules --push paper &
wait

# 4. The table.
for name in cae_baseline cae_kist_tuned cae_kist_table1 cae_kist_tuned_paper \
            unet_baseline unet_kist_tuned; do
  echo "== $name"
  cat "$RUNS/$name.eval.txt"
done
