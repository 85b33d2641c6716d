"""Runs start from a plain state file in another model's conventions (issue 16): concentration in %, thickness in
cm, A-grid velocities in cm s-1, land as _FillValue, dims `t`/`nj`/`ni`, read through the `initial_state` mapping
(icecorr.inputs.state_file). The state handed to the model, and the first record of `couple`/`emulate`, are the
hand-converted values; a bad file is one InputError naming the file and the variable or mapping key."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import xarray as xr

from corrector.inference import Corrector
from coupling.bridge import CoarseModel
from coupling.config import CoupleConfig
from coupling.couple import run_couple
from coupling.emulate import run_emulate
from coupling.forcing import CallableForcing
from fortran_stub.config import GridConfig
from icecorr.base.errors import InputError
from icecorr.base.variables import FORCING_VARIABLES, VARIABLES
from icecorr.cli import main
from icecorr.inputs.state_file import StateFile, StateFileConfig
from tests.mpi_scripts import case
from tests.mpi_scripts.tiny import tiny_corrector

N, DX = 16, 16_000.0
VARS = ("sic", "sit", "snt", "siu", "siv")
T0 = np.datetime64("2000-10-01T00:00")  # case.forcing's first date
MAPPING = {"sic": {"name": "aice", "units": "%"}, "sit": {"name": "hi", "units": "cm"},
           "snt": {"name": "hs", "units": "cm"}, "siu": {"name": "uvel", "units": "cm s-1"},
           "siv": {"name": "vvel", "units": "cm/s"}}
DIMS = {"time": "t", "y": "nj", "x": "ni"}


def land_mask() -> np.ndarray:
    """An island and a strip of coast along the north wall (1 = ocean)."""
    m = np.ones((N, N))
    m[6:9, 5:9] = 0.0
    m[-2:, 3:12] = 0.0
    return m


def foreign_fields(scale: float = 1.0) -> dict[str, np.ndarray]:
    """The other model's fields at one time, in its units (%, cm, cm s-1), NaN on land."""
    ocean = land_mask() > 0
    st = case.initial_state(N)
    y, x = np.mgrid[0:N, 0:N]
    fields = {"aice": 100.0 * scale * st["sic"], "hi": 100.0 * st["sit"], "hs": 100.0 * st["snt"],
              "uvel": 8.0 * np.sin(0.4 * x + 0.2 * y) * scale, "vvel": -5.0 * np.cos(0.3 * y - 0.1 * x)}
    return {k: np.where(ocean, v, np.nan) for k, v in fields.items()}


def write_state_file(path: Path, records: int = 2, km: float = 16.0, **edit) -> Path:
    """A CICE-like state file: `records` 12-hourly records (the second with 0.9 × the concentration and speed),
    dims (t, nj, ni), ni/nj in km, land as _FillValue."""
    data = {}
    for name in ("aice", "hi", "hs", "uvel", "vvel"):
        stack = np.stack([foreign_fields(1.0 - 0.1 * k)[name] for k in range(records)])
        data[name] = (("t", "nj", "ni"), stack, {"units": {"aice": "%", "uvel": "cm/s", "vvel": "cm s-1"}.get(
            name, "cm")})
    ds = xr.Dataset(data, coords={"t": pd.date_range("2000-10-01", periods=records, freq="12h"),
                                  "nj": ("nj", (np.arange(N) + 0.5) * km, {"units": "km"}),
                                  "ni": ("ni", (np.arange(N) + 0.5) * km, {"units": "kilometre"})})
    for name, change in edit.items():
        ds[name] = change(ds[name])
    ds.to_netcdf(path, encoding={v: {"_FillValue": -9999.0} for v in ds.data_vars})
    return path


def hand_state(record: int = 0) -> dict[str, np.ndarray]:
    """The model state the file's record maps to, converted by hand: fractions, metres, velocities averaged onto
    the east/north faces (0 on faces touching land or the walls), 0 on land."""
    ocean = land_mask() > 0
    f = foreign_fields(1.0 - 0.1 * record)
    sic = np.where(ocean, f["aice"] / 100.0, 0.0)
    out = {"sic": sic, "sit": np.where(ocean & (sic > 0), f["hi"] / 100.0, 0.0),
           "snt": np.where(ocean & (sic > 0), f["hs"] / 100.0, 0.0), "siu": np.zeros((N, N)), "siv": np.zeros((N, N))}
    for j in range(N):
        for i in range(N):
            if i + 1 < N and ocean[j, i] and ocean[j, i + 1]:
                out["siu"][j, i] = 0.5 * (f["uvel"][j, i] + f["uvel"][j, i + 1]) / 100.0
            if j + 1 < N and ocean[j, i] and ocean[j + 1, i]:
                out["siv"][j, i] = 0.5 * (f["vvel"][j, i] + f["vvel"][j + 1, i]) / 100.0
    return out


def grid() -> GridConfig:
    return GridConfig(nx=N, ny=N, dx=DX, mask=land_mask())


def state_cfg(path: Path, **changes) -> StateFileConfig:
    return StateFileConfig(**{"file": str(path), "variables": MAPPING, "dims": DIMS, **changes})


def masked_forcing(steps: int) -> CallableForcing:
    base = case.forcing(N, steps + 2)
    return CallableForcing(lambda k: base.pair(k)[0], start=base.start, mask=land_mask())


def assert_state(got, want, what: str) -> None:
    for v in VARS:
        np.testing.assert_allclose(np.asarray(got[v], dtype=np.float64), want[v], rtol=1e-12, atol=1e-15,
                                   err_msg=f"{what}: {v}")


# ------------------------------------------------------------------------------------------------------ runs
def test_couple_hands_the_mapped_state_to_the_model_and_records_it(tmp_path):
    """Two windows (start indices 0 and 1): each starts from the record at its start date, converted by hand."""
    path = write_state_file(tmp_path / "cice.nc")
    handed = []

    class Recording(CoarseModel):
        def set_state(self, state):
            handed.append({k: np.array(v) for k, v in state.items()})
            super().set_state(state)

    cfg = CoupleConfig(members=2, n_steps=1, start_indices=[0, 1], output_options={"precision": "float64"})
    paths = run_couple(cfg, StateFile(state_cfg(path), grid()), masked_forcing(3), tmp_path / "run.nc", comm=None,
                       grid=grid(), model_factory=lambda: Recording(grid()), corrector=Corrector.zero(grid={"ny": N,
                                                                                                         "nx": N}))
    assert len(handed) == 4  # 2 windows × 2 members
    for slot, state in enumerate(handed):
        want = hand_state(slot // 2)
        for v in VARS:  # the mapped values (to rounding: ×0.01 there, /100 here)
            np.testing.assert_allclose(state[v], want[v], rtol=1e-14, atol=0, err_msg=f"slot {slot}: {v}")
    for w, p in enumerate(paths):
        ds = xr.load_dataset(p)
        for k in range(2):
            assert_state({v: ds[v].values[0, k] for v in VARS}, hand_state(w), f"window {w} member {k}")


def test_emulate_starts_from_the_mapped_state(tmp_path):
    path = write_state_file(tmp_path / "cice.nc", records=1)
    cfg = CoupleConfig(members=2, n_steps=1, output_options={"precision": "float64"})
    out = run_emulate(cfg, StateFile(state_cfg(path), grid()), masked_forcing(2), tmp_path / "emu.nc", comm=None,
                      corrector=tiny_corrector(mode="emulator"))[0]
    ds = xr.load_dataset(out)
    for k in range(2):
        assert_state({v: ds[v].values[0, k] for v in VARS}, hand_state(0), f"member {k}")


def write_forcing_file(path: Path, steps: int) -> Path:
    """12-hourly forcing snapshots with the land mask; `huss` in '1' (= kg kg-1) and velocities in 'm/s': other
    spellings of the table's units, which the run must accept (units compared by UDUNITS, not as strings)."""
    f = case.forcing(N, steps + 2)
    snaps = [f.pair(k)[0] for k in range(steps + 1)]
    spelled = {"huss": "1", "uas": "m/s", "vas": "m/s", "uo": "m/s", "vo": "m/s"}
    data = {v: (("time", "y", "x"), np.stack([s[v] for s in snaps]),
                {"units": spelled.get(v, VARIABLES[v]["units"])}) for v in FORCING_VARIABLES}
    data["mask"] = (("y", "x"), land_mask())
    xr.Dataset(data, coords={"time": pd.date_range("2000-10-01", periods=steps + 1, freq="12h")}).to_netcdf(path)
    return path


def write_config(tmp_path: Path, state: Path, forcing: Path, **mapping) -> Path:
    import yaml

    np.save(tmp_path / "mask.npy", land_mask())
    cfg = {"grid": {"nx": N, "ny": N, "dx": DX, "mask": str(tmp_path / "mask.npy")},
           "initial_state": {"file": str(state), "time": "2000-10-01T12:00", "variables": {**MAPPING, **mapping},
                             "dims": DIMS},
           "forcing": str(forcing), "couple": {"members": 2, "n_steps": 1, "output": str(tmp_path / "out" / "r.nc"),
                                                     "output_options": {"precision": "float64"}}}
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_cli_couple_from_a_state_file_with_other_unit_spellings(tmp_path, capsys):
    """`icecorr couple` with `initial_state:` (record chosen by `time`) and a forcing file whose units are other
    spellings of the table's ('1' for kg kg-1, 'm/s'): runs, and its first record is the mapped record 1."""
    cfg = write_config(tmp_path, write_state_file(tmp_path / "cice.nc"), write_forcing_file(tmp_path / "f.nc", 2))
    assert main(["couple", str(cfg)]) == 0, capsys.readouterr().err
    ds = xr.load_dataset(tmp_path / "out" / "r.nc")
    for k in range(2):
        assert_state({v: ds[v].values[0, k] for v in VARS}, hand_state(1), f"member {k}")


def test_cli_couple_names_the_mapping_key_of_a_missing_variable(tmp_path, capsys):
    cfg = write_config(tmp_path, write_state_file(tmp_path / "cice.nc"), write_forcing_file(tmp_path / "f.nc", 2),
                       sit={"name": "sithick", "units": "m"})
    assert main(["couple", str(cfg)]) == 2
    err = capsys.readouterr().err.strip()
    assert "cice.nc" in err and "'initial_state.variables.sit'" in err and "'sithick' missing" in err, err
    assert "Traceback" not in err and not (tmp_path / "out" / "r.nc").exists()


def test_config_needs_one_initial_source_and_a_forcing_with_a_state_file(tmp_path):
    from icecorr.base.config import ConfigError, load_config
    from icecorr.cli.runconfig import CoupleRunConfig

    state = {"file": "s.nc", "variables": MAPPING}
    with pytest.raises(ConfigError, match="one of `initial`"):
        load_config(CoupleRunConfig, None, ["initial=p.nc", f"initial_state={state}", "forcing=f.nc"])
    with pytest.raises(ConfigError, match="needs `forcing`"):
        load_config(CoupleRunConfig, None, [f"initial_state={state}"])
    with pytest.raises(ConfigError, match="state mapping lacks"):
        load_config(CoupleRunConfig, None, [f"initial_state={{file: s.nc, variables: {{sic: {MAPPING['sic']}}}}}",
                                            "forcing=f.nc"])


# ---------------------------------------------------------------------------------------------------- errors
def first_state(path: Path, **changes):
    return StateFile(state_cfg(path, **changes), grid()).window_states([T0])[0]


def test_decreasing_y_with_centre_velocities_is_reversed(tmp_path):
    path = write_state_file(tmp_path / "flip.nc", records=1)
    flipped = xr.load_dataset(path).isel(nj=slice(None, None, -1))
    flipped.to_netcdf(tmp_path / "flipped.nc", encoding={v: {"_FillValue": -9999.0} for v in flipped.data_vars})
    assert_state(first_state(tmp_path / "flipped.nc"), hand_state(0), "reversed y")


def _set(where, value):
    def change(da):
        a = da.values.copy()
        a[(slice(None), *where)] = value
        return da.copy(data=a)
    return change


@pytest.mark.parametrize("edit, changes, field, text", [
    ({}, {"variables": {**MAPPING, "sit": {"name": "sithick", "units": "cm"}}}, "initial_state.variables.sit",
     "variable 'sithick' missing"),
    ({}, {"variables": {**MAPPING, "sit": {"name": "hi", "units": "kg"}}}, "initial_state.variables.sit.units",
     "cannot convert 'kg'"),
    ({}, {"variables": {**MAPPING, "sit": {"name": "hi", "units": "m"}}}, "hi",
     "units attribute 'cm' differs from the mapping's 'm'"),
    ({"aice": _set((5, 5), np.nan)}, {}, "aice", "1 NaN/fill value(s) inside the ocean mask"),
    ({"aice": _set((7, 6), 50.0)}, {}, "aice", "ice on 1 land cell(s) of the run's grid mask"),
    ({}, {"dims": {"time": "t", "y": "nj", "x": "nx"}}, "aice", "dimensions"),
    ({}, {"time": "2000-10-02T00:00"}, "initial_state.time", "no record at 2000-10-02T00:00"),
    ({}, {"mask_variable": "tmask"}, "initial_state.mask_variable", "variable 'tmask' missing"),
])
def test_bad_state_file_names_file_and_field(tmp_path, edit, changes, field, text):
    path = write_state_file(tmp_path / "bad.nc", **edit)
    with pytest.raises(InputError) as err:
        first_state(path, **changes)
    assert err.value.file == str(path) and err.value.field == field, str(err.value)
    assert text in str(err.value), str(err.value)


def test_wrong_shape_and_spacing_are_named(tmp_path):
    narrow = write_state_file(tmp_path / "narrow.nc", records=1)
    xr.load_dataset(narrow).isel(ni=slice(0, 12)).to_netcdf(tmp_path / "n12.nc")
    with pytest.raises(InputError, match=r"n12\.nc.*'aice'.*grid \(y, x\) = \(16, 12\) does not match the run's grid"):
        first_state(tmp_path / "n12.nc")
    with pytest.raises(InputError, match=r"coarse\.nc.*'nj'.*grid spacing 20000\.\.20000 m does not match the run's "
                                         r"grid dx = 16000 m"):
        first_state(write_state_file(tmp_path / "coarse.nc", km=20.0))


def test_window_start_picks_its_record_and_a_single_record_serves_every_window(tmp_path):
    two = StateFile(state_cfg(write_state_file(tmp_path / "two.nc")), grid())
    assert two.record(T0) == 0 and two.record(T0 + np.timedelta64(12, "h")) == 1
    one = StateFile(state_cfg(write_state_file(tmp_path / "one.nc", records=1)), grid())
    states = one.window_states([T0, T0 + np.timedelta64(36, "h")])
    assert_state(states[1], hand_state(0), "single record")
    no_time = xr.load_dataset(tmp_path / "one.nc").isel(t=0, drop=True)
    no_time.to_netcdf(tmp_path / "no_time.nc", encoding={v: {"_FillValue": -9999.0} for v in no_time.data_vars})
    assert_state(first_state(tmp_path / "no_time.nc"), hand_state(0), "no time dimension")
    with pytest.raises(InputError, match="'initial_state.time'.*no time dimension"):
        first_state(tmp_path / "no_time.nc", time=0)


def test_default_dims_time_y_x(tmp_path):
    one = xr.load_dataset(write_state_file(tmp_path / "one.nc", records=1)).rename({"t": "time", "nj": "y", "ni": "x"})
    one.to_netcdf(tmp_path / "plain.nc", encoding={v: {"_FillValue": -9999.0} for v in one.data_vars})
    state = StateFile(StateFileConfig(file=str(tmp_path / "plain.nc"), variables=MAPPING), grid()).window_states([T0])
    assert_state(state[0], hand_state(0), "default dims")


def test_fortran_kit_reads_the_state_file_like_couple(tmp_path, capsys):
    """`icecorr fortran-kit` on a config with `initial_state:` writes the mapped record as the window's initial
    state (initial.bin: sic is the first field, (ny, nx) in C order of the Fortran (nx, ny) array)."""
    cfg = write_config(tmp_path, write_state_file(tmp_path / "cice.nc"), write_forcing_file(tmp_path / "f.nc", 2))
    assert main(["fortran-kit", str(cfg), "--out", str(tmp_path / "kit")]) == 0, capsys.readouterr().err
    sic = np.fromfile(tmp_path / "kit" / "initial.bin")[: N * N].reshape(N, N)
    np.testing.assert_allclose(sic, hand_state(1)["sic"], rtol=0, atol=1e-12)
