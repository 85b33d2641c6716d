"""Chunking of the pair files along time (training.data.io): training reads single random windows, and a compressed
chunk is decompressed whole, so a large grid gets short chunks; re-chunking an existing file copies it exactly."""
from __future__ import annotations

import netCDF4
import numpy as np
import xarray as xr

from training.data.io import MAX_CHUNK_VALUES, concat_netcdf_along_time, time_chunk, write_netcdf_atomic
from training.data.pairs import PairBuffer, pair_dataset


def pair_file_dataset(n: int, ny: int, nx: int) -> xr.Dataset:
    buf = PairBuffer(n, ny, nx, forcing_names=("uas",), dtype="float32")
    buf.arrays["initial_sic"][:] = np.random.default_rng(0).random((n, ny, nx))
    times = np.array([np.datetime64("2000-10-01T00") + np.timedelta64(12 * k, "h") for k in range(n)])
    return pair_dataset(buf, times, 1000.0, np.ones((ny, nx), dtype=np.int8))


def time_chunk_of(path, name="initial_sic") -> int:
    with netCDF4.Dataset(path) as nc:
        return nc[name].chunking()[0]


def test_time_chunks_shrink_with_the_grid_and_never_vanish():
    assert time_chunk(64, 32 * 32) == 64  # the box: 64 windows of 1024 values
    assert time_chunk(64, 128 * 192) == MAX_CHUNK_VALUES // (128 * 192) == 2  # the 25 km Arctic
    assert time_chunk(64, 1024 * 1024) == 1  # larger than one chunk's budget: one window per chunk
    assert time_chunk(4, 10) == 4  # never longer than asked


def test_a_large_grid_is_written_in_short_chunks_and_rechunked_exactly(tmp_path):
    small = write_netcdf_atomic(pair_file_dataset(6, 8, 8), tmp_path / "small.nc", chunk_time=64)
    assert time_chunk_of(small) == 6  # the whole (short) file in one chunk
    large = pair_file_dataset(6, 128, 192)
    big = write_netcdf_atomic(large, tmp_path / "big.nc", chunk_time=64)
    assert time_chunk_of(big) == 2
    # an old file in long chunks, re-chunked by a one-part concatenation: same values, short chunks
    old = tmp_path / "old.nc"
    large.to_netcdf(old, encoding={"initial_sic": {"chunksizes": (6, 128, 192), "zlib": True}},
                    unlimited_dims=("time",))
    assert time_chunk_of(old) == 6
    new = concat_netcdf_along_time([old], tmp_path / "new.nc", chunk_time=64)
    assert time_chunk_of(new) == 2
    with xr.open_dataset(old) as a, xr.open_dataset(new) as b:
        xr.testing.assert_identical(a.load(), b.load())
