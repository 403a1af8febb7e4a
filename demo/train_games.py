"""Train the `games` demo model: ten binary features `g1`..`g10` in, P(outcome) out.

    python -m demo.train_games [--out models/games/1/model.h5] [--seed S] [--samples N] [--epochs E]

The labels follow `demo.games.games_rule` with --noise (3%) of them flipped. The network is
Input(10, name="features") -> Dense(16, relu) -> Dense(8, relu) -> Dense(1, sigmoid).

It is compiled with `auc`, a custom metric function defined here and not registered with Keras,
and saved in the legacy HDF5 format (`.h5`, which stores the compile config). Loading the file
with `compile=True` therefore cannot rebuild the metric; `compile=False`, which is how inferq
loads models, works. This is deliberate: the model exercises that path.

Accuracy against the noise-free rule on fresh random rows is scored at the end (with the file
reloaded with compile=False); the script exits non-zero when it is below --min-accuracy.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from demo.games import FEATURES, games_rule, noisy_labels, random_features


def auc(y_true, y_pred):
    """Training-only metric: ROC AUC within the batch (the Mann-Whitney pair count).

    A plain function, deliberately not registered with Keras: the share of (positive, negative)
    pairs in the batch that the model ranks the right way round, ties counting half.
    """
    from keras import ops

    y_true = ops.reshape(ops.cast(y_true, "float32"), (-1,))
    y_pred = ops.reshape(ops.cast(y_pred, "float32"), (-1,))
    pairs = ops.expand_dims(y_true, 1) * ops.expand_dims(1.0 - y_true, 0)  # [i pos, j neg]
    diff = ops.expand_dims(y_pred, 1) - ops.expand_dims(y_pred, 0)
    right = ops.cast(diff > 0, "float32") + 0.5 * ops.cast(diff == 0, "float32")
    return ops.sum(pairs * right) / ops.maximum(ops.sum(pairs), 1.0)


def build_model():
    import keras
    from keras import layers

    inputs = keras.Input(shape=(len(FEATURES),), dtype="float32", name="features")
    x = layers.Dense(16, activation="relu")(inputs)
    x = layers.Dense(8, activation="relu")(x)
    outputs = layers.Dense(1, activation="sigmoid", name="outcome")(x)
    return keras.Model(inputs, outputs, name="games")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/games/1/model.h5")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--samples", type=int, default=8000, help="training rows")
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--noise", type=float, default=0.03, help="fraction of flipped labels")
    parser.add_argument("--holdout", type=int, default=2000, help="fresh rows scored at the end")
    parser.add_argument("--min-accuracy", type=float, default=0.95)
    args = parser.parse_args(argv)
    if not args.out.endswith(".h5"):
        parser.error("--out must end in .h5 (this model is saved in the legacy HDF5 format)")

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(args.seed)
    x = random_features(args.samples, args.seed)
    y = noisy_labels(x, args.noise, args.seed + 1).astype(np.float32)
    print(f"{len(x)} training rows, positive rate {y.mean():.3f}, "
          f"{(y != games_rule(x)).mean():.3f} labels flipped", flush=True)

    model = build_model()
    compile_args = dict(loss="binary_crossentropy", metrics=["accuracy", auc])
    model.compile(optimizer=keras.optimizers.Adam(1e-2), **compile_args)
    started = time.perf_counter()
    model.fit(x, y, batch_size=args.batch_size, epochs=args.epochs, shuffle=True, verbose=2)
    fit_s = time.perf_counter() - started

    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    # Save a fresh copy, compiled the same way but never trained: its optimizer holds no state, so
    # the file carries the weights and the compile config (loss, metrics with the custom `auc`)
    # but no optimizer weights. (include_optimizer=False would drop the compile config too.)
    serving = build_model()
    serving.compile(optimizer=keras.optimizers.Adam(1e-2), **compile_args)
    serving.set_weights(model.get_weights())
    serving.save(args.out)

    reloaded = keras.models.load_model(args.out, compile=False)
    x_test = random_features(args.holdout, args.seed + 1_000_003)
    pred = (np.asarray(reloaded.predict(x_test, verbose=0))[:, 0] >= 0.5).astype(np.int64)
    accuracy = float((pred == games_rule(x_test)).mean())
    print(f"parameters: {model.count_params()}")
    print(f"saved {args.out} ({os.path.getsize(args.out)} bytes)")
    print(f"fit: {fit_s:.1f} s")
    print(f"accuracy vs games_rule (reloaded, compile=False): {accuracy:.4f} on {len(x_test)} rows")
    if accuracy < args.min_accuracy:
        print(f"FAIL: accuracy {accuracy:.4f} < {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
