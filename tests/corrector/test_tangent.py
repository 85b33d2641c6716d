"""Tangent-linear and adjoint of a corrector step: finite differences and the adjoint identity."""
import numpy as np
import pytest
import torch

from corrector.tangent import CorrectorTangent
from tests.corrector.test_model import conditioning, corrector_for, tiny_cfg

# torch.func scripts a helper internally and warns about its own deprecated torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")


@pytest.mark.parametrize("kind", ["deterministic", "diffusion"])
def test_jvp_matches_finite_difference_and_vjp_is_its_adjoint(kind):
    cfg = tiny_cfg(kind=kind, sampler={"name": "dpmpp_2m", "steps": 3})
    c = corrector_for(cfg)
    cond, mask = conditioning(cfg, b=1, land=True)
    cond = {k: (v[0] if v.ndim == 3 else v) for k, v in cond.items()}
    tan = CorrectorTangent(c, seed=3)
    rng = np.random.default_rng(1)
    v = {"initial_sit": rng.normal(size=mask.shape).astype(np.float32),
         "uas_t1": rng.normal(size=mask.shape).astype(np.float32)}
    out, jv = tan.jvp(cond, v)
    np.testing.assert_allclose(out, tan.step(cond), rtol=1e-5, atol=1e-6)
    assert out.shape == (5, *mask.shape) and np.all(jv[:, mask == 0] == 0)
    eps = 1e-2
    plus = tan.step({k: cond[k] + eps * v[k] if k in v else cond[k] for k in cond})
    minus = tan.step({k: cond[k] - eps * v[k] if k in v else cond[k] for k in cond})
    fd = (plus - minus) / (2 * eps)
    assert np.abs(fd - jv).max() < 0.05 * np.abs(jv).max()
    w = rng.normal(size=out.shape).astype(np.float32)
    _, jtw = tan.vjp(cond, w)
    lhs = float((jv.astype(np.float64) * w).sum())
    rhs = sum(float((v[k].astype(np.float64) * jtw[k]).sum()) for k in v)
    assert lhs == pytest.approx(rhs, rel=1e-4)


def test_one_tangent_class_for_both_float_types():
    """float32 linearises the corrector's own network; float64 a copy (the corrector's model stays float32), and
    both compute the same step."""
    cfg = tiny_cfg(kind="deterministic")
    c = corrector_for(cfg)
    cond, _ = conditioning(cfg, b=1, land=True)
    cond = {k: (v[0] if v.ndim == 3 else v) for k, v in cond.items()}
    t32, t64 = CorrectorTangent(c), CorrectorTangent(c, dtype=torch.float64)
    assert t32.model is c.model and t64.model is not c.model
    assert next(t64.model.parameters()).dtype == torch.float64 and next(c.model.parameters()).dtype == torch.float32
    out32, out64 = t32.step(cond), t64.step(cond)
    assert out32.dtype == np.float32 and out64.dtype == np.float64
    np.testing.assert_allclose(out64, out32, rtol=1e-4, atol=1e-5 * np.abs(out64).max())
    _, jtw = t64.vjp(cond, np.ones_like(out64))
    assert set(jtw) == set(c.conditioning_names) and jtw["initial_sit"].dtype == np.float64
