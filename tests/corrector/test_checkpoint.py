"""Checkpoint round trip and every way a checkpoint can be wrong."""
import copy

import numpy as np
import pytest
import torch

from corrector.checkpoint import CheckpointError, load_checkpoint, mask_hash, save_checkpoint
from corrector.inference import Corrector
from corrector.seeding import member_seeds
from tests.corrector.test_model import N, conditioning, corrector_for, tiny_cfg

UNITS = {"sic": "1", "sit": "m", "snt": "m", "siu": "m s-1", "siv": "m s-1"}


class NotPlainData:
    pass


@pytest.fixture()
def saved(tmp_path):
    cfg = tiny_cfg(sampler={"name": "dpmpp_2m", "steps": 3})
    c = corrector_for(cfg, seed=0)
    ema = copy.deepcopy(c.model)
    with torch.no_grad():
        for p in ema.parameters():
            p.mul_(0.9)
    cond, mask = conditioning(cfg, b=2)
    grid = dict(nx=N, ny=N, dx=16000.0, mask_hash=mask_hash(mask))
    path = tmp_path / "ckpt" / "best.pt"
    save_checkpoint(path, model_state=c.model.state_dict(), ema_state=ema.state_dict(), config=cfg,
                    normalization=c.normalization, grid=grid, variables_units=UNITS,
                    extra={"step": 10, "metrics": {"val_loss": 0.5}, "splits": ["train", "val"]})
    return dict(path=path, c=c, ema=ema, cond=cond, grid=grid, cfg=cfg)


def test_round_trip_identical_samples(saved):
    path, c = saved["path"], saved["c"]
    assert [p.name for p in path.parent.iterdir()] == ["best.pt"]  # no temporary left behind
    seeds = member_seeds(3, np.array([0, 1]), 0, 4)
    raw = Corrector.load(path, device="cpu", use_ema=False)
    np.testing.assert_array_equal(raw.sample(saved["cond"], 4, seeds=seeds), c.sample(saved["cond"], 4, seeds=seeds))
    ema = Corrector.load(path, device="cpu")  # EMA weights by default
    ref = Corrector.from_model(saved["ema"], c.normalization, saved["cfg"], saved["grid"])
    np.testing.assert_array_equal(ema.sample(saved["cond"], 4, seeds=seeds), ref.sample(saved["cond"], 4, seeds=seeds))
    assert ema.variables_units == UNITS and ema.conditioning_names == c.conditioning_names
    data = load_checkpoint(path, grid=saved["grid"], variables=list(UNITS))
    assert data.extra["metrics"]["val_loss"] == 0.5 and data.config == saved["cfg"]
    assert data.format_version == 1 and data.package_version


def test_averaged_model_state_is_accepted(saved, tmp_path):
    """An AveragedModel state ('module.' prefix, n_averaged) is loaded as the EMA weights, not dropped: the loaded
    corrector holds the averaged weights (which differ from the raw ones) and samples as they do."""
    c = saved["c"]
    avg = torch.optim.swa_utils.AveragedModel(c.model)
    with torch.no_grad():
        for p in avg.module.parameters():
            p.mul_(0.8)
    path = tmp_path / "avg.pt"
    save_checkpoint(path, model_state=c.model.state_dict(), ema_state=avg.state_dict(), config=saved["cfg"],
                    normalization=c.normalization, grid=saved["grid"], variables_units=UNITS)
    loaded = Corrector.load(path)  # 'module.' prefix and n_averaged handled
    want, raw = avg.module.state_dict(), c.model.state_dict()
    got = loaded.model.state_dict()
    assert set(got) == set(want)
    for name, value in got.items():
        assert torch.equal(value, want[name]), name
    assert any(not torch.equal(want[k], raw[k]) for k in want)  # the averaged weights are not the raw ones
    assert all(torch.equal(v, raw[k]) for k, v in Corrector.load(path, use_ema=False).model.state_dict().items())
    seeds = member_seeds(3, np.array([0, 1]), 0, 2)
    ref = Corrector.from_model(copy.deepcopy(avg.module), c.normalization, saved["cfg"], saved["grid"])
    np.testing.assert_array_equal(loaded.sample(saved["cond"], 2, seeds=seeds),
                                  ref.sample(saved["cond"], 2, seeds=seeds))


@pytest.mark.parametrize("field,value", [("nx", 32), ("dx", 8000.0), ("mask_hash", "0" * 16)])
def test_grid_mismatch(saved, field, value):
    with pytest.raises(CheckpointError, match=f"grid.{field}"):
        Corrector.load(saved["path"], grid={**saved["grid"], field: value})


def test_sample_rejects_a_different_land_mask(saved):
    c = Corrector.load(saved["path"])
    cond = dict(saved["cond"], mask=np.ones((N, N), np.float32))
    with pytest.raises(ValueError, match="field 'mask'"):
        c.sample(cond, 2, seeds=member_seeds(0, np.array([0, 1]), 0, 2))


def test_variable_mismatch(saved):
    with pytest.raises(CheckpointError, match="variable mismatch"):
        load_checkpoint(saved["path"], variables=["sic", "sit"])


def test_truncated_and_corrupted(saved, tmp_path):
    blob = saved["path"].read_bytes()
    trunc = tmp_path / "trunc.pt"
    trunc.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="trunc.pt"):
        Corrector.load(trunc)
    bad = bytearray(blob)
    # flip bytes inside the largest stored tensor (the middle of the archive is tensor data)
    mid = len(bad) // 2
    bad[mid:mid + 64] = bytes(b ^ 0xFF for b in bad[mid:mid + 64])
    corrupt = tmp_path / "corrupt.pt"
    corrupt.write_bytes(bytes(bad))
    with pytest.raises(CheckpointError, match="CRC check failed"):
        Corrector.load(corrupt)


def test_not_a_checkpoint(tmp_path):
    text = tmp_path / "notes.txt"
    text.write_text("hello")
    with pytest.raises(CheckpointError, match="not a torch checkpoint"):
        Corrector.load(text)
    other = tmp_path / "other.pt"
    torch.save({"weights": torch.zeros(2)}, other)
    with pytest.raises(CheckpointError, match="not an icecorr corrector checkpoint"):
        Corrector.load(other)
    pickled = tmp_path / "pickled.pt"
    torch.save({"format": "icecorr-corrector", "obj": NotPlainData()}, pickled)
    with pytest.raises(CheckpointError, match="refusing to load"):
        Corrector.load(pickled)
    with pytest.raises(CheckpointError, match="no such file"):
        Corrector.load(tmp_path / "missing.pt")


def test_newer_format_version(saved, tmp_path):
    raw = torch.load(saved["path"], weights_only=True)
    raw["format_version"] = 99
    newer = tmp_path / "newer.pt"
    torch.save(raw, newer)
    with pytest.raises(CheckpointError, match="format version 99"):
        Corrector.load(newer)


def test_save_rejects_non_plain_extra(saved, tmp_path):
    c = saved["c"]
    with pytest.raises(TypeError, match="extra.arr"):
        save_checkpoint(tmp_path / "x.pt", model_state=c.model.state_dict(), ema_state=None, config=saved["cfg"],
                        normalization=c.normalization, grid=saved["grid"], variables_units=UNITS,
                        extra={"arr": np.zeros(3)})
    assert not list(tmp_path.glob("x.pt*"))


def test_checkpoint_from_before_emulator_state_variables_loads_as_all_tendencies(saved, tmp_path):
    """A stored config without `emulator_state_variables` was trained on tendencies only: it loads as [], not as
    today's default (the velocities); a checkpoint written now keeps its list."""
    import yaml

    cfg = tiny_cfg(mode="emulator")
    c = corrector_for(cfg)
    path = save_checkpoint(tmp_path / "emu.pt", model_state=c.model.state_dict(), ema_state=None, config=cfg,
                           normalization=c.normalization, grid=saved["grid"], variables_units=UNITS)
    assert Corrector.load(path).state_variables == ["siu", "siv"]
    raw = torch.load(path, weights_only=True)
    stored = yaml.safe_load(raw["config_yaml"])
    del stored["emulator_state_variables"]
    raw["config_yaml"] = yaml.safe_dump(stored, sort_keys=False)
    old = tmp_path / "old.pt"
    torch.save(raw, old)
    loaded = Corrector.load(old)
    assert loaded.config.emulator_state_variables == [] and loaded.state_variables == []


@pytest.mark.parametrize("entry, value", [("model_state", float("nan")), ("ema_state", float("inf"))])
def test_non_finite_weights_are_rejected_naming_the_tensor(saved, tmp_path, entry, value):
    """A diverged training (lr = 1e6) wrote NaN weights that `icecorr checkpoint validate` called valid (issue 21)."""
    raw = torch.load(saved["path"], weights_only=True)
    name = sorted(k for k, t in raw[entry].items() if t.is_floating_point())[0]
    raw[entry][name].view(-1)[:3] = value
    diverged = tmp_path / "diverged.pt"
    torch.save(raw, diverged)
    with pytest.raises(CheckpointError, match=rf"diverged.pt: {entry} tensor '{name}' holds 3 non-finite value\(s\) "
                                              r"\(NaN or inf\)"):
        load_checkpoint(diverged)
    c = saved["c"]
    state = {k: t.clone() for k, t in raw[entry].items()}
    with pytest.raises(CheckpointError, match=rf"{entry} tensor '{name}' holds 3 non-finite"):
        save_checkpoint(tmp_path / "x.pt", model_state=state if entry == "model_state" else c.model.state_dict(),
                        ema_state=state if entry == "ema_state" else None, config=saved["cfg"],
                        normalization=c.normalization, grid=saved["grid"], variables_units=UNITS)
    assert not list(tmp_path.glob("x.pt*"))


SAVE_ON_FULL_DISK = """
import resource, signal, sys
from tests.mpi_scripts.tiny import tiny_checkpoint
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)     # a write beyond the limit fails with EFBIG, like a full disk
resource.setrlimit(resource.RLIMIT_FSIZE, (3000, 3000))
tiny_checkpoint(sys.argv[1])
"""


def test_full_disk_while_saving_is_one_checkpoint_error_and_leaves_nothing(tmp_path):
    """Was: "RuntimeError: [enforce fail at inline_container.cc:672]" (issue 21: disk full in `train`)."""
    import os
    import subprocess
    import sys

    from tests.helpers.paths import REPO

    res = subprocess.run([sys.executable, "-c", SAVE_ON_FULL_DISK, str(tmp_path / "c.pt")], capture_output=True,
                         text=True, timeout=120, env=dict(os.environ, PYTHONPATH=str(REPO)))
    last = res.stderr.strip().splitlines()[-1]
    assert res.returncode == 1 and last.startswith("corrector.checkpoint.CheckpointError: checkpoint ") \
        and "c.pt: cannot be written (disk full or not writable?)" in last, res.stderr
    assert os.listdir(tmp_path) == []
