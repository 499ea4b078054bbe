#!/usr/bin/env bash
# Reproduce the MTD table of docs/results.md: baseline (equal-training control) vs KIST,
# CAE and U-Net, with and without the guided filter.
#
#   scripts/reproduce_mtd.sh [DATA_DIR] [RUNS_DIR]
#
# DATA_DIR defaults to ../shared/datasets/mtd (the development split), RUNS_DIR to
# ../runs/mtd; both live outside the repository. Existing runs in RUNS_DIR are replaced.
# Two trainings run side by side with one torch thread each (on a 2-core CPU that is
# several times faster than one process with two threads). About 35 minutes on a
# shared 2-core CPU for steps 1-3, about 20 more for the extra arms (steps 4-5).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-../shared/datasets/mtd}
RUNS=${2:-../runs/mtd}
KIST=${KISTRULES:-.venv/bin/kistrules}
export OMP_NUM_THREADS=1
mkdir -p "$RUNS"

# Every arm: 64 px, width 16, 40 initial epochs, 5 iterations x 4 update epochs.
options() {  # options SEED
  echo --data "$DATA" --size 64 --width 16 --epochs 40 --iterations 5 --update-epochs 4 \
    --seed "$1" --threads 1 --no-progress --force
}

initial() {  # initial MODEL SEED NAME: the initial model (eq. 8) only
  # shellcheck disable=SC2046
  "$KIST" train $(options "$2") --model "$1" --baseline --stop-after initial \
    --out "$RUNS/$3" > "$RUNS/$3.log" 2>&1
}

arm() {  # arm MODEL SEED INIT NAME [options...]: one arm from a shared initial model
  local model=$1 seed=$2 init=$3 name=$4
  shift 4
  # shellcheck disable=SC2046
  "$KIST" train $(options "$seed") --model "$model" --init-from "$RUNS/$init" \
    --out "$RUNS/$name" "$@" > "$RUNS/$name.log" 2>&1
  "$KIST" evaluate --model "$RUNS/$name" --data "$DATA" --device cpu > "$RUNS/$name.eval.txt"
}

# 1. One initial model per network, shared by every arm through --init-from.
initial cae 0 init_cae &
initial unet 0 init_unet &
wait

# 2. The initial models alone, and the label audit of both rulebooks on the initial CAE
#    (development test masks).
for init in init_cae init_unet; do
  "$KIST" evaluate --model "$RUNS/$init" --data "$DATA" --device cpu > "$RUNS/$init.eval.txt"
done
for rules in mtd mtd_tuned; do
  "$KIST" audit --model "$RUNS/init_cae" --rulebook "rulebooks/$rules.rules" --data "$DATA" \
    --device cpu --json "$RUNS/audit_init_cae_$rules.json" > "$RUNS/audit_init_cae_$rules.txt"
done

# 3. The arms, two at a time: equal-training control (lambda = 0) and KIST.
arm cae 0 init_cae cae_baseline --baseline &
arm cae 0 init_cae cae_kist_tuned --rulebook rulebooks/mtd_tuned.rules &
wait
arm unet 0 init_unet unet_baseline --baseline &
arm unet 0 init_unet unet_kist_tuned --rulebook rulebooks/mtd_tuned.rules &
wait
arm cae 0 init_cae cae_kist_table1 --rulebook rulebooks/mtd.rules &
arm cae 0 init_cae cae_kist_tuned_paper --rulebook rulebooks/mtd_tuned.rules --push paper &
wait

# 4. A harder push (margin mu_e + 10 sigma_e), beside a second seed's initial CAE.
arm cae 0 init_cae cae_kist_tuned_m10 --rulebook rulebooks/mtd_tuned.rules --margin-sigmas 10 &
initial cae 1 init_cae_s1 &
wait

# 5. The second seed: control and KIST from its own initial model.
arm cae 1 init_cae_s1 cae_baseline_s1 --baseline &
arm cae 1 init_cae_s1 cae_kist_tuned_s1 --rulebook rulebooks/mtd_tuned.rules &
wait

# 6. Per-iteration audit of the KIST CAE run, both rulebooks.
for phase in initial update_1 update_2 update_3 update_4 update_5; do
  for rules in mtd_tuned mtd; do
    "$KIST" audit --model "$RUNS/cae_kist_tuned" --phase "$phase" \
      --rulebook "rulebooks/$rules.rules" --data "$DATA" --device cpu \
      > "$RUNS/audit_cae_kist_tuned_${phase}_$rules.txt"
  done
done

# 7. The table.
for name in init_cae init_unet cae_baseline cae_kist_tuned cae_kist_table1 cae_kist_tuned_paper \
            cae_kist_tuned_m10 unet_baseline unet_kist_tuned cae_baseline_s1 cae_kist_tuned_s1; do
  echo "== $name"
  cat "$RUNS/$name.eval.txt" 2>/dev/null || true
done
