"""The input layer: the user's files (reference states, forcing, their own model's forecasts, observations) read
through a mapping (names, units, dimensions, grid positions, masks) into the model's conventions, with one clear
error per problem. Used by `prepare`, `observations`, `correct` and `evaluate`; sits on `icecorr.base` only."""
