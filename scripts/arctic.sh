#!/usr/bin/env bash
# The Arctic emulator end to end (docs/arctic.md): BBM emulator pairs on the Arctic grid over MPI ranks, a 3-year
# BBM run from an unseen seed, a deterministic emulator trained on random patches and a diffusion emulator on top of
# it (its frozen regression stage, as on the box: docs/emulator.md), their 3-year rollouts on the whole domain,
# `icecorr evaluate` and the extent/volume report.
#   make arctic                       (or: scripts/arctic.sh [OUT], default runs/arctic)
#   RES_KM=50 YEARS=2 scripts/arctic.sh runs/arctic50     coarser grid, fewer training years
#   QUICK=1 scripts/arctic.sh runs/arctic_quick           smoke test: 200 km grid, a few days, a few steps
# Sizes (env): RES_KM (25), YEARS of training runs (5), RANKS of generate (2), DET_STEPS, TUNE_STEPS and DIFF_STEPS
# of the three trainings (3000, 1000, 2000: fixed counts, so the figures do not depend on the machine's load;
# DIFF_STEPS=0 leaves the diffusion emulator out), ROLLOUT_STEPS of the fine-tuning (8), THREADS of the trainings
# and rollouts (all cores), TRAIN_MINUTES (a guard per training against a stalled machine, 240), ROLLOUT_DAYS
# (1095), CROP (64 cells).
set -euo pipefail
{ # read whole before it runs, so an edit of this file cannot change a run under way
cd "$(dirname "$0")/.."
OUT=${1:-runs/arctic}
QUICK=${QUICK:-0}
RES_KM=${RES_KM:-25}; YEARS=${YEARS:-5}; RANKS=${RANKS:-2}; TRAIN_MINUTES=${TRAIN_MINUTES:-240}
DET_STEPS=${DET_STEPS:-3000}; TUNE_STEPS=${TUNE_STEPS:-1000}; ROLLOUT_STEPS=${ROLLOUT_STEPS:-8}
DIFF_STEPS=${DIFF_STEPS:-2000}
ROLLOUT_DAYS=${ROLLOUT_DAYS:-1095}; CROP=${CROP:-64}
export PATH="$PWD/.venv/bin:$PATH" OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
CFG=configs/region/arctic
gen_sizes=(); truth_sizes=(); train_sizes=()
if [ "$QUICK" = 1 ]; then
  RES_KM=200; ROLLOUT_DAYS=4; CROP=8; RANKS=2
  gen_sizes=(generate.run_days=3 generate.spinup_days=0.5 "generate.seeds.train=[1,2]" "generate.seeds.val=[3]")
  truth_sizes=(generate.run_days=4 generate.spinup_days=0.5)
  train_sizes=(train.val_every=2 train.checkpoint_every=2 train.batch_size=4 train.log_every=1
               train.time_budget_minutes=null train.val_batches=1 train.skill_batches=1 train.data.crop_stride=4
               corrector.network.base_channels=8 corrector.network.embedding_dim=16 corrector.network.norm_groups=4)
else
  seeds=$(seq -s, 1 "$YEARS")
  gen_sizes=("generate.seeds.train=[$seeds]" "generate.seeds.val=[$((YEARS + 1))]")
  train_sizes=(train.time_budget_minutes="$TRAIN_MINUTES" train.fit_schedule_to_budget=false)
fi
mkdir -p "$OUT"
# the region at the chosen resolution (landmarks and walls as in grid.yaml)
python - "$CFG/grid.yaml" "$OUT/grid.yaml" "$RES_KM" <<'EOF'
import sys, yaml
grid = yaml.safe_load(open(sys.argv[1]))
grid["resolution_km"] = float(sys.argv[3])
grid["supersample"] = max(2, int(round(8 * 25 / float(sys.argv[3]))))  # coastline samples ~3 km apart
yaml.safe_dump(grid, open(sys.argv[2], "w"), sort_keys=False)
EOF
region=(region="$OUT/grid.yaml" forcing="$CFG/forcing.yaml")
log() { echo "[arctic $(date -u +%H:%M:%S)] $*"; }

# 1. data: emulator pairs (BBM -> BBM on one grid) over $RANKS MPI ranks, then the 3-year BBM run
if [ ! -f "$OUT/data/manifest.json" ]; then
  log "generate: ${RES_KM} km, ${gen_sizes[*]} over $RANKS ranks"
  mpiexec -n "$RANKS" icecorr generate "$CFG/generate.yaml" "${region[@]}" "${gen_sizes[@]}" --out "$OUT/data" --no-progress
fi
if [ ! -f "$OUT/truth/manifest.json" ]; then
  log "generate: the BBM run for the rollouts"
  icecorr generate "$CFG/generate_longrun.yaml" "${region[@]}" "${truth_sizes[@]}" --out "$OUT/truth" --no-progress
fi

# 2. the deterministic emulator on random patches (one-step loss on the bounded state), fine-tuned on rollouts of
# ROLLOUT_STEPS steps (the states its own rollouts reach: docs/arctic.md), then the diffusion emulator on top of it
# (its frozen regression stage: trained alone the diffusion model learns the storm drift far too slowly,
# docs/emulator.md), on every core
data=(train.data.train_file="$OUT/data/train.nc" train.data.val_file="$OUT/data/val.nc" train.data.crop="$CROP")
threads=${THREADS:-$(nproc)}
# always called: an interrupted training resumes from its resume.pt (best.pt is written mid-run)
train() { OMP_NUM_THREADS=$threads icecorr train "$CFG/train_emulator.yaml" "${data[@]}" "${train_sizes[@]}" \
            train.out_dir="$1" train.threads="$threads" --no-progress "${@:2}"; }
if [ "$QUICK" = 1 ]; then DET_STEPS=4; TUNE_STEPS=2; ROLLOUT_STEPS=2; DIFF_STEPS=4; fi
log "train: deterministic emulator ($DET_STEPS steps)"
train "$OUT/train/emulator_one_step" corrector.kind=deterministic corrector.loss_bounded=true \
  train.max_steps="$DET_STEPS" train.optim.lr=2e-3 train.optim.min_lr=1e-5 train.optim.warmup_steps=100 \
  > "$OUT/train_emulator_one_step.log" 2>&1
log "train: fine-tuning it on $ROLLOUT_STEPS-step rollouts ($TUNE_STEPS steps)"
train "$OUT/train/emulator_deterministic" corrector.kind=deterministic corrector.loss_bounded=true \
  train.max_steps="$TUNE_STEPS" train.rollout_steps="$ROLLOUT_STEPS" \
  train.init_checkpoint="$OUT/train/emulator_one_step/best.pt" train.optim.lr=3e-4 train.optim.min_lr=1e-5 \
  train.optim.warmup_steps=0 > "$OUT/train_emulator_deterministic.log" 2>&1
emulators=(--emulator deterministic="$OUT/train/emulator_deterministic/last.pt"
           --emulator one_step="$OUT/train/emulator_one_step/best.pt")
rollouts=(deterministic="$OUT/report/emulator_deterministic.nc" one_step="$OUT/report/emulator_one_step.nc")
if [ "$DIFF_STEPS" != 0 ]; then  # DIFF_STEPS=0: the deterministic emulators only
  log "train: diffusion emulator on the deterministic one ($DIFF_STEPS steps)"
  train "$OUT/train/emulator" train.max_steps="$DIFF_STEPS" \
    train.base_checkpoint="$OUT/train/emulator_deterministic/last.pt" > "$OUT/train_emulator.log" 2>&1
  emulators=(--emulator diffusion="$OUT/train/emulator/best.pt" "${emulators[@]}")
  rollouts=(diffusion="$OUT/report/emulator_diffusion.nc" "${rollouts[@]}")
fi

# 3. rollouts on the whole domain against the BBM run, and the report
log "rollouts: $ROLLOUT_DAYS days"
OMP_NUM_THREADS=$threads python -m training.evaluation.arctic_report --truth "$OUT/truth/train.nc" --out "$OUT/report" --days "$ROLLOUT_DAYS" \
  --region "$OUT/grid.yaml" --forcing "$CFG/forcing.yaml" "${emulators[@]}"
log "evaluate"
icecorr evaluate "${rollouts[@]}" --reference "$OUT/truth/train.nc" -o "$OUT/report/evaluate" \
  --set "evaluate.spectrum_leads_hours=[12,360,1200]" || log "icecorr evaluate failed (see above)"
log "done: $OUT/report/report.md"
exit
}
