"""corrector config (strict, resolved conditioning) and named-field stacking."""
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from corrector.config import CorrectorConfig, NetworkConfig, SamplerConfig
from corrector.fields import conditioning_names, stack, target_arrays, target_names, unstack


def test_default_conditioning_residual_and_emulator():
    res = CorrectorConfig(mode="residual")
    emu = CorrectorConfig(mode="emulator")
    assert res.conditioning[:5] == [f"initial_{v}" for v in res.variables]
    assert res.conditioning[5:10] == [f"forecast_{v}" for v in res.variables]
    assert "uas_t0" in res.conditioning and "uas_t1" in res.conditioning and res.conditioning[-1] == "mask"
    assert not any(n.startswith("forecast_") for n in emu.conditioning)
    assert len(res.conditioning) == len(emu.conditioning) + 5


def test_conditioning_names_all_forcing():
    names = conditioning_names("emulator", ["sic"], ["uas", "prsn"])
    assert names == ["initial_sic", "uas_t0", "prsn_t0", "uas_t1", "prsn_t1", "mask"]
    with pytest.raises(ValueError, match="mode"):
        conditioning_names("hybrid")


def test_unknown_keys_and_bad_values_rejected():
    with pytest.raises(ValidationError, match="extra"):
        CorrectorConfig(network={"base_channel": 8})
    with pytest.raises(ValidationError, match="forcing_variables"):
        CorrectorConfig(forcing_variables=["wind"])
    with pytest.raises(ValidationError, match="s_churn"):
        SamplerConfig(name="dpmpp_2m", s_churn=1.0)
    with pytest.raises(ValidationError, match="decreasing"):
        SamplerConfig(sigmas=[1.0, 2.0])
    with pytest.raises(ValidationError, match="emulator mode"):
        CorrectorConfig(mode="emulator", conditioning=["initial_sic", "forecast_sic", "mask"])
    assert NetworkConfig(channel_mults=[1, 2, 4]).downsamplings == 2


def test_stack_order_broadcast_and_errors():
    a = np.arange(2 * 4 * 8, dtype=np.float64).reshape(2, 4, 8)
    t = stack(["a", "mask", "b"], {"a": a, "b": -a, "mask": np.ones((4, 8))})
    assert t.shape == (2, 3, 4, 8) and t.dtype == torch.float32
    assert torch.equal(t[:, 0], torch.from_numpy(a).float()) and torch.all(t[:, 1] == 1)
    back = unstack(["a", "mask", "b"], t)
    assert torch.equal(back["b"], -t[:, 0])
    with pytest.raises(KeyError, match="'b'"):
        stack(["a", "b"], {"a": a})
    with pytest.raises(ValueError, match="field 'b'"):
        stack(["a", "b"], {"a": a, "b": a[:, :, :4]})


def test_target_arrays_modes():
    src = {"residual_sic": np.ones((1, 2, 2)), "reference_sic": np.full((1, 2, 2), 3.0),
           "initial_sic": np.full((1, 2, 2), 1.0)}
    assert target_arrays("residual", ["sic"], src)["sic"].sum() == 4
    assert np.all(target_arrays("emulator", ["sic"], src, state_variables=[])["sic"] == 2.0)
    with pytest.raises(ValueError, match="emulator mode: give state_variables"):
        target_arrays("emulator", ["sic"], src)
    with pytest.raises(KeyError, match="residual_sit"):
        target_arrays("residual", ["sit"], src)


def test_emulator_state_targets():
    """Emulator state variables (default: the velocities) have the next state as target, the others the tendency."""
    src = {"reference_sic": np.full((1, 2, 2), 3.0), "initial_sic": np.full((1, 2, 2), 1.0),
           "reference_siu": np.full((1, 2, 2), 0.3), "initial_siu": np.full((1, 2, 2), 0.1)}
    assert target_names("emulator", ["sic", "siu"], ["siu"]) == ["tendency_sic", "next_siu"]
    t = target_arrays("emulator", ["sic", "siu"], src, state_variables=["siu"])
    assert np.all(t["sic"] == 2.0) and np.all(t["siu"] == 0.3)
    with pytest.raises(KeyError, match="reference_siv"):
        target_arrays("emulator", ["siv"], src, state_variables=["siv"])
    with pytest.raises(ValueError, match="residual mode has no state targets"):
        target_names("residual", ["siu"], ["siu"])
    assert CorrectorConfig(mode="emulator").emulator_state_variables == ["siu", "siv"]
    assert CorrectorConfig(mode="emulator", variables=["sic", "siu"]).emulator_state_variables == ["siu"]
    assert CorrectorConfig(mode="residual").emulator_state_variables == []
    assert CorrectorConfig(mode="emulator", emulator_state_variables=[]).emulator_state_variables == []


def test_emulator_state_variables_are_checked():
    with pytest.raises(ValidationError, match=r"emulator_state_variables: \['sicc'\] not among variables"):
        CorrectorConfig(mode="emulator", emulator_state_variables=["siu", "sicc"])
    with pytest.raises(ValidationError, match="only an emulator-mode corrector"):
        CorrectorConfig(mode="residual", emulator_state_variables=["siu"])
    with pytest.raises(ValidationError, match=r"conditioning lacks \['initial_siv'\]"):
        CorrectorConfig(mode="emulator", conditioning=["initial_siu", "uas_t1", "mask"])


def test_drift_steps_channel_config_and_clamp():
    from corrector.fields import DRIFT_STEPS, drift_steps_field
    from corrector.inference import Corrector
    from corrector.normalization import Normalization
    from tests.corrector.test_model import TINY, random_model

    cfg = CorrectorConfig(kind="deterministic", max_drift_steps=3, network=TINY)
    assert cfg.conditioning[-2:] == [DRIFT_STEPS, "mask"]
    assert DRIFT_STEPS not in CorrectorConfig().conditioning
    with pytest.raises(ValidationError, match="max_drift_steps"):
        CorrectorConfig(conditioning=["initial_sic", DRIFT_STEPS])
    with pytest.raises(ValidationError, match="max_drift_steps"):
        CorrectorConfig(conditioning=["initial_sic"], max_drift_steps=2)
    np.testing.assert_array_equal(drift_steps_field([0, 5], (2, 2), max_steps=3)[:, 0, 0], [0, 3])
    np.testing.assert_array_equal(drift_steps_field(7, (2, 2), batch=3)[:, 1, 1], [7, 7, 7])
    # the corrector clamps raw step counts: 50 steps since the start act like the largest trained count
    c = Corrector.from_model(random_model(cfg), Normalization.identity(cfg.conditioning, cfg.variables), cfg)
    rng = np.random.default_rng(0)
    cond = {n: rng.normal(size=(1, 16, 16)) for n in cfg.conditioning if n not in (DRIFT_STEPS, "mask")}
    cond["mask"] = np.ones((16, 16))
    out = {k: c.sample({**cond, DRIFT_STEPS: np.full((1, 16, 16), k)}, members=1) for k in (0, 3, 50)}
    np.testing.assert_array_equal(out[3], out[50])
    assert not np.array_equal(out[0], out[3])
