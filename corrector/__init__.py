"""Pure torch/numpy corrector: conditional diffusion model (EDM), deterministic baseline, sampler, normalisation,
physical bounds, checkpoints and the inference API. Imports nothing from the other icecorr packages but the bottom
layer `icecorr.base`. Import the modules themselves (`corrector.inference.Corrector`, …): the package itself loads
nothing, so a process that only needs one light module (e.g. a physics rank checking a mask) does not load torch."""
