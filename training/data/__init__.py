"""Training data: synthetic forcing, twin-experiment generation, pair files, `prepare` from user files, observations, coarse-graining, drift windows."""
