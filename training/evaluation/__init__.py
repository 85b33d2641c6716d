"""Evaluation: alignment of runs with a reference, scores, field statistics (spectra, deformation), plots, report, calibration, offline skill, long runs."""
