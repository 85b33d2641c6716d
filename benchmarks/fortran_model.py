"""Benchmark of the Fortran coarse model: seconds per 12 h step and mEVP throughput at 32², 64², 128², and the
same mEVP iteration written in vectorised NumPy (same grid, same iterations, same state), with the speed ratio.

Run: `python -m benchmarks.fortran_model [--sizes 32 64 128] [--repeats 3]`. Timings are wall-clock minima over
repeats on a shared machine: read the ratios, not the absolute numbers. The NumPy kernel mirrors
`seaice_mevp.f90` line by line, so the script also prints how far the two solutions are apart (round-off).
"""
from __future__ import annotations

import argparse
import time

import numpy as np

from fortran_stub.config import CoarsePhysicsConfig, GridConfig
from coupling.bridge import CoarseModel
from coupling.cyclone import cyclone_forcing, initial_state
from icecorr.base.variables import STEP_SECONDS

MASS_TINY = 1e-3  # kg m-2, as seaice_mevp


def _corner_sum(x: np.ndarray) -> np.ndarray:
    """Sum over the four T-points (halo-padded (nx+2, ny+2) array) around every corner -> (nx+1, ny+1)."""
    return x[:-1, :-1] + x[1:, :-1] + x[:-1, 1:] + x[1:, 1:]


def mevp_numpy(p: CoarsePhysicsConfig, dx: float, dt: float, a, vice, vsnow, taux, tauy, uo, vo,
               u, v, s1, s2, s12, n_iter: int) -> float:
    """Vectorised NumPy version of seaice_mevp::mevp_solve (arrays in Fortran index order (nx, ny), s12 (nx+1,
    ny+1)); updates u, v, s1, s2, s12 in place and returns the wall time (s) of the iterations alone."""
    nx, ny = a.shape
    e2inv = 1.0 / p.ecc ** 2
    rhocw = p.rho_water * p.c_water
    cost, sint = np.cos(np.deg2rad(p.turning_angle)), np.sin(np.deg2rad(p.turning_angle))
    press = p.p_star * vice * np.exp(-p.c_star * (1.0 - a))
    mass = p.rho_ice * vice + p.rho_snow * vsnow
    acoef = p.aevp_cstar * np.pi ** 2 * dt / dx ** 2 / np.maximum(mass, MASS_TINY)
    pair_x = lambda f: 0.5 * (f[:-1, :] + f[1:, :])  # noqa: E731  east faces i = 1..nx-1
    pair_y = lambda f: 0.5 * (f[:, :-1] + f[:, 1:])  # noqa: E731  north faces j = 1..ny-1
    mu, au = pair_x(mass), pair_x(a)
    tu, uo_u, vo_u = au * pair_x(taux), pair_x(uo), pair_x(vo)
    mv, av = pair_y(mass), pair_y(a)
    tv, uo_v, vo_v = av * pair_y(tauy), pair_y(uo), pair_y(vo)
    cnt = np.zeros((nx + 2, ny + 2)); cnt[1:-1, 1:-1] = 1.0
    rcnt = 1.0 / _corner_sum(cnt)
    un, vn = u[:-1, :].copy(), v[:, :-1].copy()
    uh = np.zeros((nx + 1, ny + 2)); uh[1:nx, 1:ny + 1] = u[:-1, :]
    vh = np.zeros((nx + 2, ny + 1)); vh[1:nx + 1, 1:ny] = v[:, :-1]
    alpha_h, dd2_h, dt2_h, ph = (np.zeros((nx + 2, ny + 2)) for _ in range(4))
    ph[1:-1, 1:-1] = press
    alpha_h[1:-1, 1:-1] = p.aevp_alpha_min
    mask_u, mask_v = mu > MASS_TINY, mv > MASS_TINY

    t0 = time.perf_counter()
    for _ in range(n_iter):
        uh[1:nx, 0] = -uh[1:nx, 1]
        uh[1:nx, ny + 1] = -uh[1:nx, ny]
        vh[0, 1:ny] = -vh[1, 1:ny]
        vh[nx + 1, 1:ny] = -vh[nx, 1:ny]
        ds = (uh[:, 1:] - uh[:, :-1] + vh[1:, :] - vh[:-1, :]) / dx
        e11 = (uh[1:, 1:ny + 1] - uh[:-1, 1:ny + 1]) / dx
        e22 = (vh[1:nx + 1, 1:] - vh[1:nx + 1, :-1]) / dx
        dd, dtn = e11 + e22, e11 - e22
        ds2 = 0.25 * (ds[1:, 1:] ** 2 + ds[:-1, 1:] ** 2 + ds[1:, :-1] ** 2 + ds[:-1, :-1] ** 2)
        delta2 = dd * dd + e2inv * (dtn * dtn + ds2)
        z = 0.5 * press / np.sqrt(delta2 + p.delta_min ** 2)
        pr = 2.0 * z * np.sqrt(delta2)
        al = np.maximum(p.aevp_alpha_min, np.sqrt(acoef * z))
        s1 += (2.0 * z * dd - pr - s1) / al
        s2 += (2.0 * z * e2inv * dtn - s2) / al
        alpha_h[1:-1, 1:-1] = al
        dd2_h[1:-1, 1:-1] = dd * dd
        dt2_h[1:-1, 1:-1] = dtn * dtn
        delta2z = _corner_sum(dd2_h) * rcnt + e2inv * (_corner_sum(dt2_h) * rcnt + ds * ds)
        eta = 0.5 * e2inv * _corner_sum(ph) * rcnt / np.sqrt(delta2z + p.delta_min ** 2)
        s12 += (eta * ds - s12) / (_corner_sum(alpha_h) * rcnt)

        uk = uh[1:nx, 1:ny + 1]
        vbar = 0.25 * (vh[1:nx, 1:] + vh[2:nx + 1, 1:] + vh[1:nx, :-1] + vh[2:nx + 1, :-1])
        du, dv = uo_u - uk, vo_u - vbar
        cw = au * rhocw * np.sqrt(du * du + dv * dv)
        beta = 0.5 * (alpha_h[1:nx, 1:ny + 1] + alpha_h[2:nx + 1, 1:ny + 1])
        mdt = mu / dt
        div = (0.5 * (s1[1:] + s2[1:] - s1[:-1] - s2[:-1]) + s12[1:nx, 1:] - s12[1:nx, :-1]) / dx
        unew = (beta * mdt * uk + mdt * un + div + tu + cw * (cost * uo_u - sint * dv)
                + mu * p.coriolis * (vbar - vo_u)) / ((beta + 1.0) * mdt + cw * cost)
        unew = np.where(mask_u, unew, 0.0)

        vk = vh[1:nx + 1, 1:ny]
        ubar = 0.25 * (uh[1:, 1:ny] + uh[:-1, 1:ny] + uh[1:, 2:ny + 1] + uh[:-1, 2:ny + 1])
        du, dv = uo_v - ubar, vo_v - vk
        cw = av * rhocw * np.sqrt(du * du + dv * dv)
        beta = 0.5 * (alpha_h[1:nx + 1, 1:ny] + alpha_h[1:nx + 1, 2:ny + 1])
        mdt = mv / dt
        div = (0.5 * (s1[:, 1:] - s2[:, 1:] - s1[:, :-1] + s2[:, :-1]) + s12[1:, 1:ny] - s12[:-1, 1:ny]) / dx
        vnew = (beta * mdt * vk + mdt * vn + div + tv + cw * (cost * vo_v + sint * du)
                - mv * p.coriolis * (ubar - uo_v)) / ((beta + 1.0) * mdt + cw * cost)
        vnew = np.where(mask_v, vnew, 0.0)
        uh[1:nx, 1:ny + 1] = unew
        vh[1:nx + 1, 1:ny] = vnew
    wall = time.perf_counter() - t0
    u[:-1, :] = uh[1:nx, 1:ny + 1]
    v[:, :-1] = vh[1:nx + 1, 1:ny]
    return wall


def _cyclone_model(n: int, physics: CoarsePhysicsConfig) -> tuple[GridConfig, CoarseModel]:
    grid = GridConfig(nx=n, ny=n, dx=512e3 / n)
    model = CoarseModel(grid, physics)
    model.set_state(initial_state(grid))
    return grid, model


def _forcing(grid: GridConfig, t: float) -> dict[str, np.ndarray]:
    f = cyclone_forcing(grid, t)
    f["tas"][:] = 250.0      # cold: the thermodynamics has work to do
    f["rlds"][:] = 180.0
    return f


def time_full_step(n: int, repeats: int) -> tuple[float, dict]:
    """Minimum wall time (s) of one default 12 h step (dynamics, transport, thermodynamics) on n x n."""
    grid, model = _cyclone_model(n, CoarsePhysicsConfig())
    f0, f1 = _forcing(grid, 0.0), _forcing(grid, float(STEP_SECONDS))
    model.step(f0, f1)  # warm-up (first touch of the work arrays)
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        model.step(f0, f1)
        best = min(best, time.perf_counter() - t0)
    return best, model.last_step_info


def compare_mevp(n: int, n_iter: int, repeats: int) -> tuple[float, float, float]:
    """(Fortran s, NumPy s, max relative difference of u) for one dynamics step of n_iter mEVP iterations."""
    phys = CoarsePhysicsConfig(n_evp=n_iter, transport_on=False, thermo_on=False)
    grid, model = _cyclone_model(n, phys)
    f = _forcing(grid, 0.0)
    # spin the state up for one 12 h window so that the comparison starts from moving, stressed ice
    model.step(f, f)
    start = {k: np.array(a, order="F") for k, a in model._arr.items()}
    s12_start = np.array(model._s12, order="F")
    best_f = np.inf
    for _ in range(repeats):
        for k, a in start.items():
            model._arr[k][...] = a
        model._s12[...] = s12_start
        t0 = time.perf_counter()
        model.step(f, f, duration_seconds=phys.dt_dyn)
        best_f = min(best_f, time.perf_counter() - t0)
    p = phys
    speed = np.hypot(f["uas"], f["vas"])
    taux, tauy = ((p.rho_air * p.c_air * speed * f[c]).T for c in ("uas", "vas"))
    best_n = np.inf
    for _ in range(max(1, repeats // 2)):
        u, v, s1, s2 = (start[k].copy() for k in ("u", "v", "s1", "s2"))
        s12 = s12_start.copy()
        wall = mevp_numpy(p, grid.dx, p.dt_dyn, start["a"], start["vice"], start["vsnow"], taux, tauy,
                          f["uo"].T, f["vo"].T, u, v, s1, s2, s12, n_iter)
        best_n = min(best_n, wall)
    diff = np.abs(u - model._arr["u"]).max() / max(np.abs(model._arr["u"]).max(), 1e-30)
    return best_f, best_n, diff


def main(argv: list[str] | None = None) -> None:
    """`python -m benchmarks.fortran_model [--sizes …]`: print the coarse model's cost per grid size and mEVP
    Fortran vs NumPy."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[32, 64, 128])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--numpy-iterations", type=int, default=200)
    args = ap.parse_args(argv)
    p = CoarsePhysicsConfig()
    print(f"coarse model, default physics: dt_dyn = {p.dt_dyn:g} s, N = {p.n_evp} (aEVP), thermodynamics on; "
          f"cyclone wind, 250 K; wall-clock minimum of {args.repeats} (shared machine: expect noise)")
    print(f"{'grid':>8} {'s / 12 h':>10} {'cell-it/s':>11} {'ns/cell-it':>11} {'substeps':>9} "
          f"{'F mEVP s':>9} {'NumPy s':>9} {'F/NumPy':>8} {'max |du|/|u|':>13}")
    for n in args.sizes:
        t12, info = time_full_step(n, args.repeats)
        cell_it = n * n * p.n_evp * info["dynamics_steps"]
        tf, tn, diff = compare_mevp(n, args.numpy_iterations, args.repeats)
        print(f"{n:>5}x{n:<3}{t12:10.3f} {cell_it / t12:11.3g} {1e9 * t12 / cell_it:11.1f} "
              f"{info['transport_substeps']:9d} {tf:9.4f} {tn:9.4f} {tn / tf:8.1f} {diff:13.2e}")
    print("F mEVP / NumPy: one dynamics step of the same iterations on the same state (Fortran time includes the "
          "call overhead; NumPy time is the iteration loop alone)")


if __name__ == "__main__":
    main()
