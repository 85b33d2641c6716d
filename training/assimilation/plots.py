"""The figure of a 4D-Var analysis: cost per iteration, forecast error (or mean) along the window, and with a truth
the initial-state errors of the background and of the analysis.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

from icecorr.base.files import atomic_path
from icecorr.base.variables import STEP_HOURS
from training.assimilation.scores import rmse


def plot(path: Path, history: list[dict], variables: Sequence[str], analysis_traj: np.ndarray,
         background_traj: np.ndarray, truth: np.ndarray | None, ocean: np.ndarray, var: str = "sit") -> Path:
    """`assimilation.png` for variable `var`: cost per iteration, forecast RMSE against the truth along the window
    (or the ocean mean without a truth), and with a truth the initial truth and the background and analysis errors."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    c = list(variables).index(var)
    ncols = 5 if truth is not None else 2
    fig, axes = plt.subplots(1, ncols, figsize=(3.4 * ncols, 3.2))
    it = [r["iteration"] for r in history]
    axes[0].semilogy(it, [r["J"] for r in history], label="J")
    axes[0].semilogy(it, [max(r["J_b"], 1e-12) for r in history], label="J_b")
    axes[0].semilogy(it, [r["J_o"] for r in history], label="J_o")
    axes[0].set_xlabel("iteration")
    axes[0].set_title("cost")
    axes[0].legend(fontsize=7)
    lead = np.arange(len(analysis_traj)) * STEP_HOURS / 24
    if truth is not None:
        axes[1].plot(lead, [rmse(background_traj[k, c], truth[k, c], ocean) for k in range(len(lead))],
                     label="from background")
        axes[1].plot(lead, [rmse(analysis_traj[k, c], truth[k, c], ocean) for k in range(len(lead))],
                     label="from analysis")
        axes[1].set_ylabel(f"RMSE {var}")
        axes[1].set_title("forecast error vs truth")
    else:
        axes[1].plot(lead, [float(np.mean(analysis_traj[k, c][ocean])) for k in range(len(lead))], label="analysis")
        axes[1].plot(lead, [float(np.mean(background_traj[k, c][ocean])) for k in range(len(lead))],
                     label="background")
        axes[1].set_ylabel(f"mean {var}")
    axes[1].set_xlabel("lead (days)")
    axes[1].legend(fontsize=7)
    if truth is not None:
        err_b = background_traj[0, c] - truth[0, c]
        err_a = analysis_traj[0, c] - truth[0, c]
        lim = float(np.abs(err_b[ocean]).max()) or 1.0
        for ax, field_, title, kw in (
                (axes[2], truth[0, c], f"truth {var} (t0)", {"cmap": "viridis"}),
                (axes[3], err_b, "background − truth", {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim}),
                (axes[4], err_a, "analysis − truth", {"cmap": "RdBu_r", "vmin": -lim, "vmax": lim})):
            im = ax.imshow(np.where(ocean, field_, np.nan), origin="lower", **kw)
            ax.set_title(title, fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            fig.colorbar(im, ax=ax, fraction=0.046)
    fig.subplots_adjust(left=0.06, right=0.97, bottom=0.16, top=0.88, wspace=0.45)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=90, format="png")
    plt.close(fig)
    return path
