"""corrector config (strict, resolved conditioning) and named-field stacking."""
import numpy as np
import pytest
import torch
from pydantic import ValidationError

from corrector.config import CorrectorConfig, NetworkConfig, SamplerConfig
from corrector.fields import conditioning_names, stack, target_arrays, unstack


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
    assert np.all(target_arrays("emulator", ["sic"], src)["sic"] == 2.0)
    with pytest.raises(KeyError, match="residual_sit"):
        target_arrays("residual", ["sit"], src)
