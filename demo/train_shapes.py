"""Train the `shapes` demo model: a small CNN that tells circles, squares and triangles apart.

    python -m demo.train_shapes [--out models/shapes/1/model.keras] [--samples N] [--epochs E]

Training images come from demo/varied.py (filled and outlined shapes, rotated, stretched, 10-90 %
of the side, on plain, gradient and textured backgrounds, blurred, noisy, low contrast; what
each label covers is in its docstring), with some of demo/shapes.py's plain filled shapes. They
go through exactly the serving path: each picture is encoded as PNG or JPEG bytes (random side
64..160 px, JPEG quality 30..95), decoded by `worker.preprocess.decode_image` to 64x64x3 uint8,
then scaled to [0, 1] as the worker does in-graph (uint8 / 255). Each epoch sees every image
turned by a random multiple of 90 degrees and maybe mirrored (no label changes under either).
The model takes float32 (64, 64, 3) in [0, 1] and returns softmax probabilities over
`demo.shapes.LABELS`.

At the end it scores a validation set (the training distribution, another seed) and the
independent held-out set of demo/heldout.py (another generator, as tests/test_demo_models.py
does); the script exits non-zero when the held-out accuracy is below --min-accuracy.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor

import numpy as np

from demo.shapes import LABELS
from demo.varied import varied_examples
from worker.preprocess import decode_image

INPUT_SIZE = (64, 64)
CHUNK = 500
# Filters of the four convolutions (the first one strided).
FILTERS = (24, 32, 64, 96)


def _chunk(args: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    n, seed = args
    examples = varied_examples(n, seed)
    x = np.stack([decode_image(data, INPUT_SIZE, "rgb") for _, data in examples])
    y = np.array([LABELS.index(label) for label, _ in examples], dtype=np.int64)
    return x, y


def make_dataset(n: int, seed: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """`n` images through the serving decode path: (n, 64, 64, 3) uint8, labels (n,)."""
    jobs = []
    for i, start in enumerate(range(0, n, CHUNK)):
        # Each chunk has its own seed stream derived from (seed, chunk index).
        chunk_seed = int(np.random.SeedSequence([seed, i]).generate_state(1)[0])
        jobs.append((min(CHUNK, n - start), chunk_seed))
    if workers > 1 and len(jobs) > 1:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            parts = list(pool.map(_chunk, jobs))
    else:
        parts = [_chunk(job) for job in jobs]
    x = np.concatenate([p[0] for p in parts])
    y = np.concatenate([p[1] for p in parts])
    return x, y


def heldout_dataset(n: int) -> tuple[np.ndarray, np.ndarray]:
    """demo/heldout.py's first `n` images (the test's seed), decoded: uint8 images, labels."""
    from demo.heldout import heldout_set

    images = heldout_set(n)
    x = np.stack([decode_image(data, INPUT_SIZE, "rgb") for _, data in images])
    return x, np.array([LABELS.index(label) for label, _ in images], dtype=np.int64)


def training_batches(x: np.ndarray, y: np.ndarray, batch_size: int, seed: int):
    """A tf.data pipeline of shuffled batches, each image turned by k * 90 degrees and maybe
    mirrored, scaled to [0, 1] as the worker scales it."""
    import tensorflow as tf

    def augment(images, labels):
        k = tf.random.uniform([], 0, 4, dtype=tf.int32, seed=seed)
        images = tf.image.rot90(images, k)
        images = tf.image.random_flip_left_right(images, seed=seed)
        return tf.cast(images, tf.float32) / 255.0, labels

    return (tf.data.Dataset.from_tensor_slices((x, y))
            .shuffle(len(x), seed=seed, reshuffle_each_iteration=True)
            .batch(batch_size)
            .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
            .prefetch(tf.data.AUTOTUNE))


def accuracy_of(model, x: np.ndarray, y: np.ndarray) -> tuple[float, np.ndarray]:
    """Top-1 accuracy on uint8 images, and the confusion matrix (rows true, columns predicted)."""
    probs = np.asarray(model.predict(x.astype(np.float32) / 255.0, batch_size=256, verbose=0))
    confusion = np.zeros((len(LABELS), len(LABELS)), dtype=np.int64)
    np.add.at(confusion, (y, probs.argmax(axis=1)), 1)
    return float((probs.argmax(axis=1) == y).mean()), confusion


def build_model():
    """Conv(FILTERS[0], stride 2) -> 3 x [pool, Conv] -> GAP -> softmax (3x3 convolutions).

    The strided first convolution keeps the CPU cost low (it still sees every pixel, so shapes
    a tenth of the side survive); its width and the last convolution's were raised from the
    first model's (16, 32, 64, 64) for outlines, small and blurred shapes, within 1.5 times its
    cost per image (`python -m demo.speed`). Batch normalisation (with a short memory, so its
    inference statistics keep up) makes it converge in a few epochs.
    """
    import keras
    from keras import layers

    inputs = keras.Input(shape=(*INPUT_SIZE, 3), dtype="float32", name="image")
    x = inputs
    for i, filters in enumerate(FILTERS):
        if i:
            x = layers.MaxPooling2D()(x)
        x = layers.Conv2D(filters, 3, strides=2 if i == 0 else 1, padding="same", use_bias=False)(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.ReLU()(x)
    x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(len(LABELS), activation="softmax", name="probs")(x)
    return keras.Model(inputs, outputs, name="shapes")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="models/shapes/1/model.keras")
    parser.add_argument("--samples", type=int, default=20000, help="training images")
    parser.add_argument("--holdout", type=int, default=900, help="validation and held-out images, each (>= 600)")
    parser.add_argument("--epochs", type=int, default=18)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seed", type=int, default=1234)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                        help="processes generating the images")
    parser.add_argument("--min-accuracy", type=float, default=0.97)
    args = parser.parse_args(argv)
    if args.holdout < 600:
        parser.error("--holdout must be at least 600")

    started = time.perf_counter()
    x_train, y_train = make_dataset(args.samples, args.seed, args.workers)
    # The validation set comes from a different seed stream than the training set.
    x_val, y_val = make_dataset(args.holdout, args.seed + 1_000_003, args.workers)
    x_test, y_test = heldout_dataset(args.holdout)
    data_s = time.perf_counter() - started
    print(f"generated {len(x_train)} training, {len(x_val)} validation and {len(x_test)} "
          f"held-out images in {data_s:.1f} s", flush=True)

    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    keras.utils.set_random_seed(args.seed)
    model = build_model()
    model.summary()
    steps = args.epochs * int(np.ceil(len(x_train) / args.batch_size))
    schedule = keras.optimizers.schedules.CosineDecay(3e-3, decay_steps=steps, alpha=0.02)
    model.compile(optimizer=keras.optimizers.Adam(schedule),
                  loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    fit_started = time.perf_counter()
    # The dataset shuffles itself (each epoch anew).
    model.fit(training_batches(x_train, y_train, args.batch_size, args.seed), epochs=args.epochs,
              shuffle=False, verbose=2)
    fit_s = time.perf_counter() - fit_started

    val_accuracy, _ = accuracy_of(model, x_val, y_val)
    accuracy, confusion = accuracy_of(model, x_test, y_test)

    # Save a fresh copy holding only the weights: no optimizer state (a third of the size), and
    # nothing the serving side needs to compile.
    serving = build_model()
    serving.set_weights(model.get_weights())
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    serving.save(args.out)
    total_s = time.perf_counter() - started
    print(f"parameters: {model.count_params()}")
    print(f"confusion (rows true, cols predicted; {LABELS}):\n{confusion}")
    print(f"saved {args.out} ({os.path.getsize(args.out)} bytes)")
    print(f"time: data {data_s:.1f} s, fit {fit_s:.1f} s, total {total_s:.1f} s")
    print(f"validation accuracy (demo/varied.py): {val_accuracy:.4f} on {len(y_val)} images")
    print(f"held-out accuracy (demo/heldout.py): {accuracy:.4f} on {len(y_test)} images")
    if accuracy < args.min_accuracy:
        print(f"FAIL: held-out accuracy {accuracy:.4f} < {args.min_accuracy}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
