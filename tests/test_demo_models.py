"""The committed demo models `games` (legacy .h5), `shapes` (.keras: its held-out accuracy and the
example images) and `shapes-sm` (SavedModel). Loads TensorFlow."""
import json
import os
from pathlib import Path

import numpy as np
import pytest

from demo.games import FEATURES, games_rule, random_features

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")

ROOT = Path(__file__).resolve().parent.parent
MODELS = ROOT / "models"
EXAMPLES = {"circle.png": "circle", "square.png": "square", "triangle.png": "triangle",
            "triangle.jpg": "triangle"}
# Held-out images scored by the committed `shapes` model, and the top-1 it must reach.
HELDOUT_N, HELDOUT_SEED, HELDOUT_MIN = 600, 19, 0.97


def _label_of(name: str) -> str:
    """An example's label: the start of its file name (`circle-photo.jpg` is a circle)."""
    return next(label for label in ("circle", "square", "triangle") if name.startswith(label))


def _scale(arrays) -> np.ndarray:
    return np.stack(list(arrays)).astype(np.float32) / 255.0


def test_games_rule():
    rows = np.zeros((5, 10), dtype=np.float32)
    rows[1, [0, 2]] = 1          # g1 and g3
    rows[2, [1, 4, 6]] = 1       # three of g2, g5, g7, g9
    rows[3, [0, 1, 4, 3, 5, 7, 9]] = 1  # g1 without g3, two of the four, distractors
    rows[4, [1, 4, 6, 8]] = 1
    assert games_rule(rows).tolist() == [0, 1, 1, 0, 1]
    assert 0.35 < games_rule(random_features(4000, 0)).mean() < 0.55
    with pytest.raises(ValueError):
        games_rule(np.zeros((3, 9)))


def test_games_h5_loads_without_compiling_and_follows_the_rule():
    path = MODELS / "games" / "1" / "model.h5"
    model = keras.models.load_model(path, compile=False)
    assert model.input_shape == (None, 10) and model.output_shape == (None, 1)
    x = random_features(1000, 2024)
    p = np.asarray(model.predict(x, batch_size=256, verbose=0))[:, 0]
    assert ((p >= 0) & (p <= 1)).all()
    accuracy = ((p >= 0.5) == games_rule(x)).mean()
    assert accuracy >= 0.95, accuracy


def test_games_h5_carries_the_custom_training_metric():
    # The file keeps its compile config, with the unregistered training-only metric `auc`;
    # serving loads with compile=False and never looks at it.
    import h5py

    with h5py.File(MODELS / "games" / "1" / "model.h5", "r") as f:
        training = json.loads(f.attrs["training_config"])
    assert "auc" in training["metrics"]


def test_games_config():
    config = json.loads((MODELS / "games" / "config.json").read_text())
    assert config == {"input": {"kind": "tensor", "dtype": "float32", "shape": [10],
                                "names": FEATURES}, "max_batch_size": 64}


def test_shapes_savedmodel_signature_matches_the_keras_model():
    from worker.preprocess import decode_image

    config = json.loads((MODELS / "shapes-sm" / "config.json").read_text())
    assert config == json.loads((MODELS / "shapes" / "config.json").read_text())
    x = np.stack([decode_image((ROOT / "examples" / name).read_bytes(), (64, 64), "rgb")
                  for name in EXAMPLES]).astype(np.float32) / 255.0

    sig = tf.saved_model.load(str(MODELS / "shapes-sm" / "1")).signatures["serving_default"]
    args, kwargs = sig.structured_input_signature
    assert args == () and list(kwargs) == ["image"]
    assert kwargs["image"].dtype == tf.float32
    assert kwargs["image"].shape.as_list() == [None, 64, 64, 3]
    assert list(sig.structured_outputs) == ["output_0"]
    assert sig.structured_outputs["output_0"].shape.as_list() == [None, 3]
    served = sig(image=tf.constant(x))["output_0"].numpy()

    reference = keras.models.load_model(MODELS / "shapes" / "1" / "model.keras", compile=False)
    expected = np.asarray(reference(x, training=False))
    assert np.abs(served - expected).max() < 1e-5
    assert [config["labels"][i] for i in served.argmax(axis=1)] == list(EXAMPLES.values())


@pytest.fixture(scope="module")
def shapes_model():
    return keras.models.load_model(MODELS / "shapes" / "1" / "model.keras", compile=False)


def test_shapes_scores_on_an_independent_held_out_set(shapes_model):
    """demo/heldout.py draws other shapes than training saw (its own code and ranges); they
    go through the serving decode path, as the worker does, then the model."""
    from demo.heldout import heldout_set
    from worker.preprocess import decode_image

    images = heldout_set(HELDOUT_N, HELDOUT_SEED)
    x = _scale(decode_image(data, (64, 64), "rgb") for _, data in images)
    y = np.array([["circle", "square", "triangle"].index(label) for label, _ in images])
    predicted = np.asarray(shapes_model.predict(x, batch_size=128, verbose=0)).argmax(axis=1)
    accuracy = float((predicted == y).mean())
    confusion = np.zeros((3, 3), dtype=int)
    np.add.at(confusion, (y, predicted), 1)
    print(f"\nshapes: held-out top-1 {accuracy:.1%} on {HELDOUT_N} images "
          f"(rows true, columns predicted: circle, square, triangle)\n{confusion}")
    assert accuracy >= HELDOUT_MIN, confusion


def test_every_example_image_is_classified_correctly(shapes_model):
    from worker.preprocess import decode_image

    names = sorted(p.name for p in (ROOT / "examples").iterdir()
                   if p.suffix in (".png", ".jpg", ".jpeg"))
    assert set(EXAMPLES) < set(names) and len(names) >= 7
    x = _scale(decode_image((ROOT / "examples" / name).read_bytes(), (64, 64), "rgb")
               for name in names)
    probs = np.asarray(shapes_model(x, training=False))
    labels = ["circle", "square", "triangle"]
    got = {name: labels[int(i)] for name, i in zip(names, probs.argmax(axis=1))}
    assert got == {name: _label_of(name) for name in names}
    assert probs.max(axis=1).min() > 0.8  # clearly, not by a hair


def test_speed_measures_the_model(shapes_model):
    from demo.speed import images_per_second

    assert images_per_second(shapes_model, batch_size=32, seconds=0.3, rounds=3) > 100
