"""Rectification at the physical bounds: how much ice the bounds add (or remove) per corrected step, by ice state.

A sampled correction is added to the coarse forecast and then bounded (`corrector.bounds`: clip sic to [0, 1],
sit/snt ≥ 0, no area without volume, no volume without area; residual mode also drops the forecast thickness where
the forecast has almost no ice). Noise around a bound is clipped on one side only, so a zero-mean noise can become a
systematic gain or loss. This module measures it:

    terms = rectification_terms(forecast, sample, bounded, variables)

gives, per quantity (`sic`, `sit`, `snt` and the volumes per cell area `sivol` = sic·sit, `snvol` = sic·snt, in m)
and per ice state of the forecast (`ICE_STATES`), the contribution to the domain mean (sum over the state's ocean
cells / number of ocean cells, averaged over batch items and members) of
  * `raw`:       the unbounded correction, (forecast + sample) − forecast (for the volumes: the product of the
                 unbounded fields minus the forecast's),
  * `rectified`: bounded − unbounded (what the bounds add),
so that the three ice states add up to the domain mean and raw + rectified = the correction that reaches the model.

`RectificationProbe(corrector)` wraps a loaded `corrector.inference.Corrector` (everything delegated) and records
these terms at every `apply` — one call per 12 h step in a one-process coupled run (`coupling.couple.run_couple`
with `comm=None`), so the record index is the lead (step). `training.evaluation.rectification_run` runs it.
"""
from __future__ import annotations

from typing import Callable, Mapping, Sequence

import numpy as np

#: the ice states a cell's forecast is sorted into: open water (sic < OPEN_WATER_SIC), thin ice (sit < THIN_SIT m)
#: and pack ice (the rest)
ICE_STATES = ("open", "thin", "pack")
#: the conventional ice-edge concentration (1)
OPEN_WATER_SIC = 0.15
#: thickness (m) below which ice counts as thin: first-year ice of the early freeze-up in the twin
THIN_SIT = 0.5
#: the state variables and the volumes (per cell area) made of them: volume = sic × thickness
VOLUMES = {"sivol": "sit", "snvol": "snt"}


def ice_state_index(sic: np.ndarray, sit: np.ndarray) -> np.ndarray:
    """int array like `sic`: the index in ICE_STATES of each cell's state (0 open water, 1 thin, 2 pack)."""
    state = np.full(np.shape(sic), 2, dtype=np.int8)
    state[np.asarray(sit) < THIN_SIT] = 1
    state[np.asarray(sic) < OPEN_WATER_SIC] = 0
    return state


def _members(a: np.ndarray, m: int) -> np.ndarray:
    """(B, M, ny, nx) from (B, ny, nx) (broadcast over members) or (B, M, ny, nx)."""
    a = np.asarray(a, dtype=np.float64)
    return np.broadcast_to(a[:, None], (a.shape[0], m, *a.shape[1:])) if a.ndim == 3 else a


def quantities(fields: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The fields sic, sit, snt present in `fields` plus the volumes of VOLUMES that they make."""
    out = {v: fields[v] for v in ("sic", "sit", "snt") if v in fields}
    if "sic" in fields:
        out.update({vol: fields["sic"] * fields[h] for vol, h in VOLUMES.items() if h in fields})
    return out


def rectification_terms(forecast: Mapping[str, np.ndarray], sample: np.ndarray,
                        bounded: Mapping[str, np.ndarray], variables: Sequence[str],
                        mask: np.ndarray | None = None) -> dict[str, dict[str, np.ndarray]]:
    """{"raw" | "rectified": {quantity: (len(ICE_STATES),) float64}}: contributions of each ice state to the domain
    mean (units of the quantity per 12 h step), averaged over batch items and members.

    forecast: {variable: (B, ny, nx) or (B, M, ny, nx)} — the coarse forecast the sample corrects (as given to
    `Corrector.apply`, before its thin-forecast guard); sample: (B, M, n_vars, ny, nx), the correction with channels
    `variables`; bounded: {variable: (B, M, ny, nx)}, what `Corrector.apply` returned; mask (ny, nx): ocean where
    > 0.5 (None: all ocean). The ice state of a cell is that of its forecast (`ice_state_index`).
    """
    sample = np.asarray(sample, dtype=np.float64)
    b, m = sample.shape[:2]
    ny, nx = sample.shape[-2:]
    ocean = np.ones((ny, nx), bool) if mask is None else np.asarray(mask) > 0.5
    fc = {v: _members(forecast[v], m) for v in variables if v in forecast}
    raw = {v: fc[v] + sample[:, :, k] for k, v in enumerate(variables) if v in fc}
    bnd = {v: np.asarray(bounded[v], dtype=np.float64) for v in raw}
    q_fc, q_raw, q_bnd = quantities(fc), quantities(raw), quantities(bnd)
    state = ice_state_index(fc["sic"], fc["sit"]) if "sic" in fc and "sit" in fc else np.full((b, m, ny, nx), 2)
    n_cells = float(b * m * max(int(ocean.sum()), 1))
    out: dict[str, dict[str, np.ndarray]] = {"raw": {}, "rectified": {}}
    for q in q_fc:
        for term, diff in (("raw", q_raw[q] - q_fc[q]), ("rectified", q_bnd[q] - q_raw[q])):
            diff = np.where(ocean, diff, 0.0)
            out[term][q] = np.array([diff[state == k].sum() / n_cells for k in range(len(ICE_STATES))])
    return out


class RectificationProbe:
    """A corrector that records `rectification_terms` at each `apply` (and delegates everything to `corrector`).

    records: one entry per `apply` call — `rectification_terms` ({"raw"/"rectified": {quantity: (3,)}}) plus
    "forecast_mean", "raw_mean", "bounded_mean": {quantity: (B, M)}, the domain means over ocean cells of the
    forecast, the unbounded corrected state and the bounded one of each batch item and member.
    `rebound(forecast, sample, bounded, mask) -> bounded`, if given, replaces the bounded state after the
    corrector's own bounds (an experimental bounding rule measured against the default one).
    """

    def __init__(self, corrector, rebound: Callable | None = None):
        self.inner = corrector
        self.rebound = rebound
        self.records: list[dict] = []

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def apply(self, base: Mapping[str, np.ndarray], sample: np.ndarray,
              mask: np.ndarray | None = None) -> dict[str, np.ndarray]:
        """`corrector.apply(base, sample, mask)` (then `rebound`), recording the rectification of this step."""
        out = self.inner.apply(base, sample, mask=mask)
        if self.rebound is not None:
            out = self.rebound(base, sample, out, mask)
        variables = self.inner.variables
        rec = rectification_terms(base, sample, out, variables, mask)
        ocean = np.ones(np.shape(sample)[-2:], bool) if mask is None else np.asarray(mask) > 0.5
        m = np.shape(sample)[1]
        fc = {v: _members(base[v], m) for v in variables if v in base}
        raw = {v: fc[v] + np.asarray(sample, dtype=np.float64)[:, :, k] for k, v in enumerate(variables) if v in fc}
        for key, fields in (("forecast", fc), ("raw", raw), ("bounded", {v: out[v] for v in fc})):
            rec[f"{key}_mean"] = {q: np.asarray(a, dtype=np.float64)[..., ocean].mean(axis=-1)
                                  for q, a in quantities(fields).items()}
        self.records.append(rec)
        return out


def summarise(records: Sequence[dict], leads: Sequence[tuple[int, int]]) -> dict:
    """Mean per step of the recorded terms over each lead range [lo, hi) of steps: {"lo-hi": {"raw" | "rectified":
    {quantity: {state: value, "all": value}}}}, plus the same over all steps under "all"."""
    def mean_over(recs):
        out = {}
        for term in ("raw", "rectified"):
            out[term] = {}
            for q in recs[0][term]:
                a = np.mean([r[term][q] for r in recs], axis=0)
                out[term][q] = {**{s: float(a[k]) for k, s in enumerate(ICE_STATES)}, "all": float(a.sum())}
        return out

    res = {}
    for lo, hi in leads:
        sel = list(records[lo:hi])
        if sel:
            res[f"{lo}-{min(hi, len(records))}"] = mean_over(sel)
    if records:
        res["all"] = mean_over(list(records))
    return res
