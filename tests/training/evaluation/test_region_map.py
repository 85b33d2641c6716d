"""The region's map (training.evaluation.region_map): a PNG with the mask, the coastline data and the landmarks;
the open walls are where the real sea continues (Hudson Strait and Foxe Channel for Hudson Bay)."""
from __future__ import annotations

import numpy as np
import pytest

from icecorr.base.config import load_config
from tests.helpers.paths import CONFIGS
from training.data.geography import Geography, RegionGrid
from training.evaluation.region_map import coastline_samples, open_walls, plot_region_map


@pytest.fixture(scope="module")
def geo() -> Geography:
    return Geography(load_config(RegionGrid, CONFIGS / "region" / "hudson_bay" / "grid.yaml"))


def test_region_map_png(geo, tmp_path):
    path = plot_region_map(geo, tmp_path / "figs" / "region.png", every=10, step_km=10.0)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 20_000


def test_open_walls_are_hudson_strait_and_foxe_channel(geo):
    walls = open_walls(geo)
    assert not (walls & (geo.mask > 0.5)).any()  # walls are land in the model
    jw, iw = np.nonzero(walls)
    # the sea continues past the east (grid +x) edge, north of 61.5 N: Hudson Strait / Foxe Channel
    east = iw == geo.shape[1] - 1
    assert east.sum() >= 10 and (geo.lat[jw[east], iw[east]] > 61.5).all()
    # nowhere along the south and west edges (the mainland of Ontario, Manitoba and Quebec)
    assert not walls[0].any() and not walls[:, 0].any()


def test_coastline_samples_cover_the_grid(geo):
    xs, ys, flag = coastline_samples(geo, step_km=25.0)
    assert flag.shape == (len(ys), len(xs)) == geo.shape
    assert 0.3 < flag.mean() < 0.6
