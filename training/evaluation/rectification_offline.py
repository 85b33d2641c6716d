"""Rectification of 12 h corrections from the truth (offline), per bounds mode, against what the truth needed.

    python -m training.evaluation.rectification_offline --pairs test.nc --checkpoint best.pt \\
        [--stride 4] [--members 4] [--modes clip,ridge,conserve] [--out offline.json]

For every `stride`-th record of a pair file, `members` corrections are sampled from the truth-started forecast
(the conditioning of `icecorr correct`) and bounded in each mode (`corrector.bounds.BOUNDS_MODES`). Per quantity
(`training.evaluation.rectification.quantities`: sic, sit, snt and the volumes sivol, snvol), domain means over ocean
cells per 12 h step, averaged over records and members, by ice state of the forecast and by month:
  raw        the unbounded correction;
  rectified  bounded − unbounded (what the bounds add);
  applied    bounded − forecast (what reaches the model);
  needed     reference − forecast (the truth's residual; its negative is the coarse model's 12 h error);
  bias       applied − needed (its mean is the systematic gain a coupled run gets per step on truth-like states),
and the RMSE of the ensemble mean against the reference, with the ensemble spread, per variable. (`raw` and
`rectified` are pooled over chunks of records, so their monthly values mix neighbouring months; the others are exact
per record.)
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from icecorr.base.files import open_netcdf, write_text_atomic
from .rectification import ICE_STATES, ice_state_index, quantities, rectification_terms

TERMS = ("raw", "rectified", "applied", "needed", "bias")


def bounded_in_mode(mode: str, corrector, forecast: dict, sample: np.ndarray, mask) -> dict:
    """`corrector.apply` of `sample` to `forecast`, then the mode's fix (`clip`: none)."""
    from corrector.bounds import rebound

    out = corrector.apply(forecast, sample, mask=mask)
    names = list(corrector.variables)
    raw = {v: forecast[v][:, None] + sample[:, :, k] for k, v in enumerate(names)}
    return rebound(mode, raw, out, mask)


def by_state(diff: np.ndarray, state: np.ndarray, ocean: np.ndarray) -> np.ndarray:
    """(len(ICE_STATES),) contributions of each state's ocean cells to the domain mean of `diff` (…, ny, nx)."""
    n = diff.size / diff.shape[-1] / diff.shape[-2] * max(int(ocean.sum()), 1)
    diff = np.where(ocean, diff, 0.0)
    state = np.broadcast_to(state, diff.shape)
    return np.array([diff[state == k].sum() / n for k in range(len(ICE_STATES))])


def offline(pairs: Path, checkpoint: Path, stride: int, members: int, seed: int, modes: list[str],
            chunk: int = 8) -> dict:
    """{mode: {"records": [{month, terms {term: {quantity: (3,)}}}], "skill": {v: (rmse, spread)}}}."""
    from corrector.inference import Corrector
    from corrector.seeding import member_seeds
    from coupling.pairs import pair_conditioning

    c = Corrector.load(checkpoint)
    names = list(c.variables)
    res: dict = {m: {"records": [], "se": {}, "var": {}} for m in modes}
    with open_netcdf(pairs, "pair file") as ds:
        mask = ds["mask"].values if "mask" in ds else None
        ny, nx = ds.sizes["y"], ds.sizes["x"]
        ocean = np.ones((ny, nx), bool) if mask is None else mask > 0.5
        idx_all = np.arange(0, ds.sizes["time"], stride)
        months = ds["time"].dt.month.values
        for lo in range(0, len(idx_all), chunk):
            idx = idx_all[lo:lo + chunk]
            part = ds.isel(time=idx)
            fc = {v: part[f"forecast_{v}"].values.astype(np.float64) for v in names}
            ref = {v: part[f"reference_{v}"].values.astype(np.float64) for v in names}
            sample = c.sample(pair_conditioning(c, ds, pairs, idx, mask), members=members,
                              seeds=member_seeds(seed, idx, 0, members))
            state = ice_state_index(fc["sic"], fc["sit"])[:, None]          # (B, 1, ny, nx)
            q_fc, q_ref = quantities(fc), quantities(ref)
            for mode in modes:
                out = bounded_in_mode(mode, c, fc, sample, mask)
                terms = rectification_terms(fc, sample, out, names, mask)   # pooled over the chunk
                q_out = quantities({v: out[v] for v in names})
                per = {t: {} for t in TERMS}
                for q in q_fc:
                    for b in range(len(idx)):
                        st, oc = state[b], ocean
                        per["applied"].setdefault(q, []).append(by_state(q_out[q][b] - q_fc[q][b], st, oc))
                        per["needed"].setdefault(q, []).append(by_state(
                            np.broadcast_to(q_ref[q][b] - q_fc[q][b], q_out[q][b].shape), st, oc))
                for b, t in enumerate(idx):
                    rec = {"month": int(months[t]), "terms": {}}
                    for term in ("applied", "needed"):
                        rec["terms"][term] = {q: per[term][q][b] for q in q_fc}
                    rec["terms"]["bias"] = {q: rec["terms"]["applied"][q] - rec["terms"]["needed"][q] for q in q_fc}
                    for term in ("raw", "rectified"):   # chunk means: the same for every record of the chunk
                        rec["terms"][term] = terms[term]
                    res[mode]["records"].append(rec)
                for v in names:
                    e = ((np.asarray(out[v]).mean(axis=1) - ref[v]) ** 2)[:, ocean].sum()
                    s = (np.asarray(out[v]).var(axis=1, ddof=1) if members > 1 else 0 * ref[v])[:, ocean].sum()
                    res[mode]["se"][v] = res[mode]["se"].get(v, 0.0) + float(e)
                    res[mode]["var"][v] = res[mode]["var"].get(v, 0.0) + float(s)
    n_val = len(idx_all) * int(ocean.sum())
    for mode in modes:
        r = res[mode]
        r["skill"] = {v: (float(np.sqrt(r["se"][v] / n_val)), float(np.sqrt(r["var"][v] / n_val))) for v in names}
        del r["se"], r["var"]
    return res


def summary(res: dict) -> dict:
    """{mode: {"all" | month: {term: {quantity: {state: value, "all": value}}}}, "skill"}: means over records."""
    out = {}
    for mode, r in res.items():
        recs = r["records"]
        groups = {"all": recs, **{str(m): [x for x in recs if x["month"] == m]
                                  for m in sorted({x["month"] for x in recs})}}
        out[mode] = {"skill": r["skill"]}
        for g, sel in groups.items():
            out[mode][g] = {"records": len(sel)}
            for term in TERMS:
                out[mode][g][term] = {}
                for q in sel[0]["terms"][term]:
                    a = np.mean([x["terms"][term][q] for x in sel], axis=0)
                    out[mode][g][term][q] = {**{s: float(a[k]) for k, s in enumerate(ICE_STATES)},
                                             "all": float(a.sum())}
    return out


def main(argv=None) -> int:
    """Command line: see the module docstring."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--pairs", type=Path, required=True)
    p.add_argument("--checkpoint", type=Path, required=True)
    p.add_argument("--stride", type=int, default=4)
    p.add_argument("--members", type=int, default=4)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--modes", default="clip,ridge,conserve")
    p.add_argument("--out", type=Path, required=True)
    a = p.parse_args(argv)
    s = summary(offline(a.pairs, a.checkpoint, a.stride, a.members, a.seed, a.modes.split(",")))
    write_text_atomic(json.dumps(s, indent=1), a.out)
    for mode, r in s.items():
        print(f"# {mode}: {r['all']['records']} records; per 12 h step, domain mean (open/thin/pack = all)")
        for q in ("sic", "sivol", "snvol"):
            print(f"  {q:6s} " + "  ".join(f"{t} {r['all'][t][q]['all']:+.2e}" for t in TERMS) +
                  "   rect by state " + "/".join(f"{r['all']['rectified'][q][st]:+.1e}" for st in ICE_STATES))
        print("  RMSE/spread " + "  ".join(f"{v} {e:.4g}/{sd:.3g}" for v, (e, sd) in r["skill"].items()))
        for g in (k for k in r if k not in ("all", "skill")):
            print(f"  month {g:>2s} ({r[g]['records']:3d}): " + "  ".join(
                f"{q} applied {r[g]['applied'][q]['all']:+.2e} needed {r[g]['needed'][q]['all']:+.2e}"
                for q in ("sic", "sit", "sivol")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
