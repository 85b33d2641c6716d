"""Output files of ensemble runs (`couple`, `emulate`): one CF trajectory file per window, restart files, and the
CF and global attributes every run driver writes (`correct` too). Variable attributes come from the one variable
table, icecorr.base.variables.
"""
from __future__ import annotations

import json
import re
import shlex
import sys
from datetime import datetime
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import yaml

from icecorr.base.progress import progress
from icecorr.base.variables import VARIABLES, attrs as cf_attrs
from icecorr.base.version import package_version
from .config import CoupleConfig
from .ensemble import checkpoint_id
from .forcing import ForcingSource, check_window_starts
from .output import TrajectoryWriter
from .restart import SEEDING, RestartState, restart_path, write_restart


def output_paths(out_path: str | Path, start_indices: Sequence[int]) -> list[Path]:
    """The trajectory file of each window: `out_path` itself for one window, else `<stem>_w<start:05d><suffix>`.
    A start given twice is an InputError (`coupling.forcing.check_window_starts`): two windows, one file."""
    check_window_starts(start_indices)
    out_path = Path(out_path)
    if len(start_indices) == 1:
        return [out_path]
    return [out_path.with_name(f"{out_path.stem}_w{s:05d}{out_path.suffix}") for s in start_indices]


def table_attrs(name: str, unknown: Mapping[str, str]) -> dict[str, str]:
    """CF attributes of `name` from the variable table (icecorr.base.variables), `unknown` for a name it lacks."""
    return cf_attrs(name) if name in VARIABLES else dict(unknown)


def checkpoint_attrs(corrector, variables: Sequence[str]) -> dict[str, dict[str, str]]:
    """CF attributes of the ML variables of an `emulate`/`correct` run (no model describes them): the variable
    table's, with the units the checkpoint was trained in where it records them."""
    units = getattr(corrector, "variables_units", {}) or {}
    return {v: {**table_attrs(v, {"units": ""}), **({"units": units[v]} if v in units else {})} for v in variables}


class EnsembleOutput:
    """Writer-rank side of a run: one trajectory file per window, restart files, CF attributes, and the run's
    progress bar on a terminal (icecorr.base.progress).

    `attrs`: CF attributes of each variable (`table_attrs`, `checkpoint_attrs`); `mode` 'couple' also declares
    `forecast_{v}`/`correction_{v}` if the output options ask for them; `restart`: the state a continued run
    starts from (its old trajectory files are copied up to that step).
    """

    def __init__(self, cfg: CoupleConfig, paths: Sequence[Path], variables: Sequence[str],
                 attrs: Mapping[str, Mapping[str, str]], grid_shape: tuple[int, int], dx: float,
                 forcing: ForcingSource, global_attrs: Mapping[str, object], mode: str,
                 restart: RestartState | None, state_names: Sequence[str], state_units: Mapping[str, str]):
        self.cfg, self.paths, self.variables = cfg, list(paths), list(variables)
        self.forcing, self.mode, self.dx = forcing, mode, dx
        self.state_names, self.state_units = list(state_names), dict(state_units)
        self.global_attrs = dict(global_attrs)
        opts = cfg.output_options
        declared = {v: dict(attrs[v]) for v in self.variables}
        if opts.write_forecast and mode == "couple":
            declared.update({f"forecast_{v}": {**attrs[v], "long_name": f"uncorrected 12 h forecast of {v}"}
                             for v in self.variables})
        if opts.write_correction and mode == "couple":
            declared.update({f"correction_{v}": {"units": attrs[v].get("units", ""),
                                                 "long_name": f"applied correction of {v} (after bounds)"}
                             for v in self.variables})
        self.writers = []
        ny, nx = grid_shape
        for w, (path, start) in enumerate(zip(self.paths, cfg.start_indices)):
            kw = dict(variables=declared, members=cfg.members, ny=ny, nx=nx, dx=dx, start=forcing.time(start),
                      precision=opts.precision, grid=getattr(forcing, "grid_metadata", None),
                      global_attrs={**self.global_attrs, "window_start_index": int(start),
                                    "window_start_time": f"{forcing.time(start):%Y-%m-%dT%H:%M:%S}"})
            if restart is not None:
                old = Path(restart.outputs[w]) if w < len(restart.outputs) else path
                writer = TrajectoryWriter.continue_from(old, restart.step + 1, path, **kw)
                if writer.n_records == 0:
                    # the old output is gone or short: the new file starts at the restart state (times say so)
                    writer.append(forcing.time(start + restart.step), restart.step,
                                  {v: restart.states[v][w] for v in self.variables if v in restart.states})
            else:
                writer = TrajectoryWriter(path, **kw)
            self.writers.append(writer)
        self.restart_dir = Path(cfg.restart_dir) if cfg.restart_dir else self.paths[0].parent
        self.last_restart: Path | None = None
        # one bar for the run (this is the writer rank): records written of the cfg.steps + 1 of each window
        self.bar = progress(total=cfg.steps + 1, initial=self.writers[0].n_records if self.writers else 0,
                            desc=mode, unit="record")

    def record(self, step: int, initial: np.ndarray, forecast: np.ndarray | None, corrected: np.ndarray) -> None:
        """Append the record after `step` completed steps; arrays (n_slots, n_vars, ny, nx)."""
        m = self.cfg.members
        for w, (writer, start) in enumerate(zip(self.writers, self.cfg.start_indices)):
            sl = slice(w * m, (w + 1) * m)
            fields = {v: corrected[sl, i] for i, v in enumerate(self.variables)}
            if step > 0 and forecast is not None:
                if f"forecast_{self.variables[0]}" in writer.variables:
                    fields.update({f"forecast_{v}": forecast[sl, i] for i, v in enumerate(self.variables)})
                if f"correction_{self.variables[0]}" in writer.variables:
                    fields.update({f"correction_{v}": corrected[sl, i] - forecast[sl, i]
                                   for i, v in enumerate(self.variables)})
            writer.append(self.forcing.time(start + step), step, fields)
        self.bar.update(1)

    def restart(self, step: int, states: np.ndarray, extras: np.ndarray | None = None) -> None:
        """Write the restart file after `step` completed steps; states (n_slots, n_state, ny, nx), extras
        (n_slots, n) hidden model state (see coupling.member_fields.hidden_state)."""
        n_win, m = len(self.cfg.start_indices), self.cfg.members
        ny, nx = states.shape[-2:]
        r = RestartState(mode=self.mode, step=step, start_indices=list(self.cfg.start_indices), members=m,
                         seed=self.cfg.seed,
                         states={n: states[:, j].reshape(n_win, m, ny, nx) for j, n in enumerate(self.state_names)},
                         extras=None if extras is None else extras.reshape(n_win, m, -1),
                         units=self.state_units, outputs=[str(p) for p in self.paths],
                         checkpoint_id=str(self.global_attrs.get("checkpoint_id", "")), dx=self.dx,
                         config=str(self.global_attrs.get("config", "")))
        stem = re.sub(r"_w\d{5}$", "", self.paths[0].stem) if len(self.paths) > 1 else self.paths[0].stem
        self.last_restart = write_restart(restart_path(self.restart_dir, stem, step), r)

    def close(self, status: str = "complete") -> None:
        """Close every trajectory file, marking it `status` ('complete' or 'failed'); every one is closed even if
        closing another fails, and the first failure is raised after all of them (the other windows' complete
        files are then in place)."""
        self.bar.close()
        first: BaseException | None = None
        for w in self.writers:
            try:
                w.close(status)
            except BaseException as exc:  # noqa: BLE001 - re-raised below, once every window is closed
                first = first or exc
        if first is not None:
            raise first


def global_attrs(verb: str, cfg, corrector, command: str | None, config_text: str | None) -> dict:
    """Global attributes of an output file of `icecorr <verb>`: provenance (version, command line, configuration,
    checkpoint hash, sampler, seeding) and history."""
    sampler = getattr(getattr(corrector, "config", None), "sampler", None)
    return {
        "title": f"icecorr {verb} output",
        "producer": f"icecorr {verb}",
        "icecorr_version": package_version(),
        "command": command if command is not None else shlex.join(sys.argv),
        "config": config_text if config_text is not None else yaml.safe_dump(cfg.model_dump(mode="json"),
                                                                             sort_keys=False),
        "checkpoint_id": checkpoint_id(corrector),
        "corrector_kind": f"{getattr(corrector, 'kind', '?')}/{getattr(corrector, 'mode', '?')}",
        "sampler": json.dumps({**(sampler.model_dump(mode="json") if sampler is not None else {}),
                               "steps_override": getattr(cfg, "sampler_steps", None)}),
        "seeding": f"seed={cfg.seed}; {SEEDING}",
        "history": f"{datetime.now():%Y-%m-%dT%H:%M:%S} created by icecorr {verb}",
    }
