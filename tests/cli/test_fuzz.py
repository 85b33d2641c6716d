"""Property tests: mutated small NetCDF files (and checkpoint archives) fed to the readers.

Property: a reader either succeeds with valid output, or raises one of the project's clear error types
(`icecorr.base.errors.InputError`, `corrector.checkpoint.CheckpointError`, `icecorr.base.config.ConfigError`) — never another
exception type, never a hang (an alarm turns a hang into a failure), and `icecorr correct` never leaves a partial
output file or a temporary behind.
"""
from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import tempfile
from functools import lru_cache
from pathlib import Path

import numpy as np
import xarray as xr
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from corrector.checkpoint import CheckpointError
from icecorr.base.errors import InputError
from icecorr.base.config import ConfigError

CLEAR = (InputError, CheckpointError, ConfigError)
VARS = ["sic", "sit", "snt", "siu", "siv"]
HANG_SECONDS = 60
#: 25 fixed examples per property in the suite; ICECORR_FUZZ_EXAMPLES=N runs N random ones (a longer search)
_N = int(os.environ.get("ICECORR_FUZZ_EXAMPLES", "0"))
FUZZ = settings(max_examples=_N or 25, deadline=None, derandomize=not _N, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


@lru_cache(maxsize=None)
def _base() -> dict:
    """A valid pair file (16², 4 windows, CF units), a tiny residual checkpoint, a restart file and a trajectory."""
    from coupling.restart import RestartState, write_restart
    from tests.mpi_scripts.pairs import make_pair_file
    from tests.mpi_scripts.tiny import tiny_checkpoint
    from tests.cli.test_bad_inputs import add_units

    tmp = Path(tempfile.mkdtemp(prefix="icecorr-fuzz-"))
    pairs = make_pair_file(tmp / "raw.nc", n_time=4)
    good = tmp / "pairs.nc"
    ds = add_units(xr.load_dataset(pairs))
    ds.to_netcdf(good)
    states = {v: np.stack([ds[f"initial_{v}"].values[:1]] * 2, axis=1) for v in VARS}  # (window, member, y, x)
    restart = write_restart(tmp / "r.restart.step00001.nc",
                            RestartState(mode="emulate", step=1, start_indices=[0], members=2, seed=0,
                                         states=states, units={"sic": "1"}))
    traj = xr.Dataset({v: (("time", "member", "y", "x"), np.repeat(ds[f"initial_{v}"].values[:, None], 2, 1),
                           {"units": ds[f"initial_{v}"].attrs["units"]}) for v in VARS},
                      coords={"time": ds["time"].values, "step": ("time", np.arange(4))})
    traj.to_netcdf(tmp / "traj.nc")
    return {"tmp": tmp, "pairs": good, "ck": tiny_checkpoint(tmp / "ck.pt"), "restart": restart,
            "traj": tmp / "traj.nc"}


# ------------------------------------------------------------------------------------------------ mutations
UNITS = ["cm", "%", "K", "degC", "", "m s-1", "1", "m", "furlong", "W m-2", "kg kg-1"]


@st.composite
def dataset_mutation(draw, names: list[str], dims: list[str]):
    kind = draw(st.sampled_from(["drop", "rename", "rename_dim", "transpose", "units", "nonfinite", "retime",
                                 "none"]))
    name = draw(st.sampled_from(names))
    if kind == "rename_dim":
        return kind, draw(st.sampled_from(dims)), draw(st.sampled_from(["lat", "lon", "t", "yy"]))
    if kind == "units":
        return kind, name, draw(st.sampled_from(UNITS))
    if kind == "nonfinite":
        return kind, name, (draw(st.sampled_from([np.nan, np.inf, -np.inf])), draw(st.integers(0, 10_000)))
    if kind == "retime":
        return kind, "time", (draw(st.integers(0, 3)), draw(st.sampled_from([-12, -6, 1, 6, 12, 36, 24 * 365])))
    return kind, name, None


def apply_mutation(ds: xr.Dataset, mutation) -> xr.Dataset:
    kind, name, arg = mutation
    if kind == "drop" and name in ds.variables:
        return ds.drop_vars(name)
    if kind == "rename" and name in ds.variables:
        return ds.rename({name: name + "_renamed"})
    if kind == "rename_dim" and name in ds.dims:
        return ds.rename_dims({name: arg})
    if kind == "transpose" and name in ds.data_vars and ds[name].ndim > 1:
        return ds.assign({name: ds[name].transpose(*reversed(ds[name].dims))})
    if kind == "nonfinite" and name in ds.data_vars and ds[name].dtype.kind == "f":
        value, pos = arg
        a = ds[name].values.copy()
        a.flat[pos % a.size] = value
        ds[name] = (ds[name].dims, a, ds[name].attrs)
        return ds
    if kind == "retime" and "time" in ds.coords and np.issubdtype(ds["time"].dtype, np.datetime64):
        index, hours = arg
        t = ds["time"].values.copy()
        t[index % t.size] += np.timedelta64(hours, "h")
        return ds.assign_coords(time=t)
    return ds


@st.composite
def byte_mutation(draw):
    kind = draw(st.sampled_from(["truncate", "flip", "zero_block"]))
    return kind, draw(st.floats(0.0, 1.0)), draw(st.integers(1, 64))


def apply_bytes(data: bytes, mutation) -> bytes:
    kind, frac, k = mutation
    if kind == "truncate":
        return data[: int(len(data) * frac)]
    b = bytearray(data)
    pos = min(int(len(b) * frac), len(b) - 1)
    if kind == "flip":
        for i in range(k):
            b[(pos + 997 * i) % len(b)] ^= 0xFF
    else:
        b[pos:pos + 64 * k] = bytes(len(b[pos:pos + 64 * k]))
    return bytes(b)


@contextlib.contextmanager
def no_hang(what: str):
    def alarm(signum, frame):
        raise AssertionError(f"{what}: reader hung for more than {HANG_SECONDS} s")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(HANG_SECONDS)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


def mutated_file(src: Path, mutation, suffix: str = ".nc") -> Path:
    folder = Path(tempfile.mkdtemp(dir=_base()["tmp"]))
    path = folder / f"mutated{suffix}"
    if mutation[0] in ("truncate", "flip", "zero_block"):
        path.write_bytes(apply_bytes(src.read_bytes(), mutation))
    else:
        with xr.open_dataset(src) as ds:
            ds = ds.load()
        apply_mutation(ds, mutation).to_netcdf(path)
        if mutation[0] == "units":  # on the stored variable (also CF time units, which xarray would not write)
            import netCDF4

            with netCDF4.Dataset(path, "a") as nc:
                if mutation[1] in nc.variables:
                    nc[mutation[1]].setncattr("units", mutation[2])
    return path


def unmutated(src: Path, path: Path, mutation) -> bool:
    """True when the mutation left the file valid: kind 'none' (re-written by xarray) or bytes unchanged (e.g. a
    truncation at 100 %). Such a file must be read successfully: a reader that rejects everything must fail."""
    if mutation[0] in ("truncate", "flip", "zero_block"):
        return path.read_bytes() == src.read_bytes()
    return mutation[0] == "none"


def tolerated(src: Path, path: Path, mutation) -> tuple:
    """The exception types a reader may raise on `path`: the clear errors, or none at all for an unmutated file."""
    return () if unmutated(src, path, mutation) else CLEAR


def pair_mutations():
    with xr.open_dataset(_base()["pairs"]) as ds:
        names, dims = sorted(ds.variables), sorted(ds.dims)
    return st.one_of(dataset_mutation(names, dims), byte_mutation())


def _pair_names() -> tuple[list[str], list[str]]:
    return ([f"initial_{v}" for v in VARS] + [f"{f}_t{k}" for k in (0, 1) for f in ("uas", "tas")],
            ["time", "x", "y"])


# ------------------------------------------------------------------------------------------------ properties
def read_pairs_everywhere(path: Path, allowed: tuple = CLEAR) -> None:
    """Every in-process reader of pair files, each checked against the property; `allowed` = () requires each reader
    to succeed."""
    from coupling.forcing import FileForcing
    from coupling.pairs import initial_states_from_pairs, preflight_pairs
    from icecorr.base.files import open_netcdf
    from tests.mpi_scripts.tiny import tiny_corrector
    from training.fit.dataset import PairDataset
    from training.evaluation.alignment import read_reference

    def forcing():
        f = FileForcing(path)
        f.check_window(0, 3)
        f.check_finite_window(0, 3)
        a, b = f.pair(1)
        assert all(np.isfinite(x).all() for x in (*a.values(), *b.values()))

    def initial():
        (state,) = initial_states_from_pairs(path, [0], shape=(16, 16))
        assert all(np.isfinite(v).all() and v.shape == (16, 16) for v in state.values())

    def correct_preflight():
        c = tiny_corrector()
        with open_netcdf(path) as ds:
            preflight_pairs(ds, path, c, c.variables)

    def dataset():
        c = tiny_corrector()
        d = PairDataset(path, VARS, c.conditioning_names, "residual", cache_max_mb=0.0)
        norm, _ = d.fit_normalization()
        item = d.with_normalization(norm)[0]
        assert all(np.isfinite(t.numpy()).all() for t in item.values())

    def reference():
        ref, _ = read_reference(path, VARS)
        assert set(VARS) <= set(ref.data_vars)

    for name, reader in (("FileForcing", forcing), ("initial_states_from_pairs", initial),
                         ("correct pre-flight", correct_preflight), ("PairDataset", dataset),
                         ("evaluate reference", reference)):
        with no_hang(name):
            try:
                reader()
            except allowed:
                pass
            except Exception as exc:  # noqa: BLE001 - the property under test
                raise AssertionError(f"{name} raised {type(exc).__name__} (not a clear error) on {path}: "
                                     f"{exc}") from exc


def test_readers_accept_the_unmutated_files():
    """The other half of each property: a valid file is read, so a reader that rejects everything fails here."""
    from coupling.restart import read_restart
    from corrector.checkpoint import load_checkpoint
    from training.evaluation.alignment import read_run

    base = _base()
    for mutation in (("none", "time", None), ("truncate", 1.0, 1)):
        read_pairs_everywhere(mutated_file(base["pairs"], mutation), allowed=())
        run, _, _ = read_run(mutated_file(base["traj"], mutation), VARS)
        assert run.sizes["member"] == 2
        assert read_restart(mutated_file(base["restart"], mutation)).step == 1
    assert load_checkpoint(mutated_file(base["ck"], ("truncate", 1.0, 1), suffix=".pt")).model_state
    from icecorr.base.config import load_config
    from icecorr.cli import main
    from icecorr.cli.runconfig import CoupleRunConfig

    yaml = Path(tempfile.mkdtemp(dir=base["tmp"])) / "c.yaml"
    yaml.write_text("couple: {members: 3}\n")
    assert load_config(CoupleRunConfig, yaml, ["initial=x.nc"]).couple.members == 3
    out = Path(tempfile.mkdtemp(dir=base["tmp"])) / "c.nc"
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["correct", str(base["pairs"]), "--checkpoint", str(base["ck"]), "-o", str(out),
                     "--members", "2"]) == 0
    with xr.open_dataset(out) as ds:
        assert ds.attrs["status"] == "complete" and ds.sizes["member"] == 2


@FUZZ
@given(mutation=pair_mutations())
def test_pair_file_readers_fail_only_with_clear_errors(mutation):
    path = mutated_file(_base()["pairs"], mutation)
    read_pairs_everywhere(path, tolerated(_base()["pairs"], path, mutation))


@FUZZ
@given(mutation=pair_mutations())
def test_correct_cli_leaves_a_complete_file_or_nothing(mutation):
    from icecorr.cli import main

    base = _base()
    bad = mutated_file(base["pairs"], mutation)
    out = bad.parent / "out"
    err = io.StringIO()
    with no_hang("icecorr correct"), contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        rc = main(["correct", str(bad), "--checkpoint", str(base["ck"]), "-o", str(out / "c.nc"), "--members", "2"])
    assert rc == 0 or not unmutated(base["pairs"], bad, mutation), err.getvalue()
    if rc == 0:
        assert sorted(p.name for p in out.iterdir()) == ["c.nc"]
        with xr.open_dataset(out / "c.nc") as ds:
            assert ds.attrs["status"] == "complete" and ds.sizes["member"] == 2
            assert all(np.isfinite(ds[v].values).all() for v in VARS)
    else:
        assert rc == 2 and "Traceback" not in err.getvalue(), err.getvalue()  # a known, clear error
        assert not out.exists() or list(out.iterdir()) == [], list(out.iterdir())
    shutil.rmtree(bad.parent, ignore_errors=True)


@FUZZ
@given(mutation=st.one_of(dataset_mutation(["sic", "sit", "snt", "siu", "siv", "time", "step"],
                                           ["time", "member", "x", "y"]), byte_mutation()))
def test_trajectory_reader_fails_only_with_clear_errors(mutation):
    from training.evaluation.alignment import read_run

    path = mutated_file(_base()["traj"], mutation)
    with no_hang("evaluate read_run"):
        try:
            run, _, _ = read_run(path, VARS)
            assert all(np.isfinite(run[v].values).all() for v in VARS)
        except tolerated(_base()["traj"], path, mutation):
            pass


@FUZZ
@given(mutation=st.one_of(dataset_mutation(VARS + ["start_index", "member"], ["window", "member", "y", "x"]),
                          byte_mutation()))
def test_restart_reader_fails_only_with_clear_errors(mutation):
    from coupling.restart import read_restart

    path = mutated_file(_base()["restart"], mutation)
    with no_hang("read_restart"):
        try:
            r = read_restart(path)
            assert all(np.isfinite(v).all() for v in r.states.values())
        except tolerated(_base()["restart"], path, mutation):
            pass


@FUZZ
@given(mutation=byte_mutation())
def test_checkpoint_loader_fails_only_with_clear_errors(mutation):
    from corrector.checkpoint import load_checkpoint

    path = mutated_file(_base()["ck"], mutation, suffix=".pt")
    with no_hang("load_checkpoint"):
        try:
            data = load_checkpoint(path)
            assert data.model_state
        except tolerated(_base()["ck"], path, mutation):
            pass


@FUZZ
@given(text=st.one_of(
    st.sampled_from(["!!python/object/apply:os.system ['true']", "couple: !!python/name:os.system", "[", ": :",
                     "couple: {members: -1}", "couple: {bogus: 1}", "initial: 3\ncouple: {members: x}", "- 1\n- 2",
                     "initial: a.nc\ncouple: !!binary aGVsbG8="]),
    st.text(max_size=80)))
def test_config_loader_fails_only_with_clear_errors(text):
    from icecorr.base.config import load_config
    from icecorr.cli.runconfig import CoupleRunConfig

    path = Path(tempfile.mkdtemp(dir=_base()["tmp"])) / "c.yaml"
    path.write_text(text)
    with no_hang("load_config"):
        try:
            load_config(CoupleRunConfig, path, ["initial=x.nc"])
        except CLEAR:
            pass
