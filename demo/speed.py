"""In-process inference speed of a Keras image model: images/s at a fixed batch size on this CPU.

    python -m demo.speed [--model models/shapes/1/model.keras] [--batch-size 32] [--seconds 5]

The model runs as the worker runs it: one compiled function (tf.function) over float32 batches,
warmed before timing. The figure is the median of several timed rounds, so another process
taking a core for a moment moves it less. Compare two models only within one run of this
command (or runs back to back on the same, otherwise idle, machine).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time


def images_per_second(model, batch_size: int = 32, seconds: float = 5.0, rounds: int = 7) -> float:
    """Median images/s of `rounds` timed rounds of about `seconds` / `rounds` each."""
    import numpy as np
    import tensorflow as tf

    shape = (batch_size, *model.input_shape[1:])
    x = tf.constant(np.random.default_rng(0).random(shape, dtype=np.float32))
    fn = tf.function(lambda t: model(t, training=False))
    for _ in range(5):
        fn(x).numpy()
    # Calls per round, from one timed call, so each round lasts about seconds / rounds.
    t0 = time.perf_counter()
    fn(x).numpy()
    calls = max(1, int(seconds / rounds / max(time.perf_counter() - t0, 1e-6)))
    rates = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn(x).numpy()
        rates.append(calls * batch_size / (time.perf_counter() - t0))
    return statistics.median(rates)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", nargs="+", default=["models/shapes/1/model.keras"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="timed seconds per model")
    args = parser.parse_args(argv)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    for path in args.model:
        model = keras.models.load_model(path, compile=False)
        rate = images_per_second(model, args.batch_size, args.seconds)
        print(f"{path}: {rate:.0f} images/s at batch {args.batch_size} "
              f"({1e6 / rate:.0f} us per image, {model.count_params()} parameters)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
