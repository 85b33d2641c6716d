"""`icecorr correct` on the user's own forecast files (`correct.inputs`, no pair file):

    run_correct_user(cfg, out_path, base_dir) -> Path

Every lead L ≥ 12 h of a forecast that also has the lead L − 12 h is corrected as the window (L − 12 h, L),
conditioned exactly like the pairs `icecorr prepare` builds from forecasts (initial = the forecast at L − 12 h,
forecast = at L, forcing at both valid times, drift_steps 0), and written with `cfg.members` members per
(initialisation, lead) on the user's grid (coupling.forecast_output). Member k of forecast number f at lead L
(whole hours) uses seed member_seeds(seed, f, L, members)[k]. One process: this mode has no MPI distribution.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from icecorr.base.errors import InputError
from icecorr.base.mpi import resolve_comm
from icecorr.base.progress import progress
from icecorr.inputs.user_forecasts import SECTION, UserForecasts
from .checks import check_corrector_units
from .config import CorrectConfig
from .ensemble import check_mode, load_corrector
from .ensemble_output import checkpoint_attrs, global_attrs
from .forecast_output import ForecastEnsembleWriter
from .grid_metadata import GridMetadata
from .layout import WORLD
from .member_fields import check_members_finite


def check_checkpoint_grid(corrector, data: UserForecasts) -> None:
    """The forecasts' grid (ny, nx), spacing (if the files have projection x) and land mask are those the
    checkpoint was trained on, else an InputError naming the forecast file and what differs."""
    from corrector.checkpoint import mask_hash  # loads torch, as the corrector itself

    cgrid = getattr(corrector, "grid", None) or {}
    src = f"the checkpoint {corrector.source}" if getattr(corrector, "source", None) else "the checkpoint"
    path = str(data.files[0])
    sic = data.inputs.forecasts.variables["sic"].name
    if "ny" in cgrid and "nx" in cgrid and data.shape != (int(cgrid["ny"]), int(cgrid["nx"])):
        raise InputError(path, sic, f"grid (y, x) = {data.shape} does not match the grid ({int(cgrid['ny'])}, "
                         f"{int(cgrid['nx'])}) {src} was trained on")
    x = data.grid["x"]
    if cgrid.get("dx") and x is not None and x.size > 1:
        spacing = float(np.median(np.abs(np.diff(x))))
        if not np.isclose(spacing, float(cgrid["dx"]), rtol=1e-3):
            raise InputError(path, data.inputs.forecasts.dims.get("x", "x"), f"grid spacing {spacing:g} m differs "
                             f"from the {float(cgrid['dx']):g} m of {src}")
    want = cgrid.get("mask_hash")
    if want and mask_hash(data.ocean) != want:
        raise InputError(path, data.inputs.mask_variable or "mask", f"land mask ({int(data.ocean.sum())} ocean "
                         f"cells) differs from the one {src} was trained on: the forecasts must be on "
                         f"the grid and land mask of its training pairs (land comes from {SECTION}.mask_variable, "
                         "or where sic is fill/NaN at every time)")


def correct_windows(corrector, data: UserForecasts, windows, cfg: CorrectConfig, mask: np.ndarray
                    ) -> tuple[np.ndarray, np.ndarray]:
    """(corrected (B, members, n_vars, ny, nx), forecast (B, n_vars, ny, nx)) of a batch of windows."""
    from corrector.fields import build_conditioning
    from corrector.seeding import member_seeds

    variables = list(corrector.variables)
    parts = [data.fields(w) for w in windows]
    initial = np.stack([[p[0][v] for v in variables] for p in parts])
    forecast = np.stack([[p[1][v] for v in variables] for p in parts])
    f0 = {f: np.stack([p[2][f] for p in parts]) for f in parts[0][2]}
    f1 = {f: np.stack([p[3][f] for p in parts]) for f in parts[0][3]}
    # drift_steps 0: as in the pairs prepare writes from forecasts (they carry no drift count)
    cond = build_conditioning(corrector.conditioning_names, variables, initial, forecast, f0, f1, mask,
                              drift_steps=0)
    hours = [int(data.forecasts.lead(w) // np.timedelta64(1, "h")) for w in windows]
    seeds = np.stack([member_seeds(cfg.seed, w.forecast, h, cfg.members) for w, h in zip(windows, hours)])
    sample = corrector.sample(cond, members=cfg.members, steps=cfg.sampler_steps, seeds=seeds)
    new = corrector.apply({v: forecast[:, i] for i, v in enumerate(variables)}, sample, mask=mask)
    return np.stack([new[v] for v in variables], axis=2), forecast


def run_correct_user(cfg: CorrectConfig, out_path: str | Path, base_dir: str | Path | None = None, comm=WORLD, *,
                     corrector=None, command: str | None = None, config_text: str | None = None) -> Path:
    """Correct the user's forecast files of `cfg.inputs` (relative paths from `base_dir`, default the working
    directory) into `out_path` (init_time × lead_time × member on the user's grid; see the module docstring).
    Every input is checked before the output is created; the output appears only when complete."""
    world = resolve_comm(comm)
    if world is not None and world.Get_size() > 1:
        raise InputError(None, SECTION, f"correcting your own forecast files runs in one process, not "
                         f"{world.Get_size()} MPI ranks: run it without mpiexec (or with -n 1)")
    if cfg.inputs is None:
        raise InputError(None, SECTION, "no forecast files configured")
    if corrector is None:
        corrector = load_corrector(cfg.checkpoint, "residual")
    check_mode(corrector, "residual", "icecorr correct")
    check_corrector_units(corrector)
    data = UserForecasts(cfg.inputs, Path(base_dir) if base_dir else Path.cwd())
    check_checkpoint_grid(corrector, data)
    variables = list(corrector.variables)
    mask = data.ocean.astype(np.float64)
    grid = GridMetadata(mask=mask, **data.grid)
    gattrs = global_attrs("correct", cfg, corrector, command, config_text)
    gattrs.update(title="icecorr corrected forecasts (init_time x lead_time x member)",
                  source_files=" ".join(str(p) for p in data.files),
                  forcing_files=" ".join(str(p) for p in data.forcing.files),
                  window="lead L is corrected as the 12 h window (L - 12 h, L) of its forecast; leads without the "
                         "lead L - 12 h are not written",
                  seeding=f"seed={cfg.seed}; corrector.seeding.member_seeds(seed, forecast number, lead in whole "
                          "hours, members)[member]")
    writer = ForecastEnsembleWriter(out_path, checkpoint_attrs(corrector, variables), data.init_times, data.leads,
                                    cfg.members, grid, gattrs, cfg.output_options.write_correction)
    status = "failed"
    try:
        windows = data.windows
        for lo in progress(range(0, len(windows), cfg.chunk_size), desc="correct", unit="chunk"):
            batch = windows[lo:lo + cfg.chunk_size]
            corrected, forecast = correct_windows(corrector, data, batch, cfg, mask)
            check_members_finite(f"corrected windows {lo}…{lo + len(batch) - 1}",
                                 corrected.reshape(-1, *corrected.shape[2:]), variables,
                                 range(len(batch) * cfg.members), cfg.members)
            for b, w in enumerate(batch):
                writer.put(w.forecast, data.forecasts.lead(w), {v: corrected[b, :, k] for k, v in enumerate(variables)},
                           {v: forecast[b, k] for k, v in enumerate(variables)})
        status = "complete"
    finally:
        writer.close(status)
    return Path(out_path)
