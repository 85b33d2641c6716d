"""Pure torch/numpy corrector: conditional diffusion model (EDM), deterministic baseline, sampler, normalisation,
physical bounds, checkpoints and the inference API. Imports nothing from the other icecorr packages."""
from .bounds import apply_bounds, zero_walls
from .checkpoint import CheckpointData, CheckpointError, load_checkpoint, mask_hash, save_checkpoint
from icecorr.base.variables import FORCING_VARIABLES, ML_VARIABLES
from .config import CorrectorConfig, DiffusionConfig, NetworkConfig, SamplerConfig
from .fields import conditioning_names, stack, target_arrays, unstack
from .inference import Corrector
from .model import CorrectorModel
from .normalization import Normalization, NormalizationAccumulator
from .seeding import member_seeds

__all__ = [
    "apply_bounds", "zero_walls", "CheckpointData", "CheckpointError", "load_checkpoint", "mask_hash",
    "save_checkpoint", "FORCING_VARIABLES", "ML_VARIABLES", "CorrectorConfig", "DiffusionConfig", "NetworkConfig",
    "SamplerConfig", "conditioning_names", "stack", "target_arrays", "unstack", "Corrector", "CorrectorModel",
    "Normalization", "NormalizationAccumulator", "member_seeds",
]
