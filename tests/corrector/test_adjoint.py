"""Tangent-linear and adjoint of one step and of an N-step rollout of a small random deterministic emulator:
the dot-product (adjoint) identity in float64, finite differences, and the API's checks."""
import numpy as np
import pytest
import torch

from corrector.adjoint import CorrectorRollout, Rollout
from corrector.bounds import TorchBounds, apply_bounds, open_faces, zero_walls
from corrector.config import CorrectorConfig
from corrector.inference import Corrector
from corrector.model import CorrectorModel
from corrector.normalization import Normalization
from corrector.tangent import CorrectorTangent

# torch.func scripts a helper internally and warns about its own deprecated torch.jit.script
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit.script` is deprecated:DeprecationWarning")

N = 16
TINY = dict(base_channels=8, channel_mults=[1, 2], embedding_dim=16, heads=2, norm_groups=4,
            attention_bottleneck=True, attention_window=4)
MEAN = {"sic": 0.6, "sit": 1.5, "snt": 0.2, "siu": 0.0, "siv": 0.0}


def emulator(kind="deterministic", mode="emulator", seed=0, scale=0.05, states=None) -> Corrector:
    """A random (perturbed-weights) tiny network: a fresh one outputs exactly 0 (zero-initialised head).
    states: `emulator_state_variables` (None: the default, the velocities in emulator mode)."""
    cfg = CorrectorConfig(kind=kind, mode=mode, network=TINY, sampler={"name": "dpmpp_2m", "steps": 3},
                          emulator_state_variables=states)
    torch.manual_seed(seed)
    model = CorrectorModel(cfg, len(cfg.conditioning))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    c_names = list(cfg.conditioning)
    norm = Normalization(c_names, np.zeros(len(c_names)), np.ones(len(c_names)), list(cfg.variables),
                         np.zeros(len(cfg.variables)), np.full(len(cfg.variables), scale))
    return Corrector.from_model(model.eval(), norm, cfg, grid=dict(nx=N, ny=N))


def mask_and_inputs(c: Corrector, n_steps: int, seed=0):
    rng = np.random.default_rng(seed)
    mask = np.ones((N, N))
    mask[:3, :4] = 0
    fixed = [n for n in c.conditioning_names if not n.startswith(("initial_", "forecast_")) and n != "mask"]
    inputs = [{n: rng.normal(size=(N, N)) for n in fixed} | {"mask": mask} for _ in range(n_steps)]
    return mask, inputs


def interior_state(rng, mask):
    """A state well inside the bounds (no clipping kink within a small perturbation)."""
    x = {v: MEAN[v] + (0.1 if v != "sit" else 0.3) * rng.uniform(-1, 1, size=(N, N)) for v in MEAN}
    x = {v: a * mask for v, a in x.items()}
    x["siu"][:, -1] = 0
    x["siv"][-1, :] = 0
    return x


def dot(a, b):
    return float(np.sum(np.asarray(a, np.float64) * np.asarray(b, np.float64)))


@pytest.mark.parametrize("states", [[], ["siu", "siv"]])
@pytest.mark.parametrize("steps", [1, 4])
def test_adjoint_identity_float64_one_step_and_rollout(steps, states):
    c = emulator(states=states)
    mask, inputs = mask_and_inputs(c, steps)
    roll = CorrectorRollout(c, inputs, mask=mask)
    rng = np.random.default_rng(1)
    x0 = roll.state_array(interior_state(rng, mask))
    dx = rng.normal(size=x0.shape)
    y = rng.normal(size=(steps + 1, *x0.shape))
    traj, dtraj = roll.tlm(x0, dx)
    traj2, adj = roll.adjoint(x0, y)
    np.testing.assert_allclose(traj, traj2, rtol=0, atol=1e-14)
    np.testing.assert_allclose(traj, roll.forward(x0), rtol=0, atol=1e-14)
    assert traj.shape == (steps + 1, 5, N, N) and np.abs(dtraj[-1]).max() > 0
    lhs, rhs = dot(dtraj, y), dot(dx, adj)
    assert abs(lhs - rhs) <= 1e-6 * max(abs(lhs), abs(rhs))
    # the single-step products of step 0 agree with the rollout's first step
    out, d1 = roll.step_tlm(x0, dx, 0)
    _, a1 = roll.step_adjoint(x0, y[1], 0)
    np.testing.assert_allclose(out, traj[1], atol=1e-14)
    np.testing.assert_allclose(d1, dtraj[1], atol=1e-12)
    assert abs(dot(d1, y[1]) - dot(dx, a1)) <= 1e-6 * abs(dot(dx, a1))


def test_adjoint_identity_holds_through_active_bounds():
    """Clipping fires (states outside the bounds): the products still transpose each other exactly."""
    c = emulator(scale=0.3)
    mask, inputs = mask_and_inputs(c, 3)
    roll = CorrectorRollout(c, inputs, mask=mask)
    rng = np.random.default_rng(2)
    x = interior_state(rng, mask)
    x["sic"] = np.clip(x["sic"] + 0.6 * rng.normal(size=(N, N)), -0.2, 1.2) * mask  # some cells at/over the bounds
    x0 = roll.state_array(x)
    dx, y = rng.normal(size=x0.shape), rng.normal(size=(4, *x0.shape))
    traj, dtraj = roll.tlm(x0, dx)
    assert np.any(traj[1:, 0] == 1.0) and np.any(traj[1:, 0] == 0.0)
    _, adj = roll.adjoint(x0, y)
    lhs, rhs = dot(dtraj, y), dot(dx, adj)
    assert abs(lhs - rhs) <= 1e-6 * abs(lhs)


@pytest.mark.parametrize("states", [[], ["siu", "siv"]])
def test_tangent_linear_matches_finite_differences(states):
    c = emulator(states=states)
    mask, inputs = mask_and_inputs(c, 3)
    roll = CorrectorRollout(c, inputs, mask=mask)
    rng = np.random.default_rng(3)
    x0 = roll.state_array(interior_state(rng, mask))
    dx = rng.normal(size=x0.shape) * np.array([0.01, 0.05, 0.01, 0.01, 0.01])[:, None, None]
    _, dtraj = roll.tlm(x0, dx)
    errors = []
    for eps in (1e-1, 1e-2, 1e-3):
        fd = (roll.forward(x0 + eps * dx) - roll.forward(x0 - eps * dx)) / (2 * eps)
        errors.append(np.abs(fd - dtraj).max() / np.abs(dtraj).max())
    assert errors[-1] < 1e-5 and errors[-1] < errors[0]


@pytest.mark.parametrize("states", [[], ["siu", "siv"], ["siv"]])
def test_rollout_step_is_the_applied_emulator_sample(states):
    """One rollout step equals `Corrector.apply` of the network output: next state for the state variables (no
    identity part: the initial value enters only through the conditioning), initial + tendency for the others."""
    c = emulator(states=states)
    mask, inputs = mask_and_inputs(c, 1)
    roll = CorrectorRollout(c, inputs, mask=mask)
    x = interior_state(np.random.default_rng(8), mask)
    cond = {n: x[n[8:]][None] if n.startswith("initial_") else inputs[0][n][None] for n in c.conditioning_names}
    want = c.apply({v: x[v][None] for v in c.variables}, c.sample(cond, members=1), mask=mask)
    got = roll.forward(roll.state_array(x))[1]
    for k, v in enumerate(c.variables):
        np.testing.assert_allclose(got[k], want[v][0, 0], atol=1e-5, err_msg=v)
    # the same network as a tendency model: its Jacobian differs exactly by the identity on the state variables
    # (velocities only: they are not clipped, while a next-state sit/snt of this random network would be)
    dx = np.random.default_rng(9).normal(size=(5, N, N))
    _, d = roll.step_tlm(roll.state_array(x), dx)
    _, d_tendency = CorrectorRollout(emulator(states=[]), inputs, mask=mask).step_tlm(roll.state_array(x), dx)
    keep = open_faces(mask, N, N)
    for k, v in enumerate(c.variables):
        identity = keep.get(v, mask) * dx[k] if v in states else 0.0
        np.testing.assert_allclose(d_tendency[k] - d[k], identity, atol=1e-12, err_msg=v)


def test_float64_tangent_of_the_correction_network():
    """The residual-mode correction alone: jvp/vjp with respect to its conditioning (forecast included)."""
    c = emulator(mode="residual")
    tan = CorrectorTangent(c, dtype=torch.float64)
    rng = np.random.default_rng(4)
    mask = np.ones((N, N))
    cond = {n: rng.normal(size=(N, N)) for n in c.conditioning_names} | {"mask": mask}
    v = {"forecast_sit": rng.normal(size=(N, N)), "initial_sic": rng.normal(size=(N, N))}
    out, jv = tan.jvp(cond, v)
    w = rng.normal(size=out.shape)
    out2, jtw = tan.vjp(cond, w)
    np.testing.assert_allclose(out, out2, atol=1e-14)
    assert jtw["forecast_sit"].dtype == np.float64
    lhs, rhs = dot(jv, w), sum(dot(v[k], jtw[k]) for k in v)
    assert abs(lhs - rhs) <= 1e-10 * abs(lhs)
    # the float32 corrector itself is untouched, and the float64 network computes the same function
    assert next(c.model.parameters()).dtype == torch.float32
    ref = c.sample({k: a[None] for k, a in cond.items()}, members=1)[0, 0]
    np.testing.assert_allclose(out, ref, atol=1e-5 * np.abs(ref).max())


def test_residual_rollout_with_a_differentiable_physics():
    c = emulator(mode="residual")
    mask, inputs = mask_and_inputs(c, 2)

    def physics(x, k):  # a linear damping of the velocities: a stand-in with a known derivative
        return x * torch.tensor([1.0, 1.0, 1.0, 0.5, 0.5], dtype=x.dtype)[:, None, None]

    roll = CorrectorRollout(c, inputs, mask=mask, physics=physics)
    rng = np.random.default_rng(5)
    x0 = roll.state_array(interior_state(rng, mask))
    dx, y = rng.normal(size=x0.shape), rng.normal(size=(3, *x0.shape))
    _, dtraj = roll.tlm(x0, dx)
    _, adj = roll.adjoint(x0, y)
    assert abs(dot(dtraj, y) - dot(dx, adj)) <= 1e-6 * abs(dot(dx, adj))
    with pytest.raises(ValueError, match="needs `physics`"):
        CorrectorRollout(c, inputs, mask=mask)


def test_generic_rollout_of_a_linear_model_has_the_matrix_transpose_as_adjoint():
    rng = np.random.default_rng(6)
    a = torch.as_tensor(rng.normal(size=(2 * 4 * 4, 2 * 4 * 4)) / 8, dtype=torch.float64)
    roll = Rollout(lambda x, k: (a @ x.reshape(-1)).reshape(x.shape), 3, ["sit", "siu"], (4, 4))
    x0 = rng.normal(size=(2, 4, 4))
    y = np.zeros((4, 2, 4, 4))
    y[-1] = rng.normal(size=(2, 4, 4))
    _, g = roll.adjoint(x0, y)
    an = a.numpy()
    np.testing.assert_allclose(g.reshape(-1), (an.T @ an.T @ an.T) @ y[-1].reshape(-1), rtol=1e-12, atol=1e-12)


def test_bad_inputs_are_named():
    c = emulator()
    mask, inputs = mask_and_inputs(c, 2)
    broken = [dict(inputs[0]), {k: v for k, v in inputs[1].items() if k != "uas_t1"}]
    with pytest.raises(KeyError, match=r"step 1.*uas_t1"):
        CorrectorRollout(c, broken, mask=mask)
    roll = CorrectorRollout(c, inputs, mask=mask)
    with pytest.raises(ValueError, match=r"x0: shape"):
        roll.forward(np.zeros((4, N, N)))
    with pytest.raises(ValueError, match="NaN"):
        roll.forward(np.full((5, N, N), np.nan))
    with pytest.raises(ValueError, match="steps must be in 0..2"):
        roll.forward(np.zeros((5, N, N)), steps=3)
    with pytest.raises(KeyError, match="snt"):
        roll.state_array({"sic": mask, "sit": mask})


def test_torch_bounds_match_numpy_bounds():
    rng = np.random.default_rng(7)
    mask = np.ones((N, N))
    mask[5:7, 5:9] = 0
    names = ["sic", "sit", "snt", "siu", "siv"]
    x = rng.normal(size=(5, N, N)) * np.array([0.8, 1.0, 0.2, 0.1, 0.1])[:, None, None]
    x[:3] *= mask
    got = TorchBounds(names, mask, N, N)(torch.as_tensor(x)).numpy()
    ref, _ = zero_walls(dict(zip(names, x)), mask)
    ref, _ = apply_bounds(ref)
    np.testing.assert_array_equal(got, np.stack([ref[v] for v in names]))


def test_torch_bounds_follow_the_same_rules_for_damage_and_partial_states():
    """The rules live once (`corrector.bounds`): damage is clipped to [0, 1] by both faces, and a state without some
    of the variables gets the rules that apply to the ones it has."""
    rng = np.random.default_rng(10)
    mask = np.ones((N, N))
    mask[2:4, 9:12] = 0
    for names in (["sic", "sit", "snt", "damage", "siu", "siv"], ["sic", "siu"], ["sit", "damage", "siv"]):
        x = rng.normal(size=(len(names), N, N))
        x[[k for k, v in enumerate(names) if v in ("sic", "sit", "snt")]] *= mask
        got = TorchBounds(names, mask, N, N)(torch.as_tensor(x)).numpy()
        ref, _ = zero_walls(dict(zip(names, x)), mask)
        ref, _ = apply_bounds(ref)
        np.testing.assert_array_equal(got, np.stack([ref[v] for v in names]), err_msg=str(names))
