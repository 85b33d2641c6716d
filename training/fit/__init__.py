"""Fitting a corrector: pair dataset, training loop, optimiser/EMA/schedule, exact resume, configs."""
