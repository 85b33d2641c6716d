#!/usr/bin/env bash
# Long-run stability check (≈ 1.5 h on 2 cores): whole-year training data, the three demo models trained on them, a
# 3-year truth from an unseen seed, then `python -m training.evaluation.longrun` (3-year emulator rollouts, 1-year coupled run,
# uncorrected coarse model) → $OUT/report.md with the domain-mean trajectories against the truth.
#   make longrun            (or: scripts/longrun.sh [OUT], default runs/longrun)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/longrun}
DAGGER_ROUNDS=${DAGGER_ROUNDS:-2}
export PATH="$PWD/.venv/bin:$PATH" OMP_NUM_THREADS=1
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 OMPI_MCA_rmaps_base_oversubscribe=1
mkdir -p "$OUT"
data="train.data.train_file=$OUT/data/train.nc train.data.val_file=$OUT/data/val.nc"

# 1. data: 3 training + 1 validation year (one rank) beside the 3-year truth (the other rank)
[ -f "$OUT/data/manifest.json" ] || icecorr generate configs/longrun/generate.yaml --out "$OUT/data" --no-progress &
[ -f "$OUT/truth/manifest.json" ] || icecorr generate configs/longrun/truth.yaml --out "$OUT/truth" --no-progress &
wait

# 2. models, as in the demo: deterministic residual ‖ deterministic emulator, then the diffusion emulator on top of
#    the deterministic one (its frozen regression stage: docs/emulator.md)
# always called: an interrupted training resumes from its resume.pt and a finished one only re-validates (a best.pt
# is written mid-run, so its presence does not mean the run finished)
train() { icecorr train "$1" "${@:3}" train.out_dir="$2" train.threads=1 --no-progress; }
train configs/train_deterministic.yaml "$OUT/train/deterministic" $data &
train configs/train_deterministic_emulator.yaml "$OUT/train/emulator_deterministic" $data &
wait
# the regression stage fine-tuned on its own 4-step rollouts (as the demo's, icecorr.cli.demo.ROLLOUT_TUNING), then the
# diffusion emulator on its last weights, beside the DAgger rounds below
( train configs/train_deterministic_emulator.yaml "$OUT/train/emulator_tuned" $data train.rollout_steps=4 \
    train.max_steps=500 train.optim.lr=3e-4 train.optim.warmup_steps=0 \
    train.init_checkpoint="$OUT/train/emulator_deterministic/best.pt"
  train configs/train_diffusion_emulator.yaml "$OUT/train/emulator" $data \
    train.base_checkpoint="$OUT/train/emulator_tuned/last.pt" ) &

# 3. DAgger for the coupled corrector (training.data.drift): a corrector trained on re-forecasts from the truth alone
#    runs away in a 1-year coupled run (melt season), so each round adds the states a coupled run visits, labelled
#    with the truth: round 1 the free coarse model's drift, round k > 1 also the coupled runs of every earlier
#    corrector (segments of 15 days restarted from the truth; each earlier round's best.pt, its best one-step
#    corrector on the truth-started validation pairs). Validation pairs stay truth-started, so the corrector kept
#    from the last round is its last checkpoint (last.pt), trained to the end on the drift windows.
correctors=("$OUT/train/deterministic/best.pt")
for k in $(seq 1 "$DAGGER_ROUNDS"); do
  dir="$OUT/train/deterministic_dagger$k"
  args=(); [ "$k" -gt 1 ] && for c in "${correctors[@]}"; do args+=(--corrector "$c"); done
  [ -f "$OUT/data/train_dagger$k.nc" ] || python -m training.data.drift "$OUT/data/train.nc" "$OUT/data/train_dagger$k.nc" \
    --segment-days 15 "${args[@]}"
  train configs/train_deterministic.yaml "$dir" train.data.train_file="$OUT/data/train_dagger$k.nc" \
    train.data.val_file="$OUT/data/val.nc"
  correctors+=("$dir/best.pt")
  base="$dir/last.pt"
done
[ "$DAGGER_ROUNDS" -gt 0 ] || base="$OUT/train/deterministic/best.pt"
train_file="$OUT/data/train_dagger$DAGGER_ROUNDS.nc"; [ "$DAGGER_ROUNDS" -gt 0 ] || train_file="$OUT/data/train.nc"
train configs/train_diffusion_residual.yaml "$OUT/train/diffusion" train.data.train_file="$train_file" \
  train.data.val_file="$OUT/data/val.nc" train.base_checkpoint="$base" &
# for comparison: the diffusion corrector on truth-started pairs alone (as in the demo)
train configs/train_diffusion_residual.yaml "$OUT/train/diffusion_truth_started" $data \
  train.base_checkpoint="$OUT/train/deterministic/best.pt" &
wait

# 4. the long runs against the truth: the diffusion corrector and its deterministic stage after the DAgger rounds,
#    and the diffusion corrector trained on truth-started pairs alone
last=last.pt; [ "$DAGGER_ROUNDS" -gt 0 ] || last=best.pt
python -m training.evaluation.longrun --truth "$OUT/truth/train.nc" --out "$OUT" --members 4 --reuse \
  --emulator diffusion="$OUT/train/emulator/best.pt" \
  --emulator deterministic_tuned="$OUT/train/emulator_tuned/last.pt" \
  --emulator deterministic_one_step="$OUT/train/emulator_deterministic/best.pt" \
  --coupled "diffusion (DAgger $DAGGER_ROUNDS)=$OUT/train/diffusion/$last" \
  --coupled "deterministic (DAgger $DAGGER_ROUNDS)=$base" \
  --coupled "diffusion (truth-started pairs only)=$OUT/train/diffusion_truth_started/best.pt"
