"""The synthetic rule behind the `games` demo model. NumPy only (no TF), so tests can use it.

Ten binary features `g1`..`g10` describe a game; the outcome is 1 when

    (g1 and g3) or (g2 + g5 + g7 + g9 >= 3)

g4, g6, g8 and g10 are distractors. With uniform random features the outcome is 1 for about
44% of rows. `demo.train_games` trains on this rule with a few percent of the labels flipped.
"""
from __future__ import annotations

import numpy as np

FEATURES = [f"g{i}" for i in range(1, 11)]


def games_rule(features: np.ndarray) -> np.ndarray:
    """Outcome (0/1 int64, shape (n,)) for `features` of shape (n, 10) with values 0/1."""
    g = np.asarray(features)
    if g.ndim != 2 or g.shape[1] != len(FEATURES):
        raise ValueError(f"expected shape (n, {len(FEATURES)}), got {g.shape}")
    g = g > 0.5
    both = g[:, 0] & g[:, 2]
    majority = g[:, [1, 4, 6, 8]].sum(axis=1) >= 3
    return (both | majority).astype(np.int64)


def random_features(n: int, seed: int | None = None) -> np.ndarray:
    """`n` rows of uniform random binary features, float32 of shape (n, 10)."""
    rng = np.random.default_rng(seed)
    return rng.integers(0, 2, size=(n, len(FEATURES))).astype(np.float32)


def noisy_labels(features: np.ndarray, noise: float, seed: int | None = None) -> np.ndarray:
    """`games_rule(features)` with a fraction `noise` of the labels flipped at random."""
    y = games_rule(features)
    flip = np.random.default_rng(seed).random(len(y)) < noise
    return np.where(flip, 1 - y, y)
