"""CorrectorModel: the network plus what turns it into a trainable/sampleable corrector, in normalised units.

kind 'diffusion': an EDM denoiser D(x; σ, cond) on the target; loss = EDM denoising loss; sampling by an ODE
solver from noise. kind 'deterministic': the network maps conditioning straight to the target (MSE), the baseline.
A diffusion model may sit on a frozen deterministic regression stage (`cfg.base_network`, CorrDiff-style): it then
generates only target − base(cond), with the base prediction as extra conditioning, so that the ensemble mean starts
from the regression estimate and the diffusion spends its capacity on the stochastic part.
Both mask land: the output is multiplied by the `mask` conditioning channel and land cells never enter the loss.

`forward(...)` is `loss(...)`, so a DistributedDataParallel wrapper can be called directly.
"""
from __future__ import annotations

import torch
from torch import nn

from .config import CorrectorConfig, SamplerConfig
from .fields import MASK
from .loss import coverage, masked_mean, valid_mask, variable_balanced_mean
from .network import N_LABELS, UNet
from .preconditioning import edm_coefficients, loss_weight
from .remainder_scale import remainder_scale
from .sampler import SAMPLERS
from .schedule import training_sigmas
from .state_feedback import StateFeedback


class CorrectorModel(nn.Module):
    """cfg: the corrector config; n_conditioning_channels must equal len(cfg.conditioning) (a cross-check).

    Inputs are normalised: target (B, C, H, W) with C = len(cfg.variables), cond (B, Cc, H, W) in the order of
    cfg.conditioning (the mask channel 0/1), labels (B, 3) augmentation flags (zeros at inference).
    """

    def __init__(self, cfg: CorrectorConfig, n_conditioning_channels: int | None = None):
        super().__init__()
        self.cfg = cfg
        names = list(cfg.conditioning or [])
        if n_conditioning_channels is not None and n_conditioning_channels != len(names):
            raise ValueError(f"CorrectorModel: {n_conditioning_channels} conditioning channels given, config names "
                             f"{len(names)} ({names})")
        self.n_cond = len(names)
        self.n_vars = len(cfg.variables)
        self.kind = cfg.kind
        self.mask_index = names.index(MASK) if MASK in names else None
        self.base = None
        if self.kind == "diffusion" and cfg.base_network is not None:
            base_names = list(cfg.base_conditioning or names)
            self.base = UNet(cfg.base_network, len(base_names), self.n_vars)
            self.base.requires_grad_(False)  # trained separately (deterministic kind), loaded by the trainer
            # The stage may read a subset of the channels and have its own normalisation statistics (other
            # training windows): affine maps from this model's normalised conditioning to the stage's, and from
            # its normalised output to this model's target units. Identity when both share the statistics; set by
            # the trainer (`set_base_adapter`), saved with the weights.
            self.register_buffer("base_cond_index", torch.tensor([names.index(n) for n in base_names]))
            self.register_buffer("base_cond_scale", torch.ones(len(base_names)))
            self.register_buffer("base_cond_shift", torch.zeros(len(base_names)))
            self.register_buffer("base_out_scale", torch.ones(self.n_vars))
            self.register_buffer("base_out_shift", torch.zeros(self.n_vars))
        if self.kind == "diffusion" and cfg.diffusion.remainder_scale_cells is not None and self.base is None:
            raise ValueError("diffusion.remainder_scale_cells: scales the remainder of a regression stage, and this "
                             "model has none (train.base_checkpoint)")
        in_ch = self.n_cond + (self.n_vars if self.kind == "diffusion" else 0) + (self.n_vars if self.base is not None else 0)
        self.network = UNet(cfg.network, in_ch, self.n_vars)

    def train(self, mode: bool = True) -> "CorrectorModel":
        """`nn.Module.train`, except that a frozen regression stage (`base`) always stays in eval mode."""
        super().train(mode)
        if self.base is not None:
            self.base.eval()  # frozen stage: no dropout
        return self

    # ----------------------------------------------------------------------------------------------- helpers
    def ocean(self, cond: torch.Tensor) -> torch.Tensor | None:
        """(B, 1, H, W) 0/1 ocean mask from the conditioning, or None when the config has no mask channel."""
        if self.mask_index is None:
            return None
        return (cond[:, self.mask_index:self.mask_index + 1] > 0.5).to(cond.dtype)

    def _check(self, cond: torch.Tensor, labels: torch.Tensor | None, target: torch.Tensor | None = None) -> \
            torch.Tensor:
        if cond.ndim != 4 or cond.shape[1] != self.n_cond:
            raise ValueError(f"cond: shape {tuple(cond.shape)}, expected (B, {self.n_cond}, H, W) for "
                             f"{self.cfg.conditioning}")
        self.network.check_grid(*cond.shape[-2:])
        b = cond.shape[0]
        if target is not None and (target.ndim != 4 or target.shape[0] != b or target.shape[1] != self.n_vars
                                   or target.shape[-2:] != cond.shape[-2:]):
            raise ValueError(f"target: shape {tuple(target.shape)}, expected ({b}, {self.n_vars}, "
                             f"{cond.shape[-2]}, {cond.shape[-1]}) for variables {self.cfg.variables}")
        if labels is None:
            return cond.new_zeros(b, N_LABELS)
        if labels.shape != (b, N_LABELS):
            raise ValueError(f"labels: shape {tuple(labels.shape)}, expected ({b}, {N_LABELS})")
        return labels.to(cond.dtype)

    # ----------------------------------------------------------------------------------------------- networks
    def base_prediction(self, cond: torch.Tensor, labels: torch.Tensor) -> torch.Tensor | None:
        """The frozen regression stage's normalised target estimate (None without one)."""
        if self.base is None:
            return None
        view = (1, -1, 1, 1)
        with torch.no_grad():
            x = cond[:, self.base_cond_index] * self.base_cond_scale.view(view) + self.base_cond_shift.view(view)
            ocean = self.ocean(cond)
            out = self.base(x, cond.new_zeros(cond.shape[0]), labels, ocean)
            out = out * self.base_out_scale.view(view) + self.base_out_shift.view(view)
            return out if ocean is None else out * ocean

    def _remainder_scale(self, base: torch.Tensor, ocean: torch.Tensor | None) -> torch.Tensor | float:
        """What the generated remainder is measured in (`diffusion.remainder_scale_cells`): the local scale on the
        variables of `remainder_scale_variables` (all by default), 1 on the others and without the option."""
        d = self.cfg.diffusion
        if d.remainder_scale_cells is None:
            return 1.0
        s = remainder_scale(base, ocean, d.remainder_scale_cells, d.remainder_scale_floor)
        if d.remainder_scale_variables is None:
            return s
        on = torch.tensor([v in d.remainder_scale_variables for v in self.cfg.variables], device=s.device)
        return torch.where(on.view(1, -1, 1, 1), s, torch.ones_like(s))

    def set_base_adapter(self, cond_scale, cond_shift, out_scale, out_shift) -> None:
        """The affine maps between this model's normalisation and the regression stage's (see __init__)."""
        for name, value in (("base_cond_scale", cond_scale), ("base_cond_shift", cond_shift),
                            ("base_out_scale", out_scale), ("base_out_shift", out_shift)):
            buf = getattr(self, name)
            buf.copy_(torch.as_tensor(value, dtype=buf.dtype).reshape(buf.shape))

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # checkpoints written before the adapter existed: identity maps (their stages shared the statistics)
        if self.base is not None:
            for name, value in self.named_buffers(recurse=False):
                state_dict.setdefault(prefix + name, value.clone())
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)

    def denoise(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: torch.Tensor,
                labels: torch.Tensor, base: torch.Tensor | None = None) -> torch.Tensor:
        """EDM denoiser D(x; σ) = c_skip x + c_out F(c_in x, c_noise), masked to the ocean. σ scalar or (B,).
        `base`: the regression-stage prediction, extra input when the model has one."""
        b = x.shape[0]
        sigma = torch.as_tensor(sigma, dtype=x.dtype, device=x.device).reshape(-1).expand(b)
        c_skip, c_out, c_in, c_noise = edm_coefficients(sigma, self.cfg.diffusion.sigma_data)
        ocean = self.ocean(cond)
        inputs = [x * c_in[:, None, None, None], cond] + ([base] if base is not None else [])
        f = self.network(torch.cat(inputs, dim=1), c_noise, labels, ocean)
        d = c_skip[:, None, None, None] * x + c_out[:, None, None, None] * f
        return d if ocean is None else d * ocean

    def predict(self, cond: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        """Deterministic kind: the normalised target estimate."""
        return self.network(cond, cond.new_zeros(cond.shape[0]), labels, self.ocean(cond))

    # ----------------------------------------------------------------------------------------------- training
    def loss(self, target: torch.Tensor, cond: torch.Tensor, labels: torch.Tensor | None = None,
             target_mask: torch.Tensor | None = None, generator: torch.Generator | None = None,
             return_stats: bool = False, base: torch.Tensor | None = None, rollout: dict | None = None):
        """Scalar training loss (normalised units), averaged over valid target values only.

        Valid = ocean × target_mask (1 = observed; (B, 1 or C, H, W)) × finite(target). Diffusion: EDM loss
        λ(σ)‖D(y + σn; σ) − y‖² with ln σ ~ N(P_mean, P_std²). Deterministic: MSE.
        return_stats=True → (loss, {"coverage": share of valid target values}).
        base: the regression-stage prediction to learn on top of, instead of this model's own stage (cross-fitted
        stages: `train.cross_fit`).
        rollout (deterministic emulators, `train.rollout_steps`): the following windows of the same trajectories,
        {"target": (B, K−1, C, H, W), "cond": (B, K−1, Cc, H, W), "target_mask": same as target or None}; each step
        starts from the previous step's prediction (`StateFeedback.step`) and the loss is the mean over the K steps,
        back-propagated through the whole rollout.
        """
        labels = self._check(cond, labels, target)
        ocean = self.ocean(cond)
        valid, y = self._valid_target(target, ocean, target_mask)
        if self.kind == "deterministic":
            pred, loss = self._deterministic_loss(cond, labels, y, valid)
            if rollout is not None:
                loss = self._rollout_loss(loss, pred, cond, labels, rollout)
        elif rollout is not None:
            raise ValueError("loss: a multi-step rollout needs the deterministic kind")
        else:
            d = self.cfg.diffusion
            if base is None:
                base = self.base_prediction(cond, labels)
            elif self.base is None:
                raise ValueError("loss: `base` given to a model without a regression stage")
            if base is not None:  # the diffusion learns what the regression stage leaves
                y = (y - base) * valid / self._remainder_scale(base, ocean)
            gdev = generator.device if generator is not None else y.device
            sigma = training_sigmas(y.shape[0], d.P_mean, d.P_std, generator, gdev).to(y.device, y.dtype)
            noise = torch.randn(y.shape, generator=generator, device=gdev).to(y.device, y.dtype)
            x = y + sigma[:, None, None, None] * noise
            if ocean is not None:
                x = x * ocean
            err = (self.denoise(x, sigma, cond, labels, base) - y) ** 2 * self._window_weights(y, valid)
            loss = self._mean(err, valid, loss_weight(sigma, d.sigma_data))
        if return_stats:
            return loss, {"coverage": coverage(valid)}
        return loss

    forward = loss

    def set_normalization(self, normalization) -> None:
        """The training normalisation (corrector.normalization.Normalization), which `loss_bounded` and the
        multi-step loss need to form the physical next state from a normalised prediction
        (`corrector.state_feedback`)."""
        self._feedback = StateFeedback(self.cfg, normalization)

    def _state_feedback(self, why: str) -> StateFeedback:
        if getattr(self, "_feedback", None) is None:
            raise RuntimeError(f"{why}: call set_normalization(normalization) before training")
        return self._feedback

    def bounded(self, pred: torch.Tensor, cond: torch.Tensor) -> torch.Tensor:
        """`pred` (normalised tendencies) with each bounded tendency clamped so that initial + tendency stays in its
        physical range (`cfg.loss_bounded`, after `set_normalization`); `pred` itself otherwise."""
        if not self.cfg.loss_bounded:
            return pred
        return self._state_feedback("loss_bounded").bounded(pred, cond)

    def _rollout_loss(self, loss: torch.Tensor, pred: torch.Tensor, cond: torch.Tensor, labels: torch.Tensor,
                      rollout: dict) -> torch.Tensor:
        """Mean of the first step's `loss` and the losses of the following steps, each started from the previous
        prediction `pred` (see `loss`)."""
        feedback = self._state_feedback("rollout")
        masks = rollout.get("target_mask")
        losses = [loss]
        for k in range(rollout["cond"].shape[1]):
            cond, target = feedback.step(pred, cond, rollout["cond"][:, k], rollout["target"][:, k])
            valid, y = self._valid_target(target, self.ocean(cond), None if masks is None else masks[:, k])
            pred, loss = self._deterministic_loss(cond, labels, y, valid)
            losses.append(loss)
        return torch.stack(losses).mean()

    @staticmethod
    def _valid_target(target: torch.Tensor, ocean: torch.Tensor | None,
                      target_mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """(valid mask, target with 0 where not valid): gaps/NaN never reach the network."""
        valid = valid_mask(target, ocean, target_mask)
        return valid, torch.where(valid > 0, target, torch.zeros_like(target))

    def _deterministic_loss(self, cond: torch.Tensor, labels: torch.Tensor, y: torch.Tensor,
                            valid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, bounded when `loss_bounded`; its masked MSE against `y`) of one deterministic step."""
        pred = self.bounded(self.predict(cond, labels), cond)
        return pred, self._mean((pred - y) ** 2 * self._window_weights(y, valid), valid)

    def _window_weights(self, y: torch.Tensor, valid: torch.Tensor) -> torch.Tensor | float:
        """(B, C, 1, 1) loss weights (1 + f) / (v + f) of `loss_window_floor` f, v = each window's and variable's
        mean square target over valid cells; 1 without the option."""
        f = self.cfg.loss_window_floor
        if f is None:
            return 1.0
        v = (y * y * valid).sum((2, 3), keepdim=True) / valid.sum((2, 3), keepdim=True).clamp_min(1.0)
        return ((1.0 + f) / (v + f)).detach()

    def _mean(self, err: torch.Tensor, valid: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        if self.cfg.loss_balance == "per_variable":
            return variable_balanced_mean(err, valid, weight)
        return masked_mean(err, valid, weight)

    # ----------------------------------------------------------------------------------------------- sampling
    def sample_normalised(self, cond: torch.Tensor, labels: torch.Tensor | None = None,
                          noise: torch.Tensor | None = None, steps: int | None = None,
                          generators: list[torch.Generator] | None = None,
                          sampler: SamplerConfig | None = None) -> torch.Tensor:
        """(B, C, H, W) normalised samples. noise: (B, C, H, W) standard normal, one independent draw per batch item
        (ensemble members are batch items). generators: per-item generators for churn noise (optional).
        steps overrides the sampler config's steps. The deterministic kind ignores noise/steps/generators.
        """
        labels = self._check(cond, labels)
        if self.kind == "deterministic":
            return self.predict(cond, labels)
        sampler = sampler or self.cfg.sampler
        b = cond.shape[0]
        shape = (b, self.n_vars, *cond.shape[-2:])
        if noise is None:
            raise ValueError("sample_normalised: the diffusion kind needs `noise` of shape " + str(shape))
        if tuple(noise.shape) != shape:
            raise ValueError(f"noise: shape {tuple(noise.shape)}, expected {shape}")
        d = self.cfg.diffusion
        sigmas = sampler.schedule(d, steps)
        ocean = self.ocean(cond)
        x = noise.to(cond.dtype) * float(sigmas[0])
        if ocean is not None:
            x = x * ocean

        base = self.base_prediction(cond, labels)

        def den(xx: torch.Tensor, s: float) -> torch.Tensor:
            return self.denoise(xx, s, cond, labels, base)

        out = SAMPLERS[sampler.name](den, x, sigmas, s_churn=sampler.s_churn, s_tmin=sampler.s_tmin,
                                     s_tmax=sampler.s_tmax, s_noise=sampler.s_noise, generators=generators,
                                     mask=ocean)
        k = sampler.spread_inflation
        if k is not None:
            if base is None or len(k) != self.n_vars:
                raise ValueError(f"sampler.spread_inflation {k}: needs a regression stage (base_network) and one "
                                 f"factor per variable {self.cfg.variables}")
            out = out * torch.as_tensor(k, dtype=out.dtype, device=out.device)[None, :, None, None]
        if base is not None:
            out = out * self._remainder_scale(base, ocean) + base
        return out if ocean is None else out * ocean
