"""Corrector checkpoints: one torch archive of plain data, loaded with torch.load(weights_only=True).

Contents (no pickled objects): format name and version, package/torch versions, the resolved CorrectorConfig as YAML
text, raw and EMA state_dicts, normalisation statistics, ordered variables with units, conditioning names, grid
(nx, ny, dx, mask_hash), and a free `extra` dict (provenance, splits, step, metrics…). Training-resume state
(optimizer, RNG) is the trainer's business and lives in a separate file.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
import yaml

from icecorr.base.version import package_version
from .config import CorrectorConfig
from .normalization import Normalization

FORMAT = "icecorr-corrector"
FORMAT_VERSION = 1
GRID_KEYS = ("nx", "ny", "dx", "mask_hash")


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: unreadable, not a corrector checkpoint, wrong version or incompatible."""

    def __init__(self, path: str | os.PathLike | None, problem: str):
        self.path, self.problem = (str(path) if path is not None else None), problem
        super().__init__(f"checkpoint {path}: {problem}" if path is not None else f"checkpoint: {problem}")


def mask_hash(mask: np.ndarray) -> str:
    """Short stable hash of a land/ocean mask (ny, nx): shape + ocean bits. Everyone computes it with this function."""
    m = np.ascontiguousarray(np.asarray(mask) > 0.5, dtype=np.uint8)
    h = hashlib.sha256(f"{m.shape[0]}x{m.shape[1]}:".encode() + m.tobytes())
    return h.hexdigest()[:16]


@dataclass
class CheckpointData:
    """Everything a checkpoint holds, as plain Python/tensor objects."""

    config: CorrectorConfig
    model_state: dict[str, torch.Tensor]
    ema_state: dict[str, torch.Tensor] | None
    normalization: Normalization
    grid: dict[str, Any]
    variables_units: dict[str, str]
    extra: dict = field(default_factory=dict)
    format_version: int = FORMAT_VERSION
    package_version: str = "unknown"
    torch_version: str = ""
    path: str | None = None

    def state(self, use_ema: bool = True) -> dict[str, torch.Tensor]:
        """EMA weights if present and asked for, otherwise the raw weights."""
        return self.ema_state if (use_ema and self.ema_state is not None) else self.model_state


def _plain_state(state: Mapping[str, Any] | None, what: str) -> dict[str, torch.Tensor] | None:
    """state_dict → {name: tensor}; accepts torch.optim.swa_utils.AveragedModel dicts ('module.' prefix)."""
    if state is None:
        return None
    out = {}
    for k, v in state.items():
        if k == "n_averaged":
            continue
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"{what}: entry {k!r} is {type(v).__name__}, expected a tensor")
        out[k[len("module."):] if k.startswith("module.") else k] = v.detach().cpu().clone()
    return out


def check_finite_weights(state: Mapping[str, Any] | None, what: str, path: str | os.PathLike | None) -> None:
    """CheckpointError naming the first floating-point tensor of `state` that holds NaN or ±inf (a diverged
    training), with how many of its values are not finite."""
    for name, tensor in (state or {}).items():
        if isinstance(tensor, torch.Tensor) and tensor.is_floating_point():
            bad = int((~torch.isfinite(tensor)).sum())
            if bad:
                raise CheckpointError(path, f"{what} tensor {name!r} holds {bad} non-finite value(s) (NaN or inf) "
                                            f"of {tensor.numel()}: the training diverged; this corrector is unusable")


def _check_plain(obj: Any, where: str) -> None:
    """Only str/int/float/bool/None/list/tuple/dict/tensor may go into the archive (weights_only-loadable)."""
    if obj is None or type(obj) in (str, int, float, bool) or isinstance(obj, torch.Tensor):
        return  # exact types: str/int subclasses (TorchVersion, enums) would need a pickled global
    if isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            _check_plain(v, f"{where}[{i}]")
        return
    if isinstance(obj, dict):
        for k, v in obj.items():
            if not isinstance(k, (str, int)):
                raise TypeError(f"{where}: key {k!r} must be str or int")
            _check_plain(v, f"{where}.{k}")
        return
    if isinstance(obj, np.ndarray):
        raise TypeError(f"{where}: numpy array — convert with torch.from_numpy or .tolist()")
    if isinstance(obj, np.generic):
        raise TypeError(f"{where}: numpy scalar {obj!r} — convert with .item()")
    raise TypeError(f"{where}: {type(obj).__name__} is not plain data (str/int/float/list/dict/tensor)")


def _grid_dict(grid: Mapping[str, Any]) -> dict[str, Any]:
    missing = [k for k in GRID_KEYS if k not in grid]
    if missing:
        raise ValueError(f"save_checkpoint: grid lacks {missing} (need {list(GRID_KEYS)})")
    out = {"nx": int(grid["nx"]), "ny": int(grid["ny"]), "dx": float(grid["dx"]), "mask_hash": str(grid["mask_hash"])}
    if grid.get("projection"):  # the training pairs' CF grid-mapping attributes (plain numbers and strings)
        out["projection"] = dict(grid["projection"])
    return out


def save_checkpoint(path: str | os.PathLike, *, model_state: Mapping[str, torch.Tensor],
                    ema_state: Mapping[str, torch.Tensor] | None, config: CorrectorConfig,
                    normalization: Normalization, grid: Mapping[str, Any], variables_units: Mapping[str, str],
                    extra: Mapping[str, Any] | None = None) -> Path:
    """Write a checkpoint to `<path>.tmp-<pid>` and rename it to `path` (readers never see a partial file).

    grid: {nx, ny, dx (m), mask_hash (corrector.checkpoint.mask_hash(mask))}; variables_units: {variable: units}
    for every config variable; extra: plain data only (str/int/float/bool/list/dict/tensor).
    """
    path = Path(path)
    missing_units = [v for v in config.variables if v not in variables_units]
    if missing_units:
        raise ValueError(f"save_checkpoint: variables_units lacks {missing_units}")
    if list(normalization.target_names) != list(config.variables):
        raise ValueError(f"save_checkpoint: normalisation targets {normalization.target_names} differ from "
                         f"config variables {config.variables}")
    if list(normalization.cond_names) != list(config.conditioning or []):
        raise ValueError(f"save_checkpoint: normalisation conditioning {normalization.cond_names} differs from "
                         f"config conditioning {config.conditioning}")
    extra = dict(extra or {})
    _check_plain(extra, "extra")
    check_finite_weights(model_state, "model_state", path)  # never write a diverged corrector
    check_finite_weights(ema_state, "ema_state", path)
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "package_version": package_version(),
        "torch_version": str(torch.__version__),  # TorchVersion is a str subclass: not plain
        "config_yaml": yaml.safe_dump(config.model_dump(mode="json"), sort_keys=False),
        "variables": list(config.variables),
        "variables_units": {v: str(variables_units[v]) for v in config.variables},
        "conditioning_names": list(config.conditioning or []),
        "grid": _grid_dict(grid),
        "normalization": normalization.to_dict(),
        "model_state": _plain_state(model_state, "model_state"),
        "ema_state": _plain_state(ema_state, "ema_state"),
        "extra": extra,
    }
    _check_plain(payload, "checkpoint")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(payload, tmp)
        os.replace(tmp, path)
    except (OSError, RuntimeError) as exc:  # a full disk: torch says "[enforce fail at inline_container.cc:…]"
        raise CheckpointError(path, f"cannot be written (disk full or not writable?): {_first_line(exc)[:200]}") \
            from None
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def load_checkpoint(path: str | os.PathLike, *, grid: Mapping[str, Any] | None = None,
                    variables: list[str] | None = None) -> CheckpointData:
    """Read and validate a checkpoint; optionally check it against the run's grid and variable list.

    Raises CheckpointError for: missing/truncated/unreadable file, a file that is not a corrector checkpoint (or
    holds pickled objects), a newer format version, an invalid config, non-finite weights (NaN/inf, naming the
    tensor), and (if given) grid or variable mismatch.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(p, "no such file")
    if not zipfile.is_zipfile(p):
        raise CheckpointError(p, "not a torch checkpoint archive (truncated, corrupted or a different file type)")
    try:
        # torch's reader does not verify the archive's CRC-32s: a flipped bit in the weights would load silently
        with zipfile.ZipFile(p) as zf:
            bad = zf.testzip()
    except Exception as exc:  # noqa: BLE001 - BadZipFile, OSError, EOFError, UnicodeDecodeError (garbled names), …
        raise CheckpointError(p, f"unreadable or corrupted archive ({type(exc).__name__}: {_first_line(exc)})") \
            from None
    if bad is not None:
        raise CheckpointError(p, f"corrupted: CRC check failed for archive member {bad!r}")
    try:
        raw = torch.load(p, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # torch's message is long (and styled); keep what names the offending object
        found = re.search(r"Unsupported global: GLOBAL ([\w.]+)|unsupported [\w ]*?: ([^\n]+)", str(exc))
        what = next((g for g in found.groups() if g), "") if found else _first_line(exc)
        raise CheckpointError(p, f"refusing to load: it holds objects beyond plain data (weights-only loading; "
                                 f"{what.strip()})") from None
    except Exception as exc:  # zip/CRC/stream errors from torch's reader
        raise CheckpointError(p, f"unreadable or corrupted ({type(exc).__name__}: {_first_line(exc)})") from None
    if not isinstance(raw, dict) or raw.get("format") != FORMAT:
        raise CheckpointError(p, f"not an icecorr corrector checkpoint (no format={FORMAT!r} entry)")
    version = raw.get("format_version")
    if not isinstance(version, int) or version > FORMAT_VERSION or version < 1:
        raise CheckpointError(p, f"format version {version!r} is not supported by this icecorr "
                                 f"({package_version()}, reads versions 1..{FORMAT_VERSION}); it was written by "
                                 f"icecorr {raw.get('package_version', '?')}")
    required = ("config_yaml", "variables", "variables_units", "conditioning_names", "grid", "normalization",
                "model_state", "ema_state", "extra")
    missing = [k for k in required if k not in raw]
    if missing:
        raise CheckpointError(p, f"incomplete: entries {missing} missing")
    try:
        stored = yaml.safe_load(raw["config_yaml"])
        if isinstance(stored, dict):
            # written before `emulator_state_variables` existed, when every emulator target was a 12 h tendency:
            # the missing key means [], not the current default (the velocities)
            stored.setdefault("emulator_state_variables", [])
        config = CorrectorConfig.model_validate(stored)
    except Exception as exc:
        raise CheckpointError(p, f"stored config is invalid: {_first_line(exc)}") from None
    if list(config.variables) != list(raw["variables"]):
        raise CheckpointError(p, f"inconsistent: config variables {config.variables} vs stored {raw['variables']}")
    try:
        norm = Normalization.from_dict(raw["normalization"])
    except ValueError as exc:
        raise CheckpointError(p, f"stored normalisation is invalid: {exc}") from None
    if not isinstance(raw["model_state"], dict) or not raw["model_state"]:
        raise CheckpointError(p, "model_state is empty")
    check_finite_weights(raw["model_state"], "model_state", p)
    if isinstance(raw["ema_state"], dict):
        check_finite_weights(raw["ema_state"], "ema_state", p)
    data = CheckpointData(config=config, model_state=raw["model_state"], ema_state=raw["ema_state"],
                          normalization=norm, grid=dict(raw["grid"]), variables_units=dict(raw["variables_units"]),
                          extra=dict(raw["extra"]), format_version=version,
                          package_version=str(raw.get("package_version", "unknown")),
                          torch_version=str(raw.get("torch_version", "")), path=str(p))
    check_compatible(data, grid=grid, variables=variables)
    return data


def check_compatible(data: CheckpointData, *, grid: Mapping[str, Any] | None = None,
                     variables: list[str] | None = None) -> None:
    """CheckpointError naming the first field of `grid` ({nx, ny, dx, mask_hash}, any subset) or the variable list
    that differs from what the checkpoint was trained for."""
    if grid is not None:
        for key in GRID_KEYS:
            if key not in grid or grid[key] is None:
                continue
            want, have = grid[key], data.grid.get(key)
            same = (abs(float(want) - float(have)) <= 1e-6 * abs(float(have))) if key == "dx" else want == have
            if not same:
                raise CheckpointError(data.path, f"grid mismatch: grid.{key} is {have!r} in the checkpoint but "
                                                 f"{want!r} in this run")
    if variables is not None and list(variables) != list(data.config.variables):
        raise CheckpointError(data.path, f"variable mismatch: the checkpoint predicts {data.config.variables}, "
                                         f"this run expects {list(variables)}")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def describe_checkpoint(data: CheckpointData) -> str:
    """A short human-readable summary of a loaded checkpoint (`icecorr checkpoint inspect`)."""
    cfg = data.config
    n_params = sum(int(t.numel()) for t in data.model_state.values() if isinstance(t, torch.Tensor))
    g = data.grid
    lines = [
        f"checkpoint: {data.path}",
        f"format version {data.format_version}; written by icecorr {data.package_version}, torch {data.torch_version}",
        f"kind: {cfg.kind}; mode: {cfg.mode}" + ("; next-state targets: " + ", ".join(cfg.emulator_state_variables)
                                                  if cfg.emulator_state_variables else ""),
        "variables: " + ", ".join(f"{v} [{data.variables_units.get(v, '?')}]" for v in cfg.variables),
        f"conditioning ({len(cfg.conditioning or [])}): " + ", ".join(cfg.conditioning or []),
        f"grid: ny={g.get('ny')} nx={g.get('nx')} dx={g.get('dx')} m, mask hash {g.get('mask_hash')}"
        + (f", projection {g['projection'].get('grid_mapping_name', '?')}" if g.get("projection") else ""),
        f"parameters: {n_params}; EMA weights: {'yes' if data.ema_state is not None else 'no'}",
    ]
    if data.extra:
        keys = ", ".join(sorted(str(k) for k in data.extra))
        lines.append(f"extra: {keys}")
    return "\n".join(lines)
