#!/usr/bin/env bash
# Long-run stability check (≈ 2 h on 2 cores): whole-year training data, the three demo models trained on them, a
# 3-year truth from an unseen seed, then `python -m training.evaluation.longrun` (3-year emulator rollouts, 1-year coupled run,
# uncorrected coarse model) → $OUT/report.md with the domain-mean trajectories against the truth.
#   make longrun            (or: scripts/longrun.sh [OUT], default runs/longrun)
set -euo pipefail
cd "$(dirname "$0")/.."
OUT=${1:-runs/longrun}
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
# diffusion emulator on its last weights, beside the coupled correctors below
( train configs/train_deterministic_emulator.yaml "$OUT/train/emulator_tuned" $data train.rollout_steps=4 \
    train.max_steps=500 train.optim.lr=3e-4 train.optim.warmup_steps=0 \
    train.init_checkpoint="$OUT/train/emulator_deterministic/best.pt"
  train configs/train_diffusion_emulator.yaml "$OUT/train/emulator" $data \
    train.base_checkpoint="$OUT/train/emulator_tuned/last.pt" ) &

# 3. the coupled corrector: trained on the increments of a run nudged halfway to the truth every 12 h
#    (training.data.nudged), not on re-forecasts from the truth, whose residual carries the model's shock at being
#    started from a state not its own (≈ 8 mm of volume per 12 h in June) that a year-long coupled run never has
#    (docs/calibration.md, "Year-long coupled runs"); each member keeps the physics' ice and snow totals
#    (sampler.bounds conserve_physics). Its diffusion stage on the same pairs, beside the emulators' training.
[ -f "$OUT/data/train_nudged.nc" ] || python -m training.data.nudged "$OUT/data/train.nc" "$OUT/data/train_nudged.nc" --alpha 0.5
nudged="train.data.train_file=$OUT/data/train_nudged.nc train.data.val_file=$OUT/data/val.nc corrector.sampler.bounds=conserve_physics"
train configs/train_deterministic.yaml "$OUT/train/deterministic_nudged" $nudged
# validation pairs are truth-started: the nudged correctors are kept at their last step (last.pt)
train configs/train_diffusion_residual.yaml "$OUT/train/diffusion_nudged" $nudged \
  train.base_checkpoint="$OUT/train/deterministic_nudged/last.pt"
wait

# 4. the long runs against the truth: 3-year emulator rollouts; 1-year coupled runs of the nudged correctors and,
#    for comparison, of the deterministic corrector trained on truth-started pairs; the diffusion ensemble with the
#    demo's 16 members (≈ 25 min; 4 members: one season-variable more above the coarse model, docs/calibration.md)
python -m training.evaluation.longrun --truth "$OUT/truth/train.nc" --out "$OUT" --members 16 --reuse \
  --emulator diffusion="$OUT/train/emulator/best.pt" \
  --emulator deterministic_tuned="$OUT/train/emulator_tuned/last.pt" \
  --emulator deterministic_one_step="$OUT/train/emulator_deterministic/best.pt" \
  --coupled "diffusion (nudged pairs)=$OUT/train/diffusion_nudged/last.pt" \
  --coupled "deterministic (nudged pairs)=$OUT/train/deterministic_nudged/last.pt" \
  --coupled "deterministic (truth-started pairs)=$OUT/train/deterministic/best.pt"
