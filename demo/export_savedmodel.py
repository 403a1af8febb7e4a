"""Export a Keras model as a TensorFlow SavedModel, to serve through its signature without Keras.

    python -m demo.export_savedmodel --src models/shapes/1/model.keras --out models/shapes-sm/1

The model is loaded with compile=False and exported with Keras 3's export machinery: a SavedModel
whose `serving_default` signature takes the model's input (for `shapes`: `image`, float32
(None, 64, 64, 3) in [0, 1]) and returns its output (`output_0`, float32 (None, 3)).

By default the export goes through `keras.export.ExportArchive` with one endpoint and no
`track(model)`: this is what `model.export(out)` does, except that `model.export` also tracks the
model, and in Keras 3.15 (TF backend) that writes every weight into the checkpoint twice (once
for the Keras variables, once for the tf.Variables the endpoint captures; 490 KB instead of
245 KB for `shapes`). The signatures and outputs are the same; `--method export` uses
`model.export` as it is.

The source model's `config.json` (the directory above the version) is copied beside the new
version unchanged, unless --no-config. The export is checked before the script returns: the
reloaded signature must reproduce the Keras model's outputs on a random batch (--atol).

Run again, it checks the export already at --out the same way and leaves it in place when it
reproduces the model (the repository ships `models/shapes-sm/1`); an --out that is something
else is refused. --overwrite exports again in any case.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys


def dir_size(path: str) -> int:
    return sum(os.path.getsize(os.path.join(root, name))
               for root, _, names in os.walk(path) for name in names)


def export_savedmodel(model, out: str) -> None:
    """`model.export(out)` without tracking the model: each weight is written once."""
    import keras
    import tensorflow as tf

    specs = [tf.TensorSpec(t.shape, t.dtype, name=t.name) for t in model.inputs]
    archive = keras.export.ExportArchive()
    # The endpoint's variables are tracked automatically (see ExportArchive's docstring).
    # One positional argument: the tensor, or the list of tensors of a multi-input model.
    archive.add_endpoint("serve", model.__call__, [specs if len(specs) > 1 else specs[0]])
    archive.write_out(out, verbose=False)


def compare(model, out: str):
    """The SavedModel at `out`'s serving signature, and its largest difference from `model`
    on a random batch. Raises if `out` is not a SavedModel that takes the model's input."""
    import numpy as np
    import tensorflow as tf

    sig = tf.saved_model.load(out).signatures["serving_default"]
    (input_name, spec), = sig.structured_input_signature[1].items()
    shape = [2 if d is None else d for d in spec.shape]
    x = np.random.default_rng(0).random(shape, dtype=np.float32)
    got = {k: v.numpy() for k, v in sig(**{input_name: tf.constant(x)}).items()}
    want = np.asarray(model(x, training=False))
    (_, y), = got.items()
    return sig, float(np.abs(y - want).max())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", default="models/shapes/1/model.keras")
    parser.add_argument("--out", default="models/shapes-sm/1")
    parser.add_argument("--no-config", action="store_true",
                        help="do not copy <src model dir>/config.json beside the export")
    parser.add_argument("--overwrite", action="store_true",
                        help="export again, replacing whatever --out holds")
    parser.add_argument("--atol", type=float, default=1e-5)
    parser.add_argument("--method", choices=("archive", "export"), default="archive",
                        help="ExportArchive without track() (default) or plain model.export()")
    args = parser.parse_args(argv)

    out = os.path.normpath(args.out)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = keras.models.load_model(args.src, compile=False)
    if os.path.exists(out) and not args.overwrite:
        try:
            _, diff = compare(model, out)
        except Exception as exc:  # not a SavedModel, or one of another model
            diff, why = None, f"{type(exc).__name__}: {str(exc).strip().splitlines()[0][:200]}"
        if diff is not None and diff <= args.atol:
            print(f"{out} is already an export of {args.src} (max abs diff {diff:.2e} on a "
                  "random batch): left in place; --overwrite exports it again")
            return 0
        if diff is not None:
            why = f"max abs diff {diff:.2e} > {args.atol}"
        parser.error(f"{out} exists and is not an export of {args.src} ({why}): choose "
                     "another --out, or --overwrite to replace it")
    if os.path.exists(out):
        shutil.rmtree(out)

    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    if args.method == "export":
        model.export(out, format="tf_saved_model", verbose=False)
    else:
        export_savedmodel(model, out)

    # Check: the reloaded serving signature reproduces the Keras model.
    sig, diff = compare(model, out)
    (input_name, spec), = sig.structured_input_signature[1].items()
    print(f"exported {args.src} -> {out} ({dir_size(out)} bytes)")
    print(f"serving_default: {input_name} {spec.dtype.name} {spec.shape.as_list()} -> "
          + ", ".join(f"{k} {v.dtype.name} {v.shape.as_list()}"
                      for k, v in sig.structured_outputs.items()))
    print(f"max abs diff vs keras on a random batch: {diff:.2e}")

    if not args.no_config:
        src_config = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(args.src))),
                                  "config.json")
        if os.path.exists(src_config):
            dst_config = os.path.join(os.path.dirname(os.path.abspath(out)), "config.json")
            shutil.copyfile(src_config, dst_config)
            print(f"copied {os.path.relpath(src_config)} -> {os.path.relpath(dst_config)}")
    if diff > args.atol:
        print(f"FAIL: max abs diff {diff:.2e} > {args.atol}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
