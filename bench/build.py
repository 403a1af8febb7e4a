"""Build the bench model repository: MobileNetV2 with random weights (its size and compute are what
matter; weights cannot be downloaded here) and a null model that answers at once.

python -m bench.build --repo DIR --model NAME --alpha A --size S
Prints one JSON line: what it built or found already built."""
import argparse
import json
import os
import time
from pathlib import Path

from bench.common import MAX_BATCH_SIZE, NULL_MODEL

LABELS = [f"class_{i}" for i in range(1000)]


def write_config(model_dir: Path, config: dict):
    model_dir.mkdir(parents=True, exist_ok=True)
    (model_dir / "config.json").write_text(json.dumps(config))


def build(repo: Path, name: str, alpha: float, size: int) -> dict:
    """`name` "": the null model only (bench.scale needs no other)."""
    stamp = {"alpha": alpha, "size": size, "max_batch_size": MAX_BATCH_SIZE, "v": 1}
    model_file = repo / (name or NULL_MODEL) / "1" / "model.keras"
    stamp_file = repo / name / "1" / "bench-stamp.json"
    null_file = repo / NULL_MODEL / "1" / "model.keras"
    built = []
    t0 = time.perf_counter()
    wanted = not name or (model_file.exists() and stamp_file.exists()
                          and json.loads(stamp_file.read_text()) == stamp)
    if not wanted or not null_file.exists():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
        import keras

        keras.utils.set_random_seed(0)
        if not wanted:
            model = keras.applications.MobileNetV2(weights=None, alpha=alpha,
                                                   input_shape=(size, size, 3))
            model_file.parent.mkdir(parents=True, exist_ok=True)
            model.save(model_file)
            stamp_file.write_text(json.dumps(stamp))
            built.append(name)
        if not null_file.exists():
            inp = keras.Input((8, 8, 3))
            out = keras.layers.Dense(10, activation="softmax")(
                keras.layers.GlobalAveragePooling2D()(inp))
            null_file.parent.mkdir(parents=True, exist_ok=True)
            keras.Model(inp, out).save(null_file)
            built.append(NULL_MODEL)
    if name:
        write_config(repo / name, {
            "input": {"kind": "image", "size": [size, size], "channels": 3,
                      "color_mode": "rgb", "preprocessing": "tf"},
            "labels": LABELS, "top_k": 5, "max_batch_size": MAX_BATCH_SIZE})
    write_config(repo / NULL_MODEL, {
        "input": {"kind": "image", "size": [8, 8], "channels": 3, "color_mode": "rgb",
                  "preprocessing": "scale_0_1"},
        "top_k": 5, "max_batch_size": MAX_BATCH_SIZE})
    return {"repo": str(repo), "model": name, "built": built,
            "model_mb": round(model_file.stat().st_size / 2 ** 20, 1),
            "seconds": round(time.perf_counter() - t0, 1)}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repo", required=True)
    ap.add_argument("--model", required=True, help='"": the null model only')
    ap.add_argument("--alpha", type=float, default=1.0)
    ap.add_argument("--size", type=int, default=224)
    a = ap.parse_args()
    print(json.dumps(build(Path(a.repo), a.model, a.alpha, a.size)))


if __name__ == "__main__":
    main()
