#!/usr/bin/env bash
# Long-run stability check (≈ 1 h on 2 cores): whole-year training data, the three demo models trained on them, a
# 3-year truth from an unseen seed, then `python -m training.longrun` (3-year emulator rollouts, 1-year coupled run,
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

# 2. models, as in the demo: deterministic residual ‖ diffusion emulator, then the diffusion residual corrector on the
#    frozen deterministic stage ‖ a deterministic emulator (for comparison)
train() { [ -f "$2/best.pt" ] || icecorr train "$1" $data train.out_dir="$2" train.threads=1 "${@:3}" --no-progress; }
train configs/train_deterministic.yaml "$OUT/train/deterministic" &
train configs/train_diffusion_emulator.yaml "$OUT/train/emulator" &
wait
train configs/train_diffusion_residual.yaml "$OUT/train/diffusion" train.base_checkpoint="$OUT/train/deterministic/best.pt" &
train configs/train_diffusion_emulator.yaml "$OUT/train/emulator_deterministic" corrector.kind=deterministic &
wait

# 3. the long runs against the truth
python -m training.longrun --truth "$OUT/truth/train.nc" --out "$OUT" --members 4 \
  --emulator diffusion="$OUT/train/emulator/best.pt" \
  --emulator deterministic="$OUT/train/emulator_deterministic/best.pt" \
  --diffusion "$OUT/train/diffusion/best.pt"
