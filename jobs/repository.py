"""The model repository on disk: `<repo>/<name>/<int version>/` with `config.json` beside the
versions (a version may hold its own `config.json` that overrides keys). Reading it needs no
TensorFlow, so the API can list models too."""
import json
import os
import re
from dataclasses import dataclass, field

MODEL_FILES = ("model.keras", "model.h5", "saved_model.pb")
PREPROCESSING = ("scale_0_1", "tf", "caffe", "torch", "none")
COLOR_MODES = {"rgb": 3, "grayscale": 1}
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class ModelConfigError(ValueError):
    """A model's directory or config cannot be served; the message says why."""


@dataclass(frozen=True)
class ModelSpec:
    name: str
    version: int
    path: str  # the model file, or the SavedModel directory
    size: tuple[int, int]  # width, height
    color_mode: str = "rgb"
    preprocessing: str = "scale_0_1"
    labels: list[str] = field(default_factory=list)
    top_k: int = 5
    max_batch_size: int = 32
    custom_objects: str = ""  # "module:attribute", a dict of custom layers/functions

    @property
    def channels(self) -> int:
        return COLOR_MODES[self.color_mode]


def model_names(repository: str) -> list[str]:
    """Names of the model directories that hold at least one integer version."""
    try:
        entries = sorted(os.scandir(repository), key=lambda e: e.name)
    except FileNotFoundError:
        return []
    return [e.name for e in entries if e.is_dir() and NAME_RE.match(e.name) and _versions(e.path)]


def _versions(model_dir: str) -> list[int]:
    try:
        return sorted(int(e.name) for e in os.scandir(model_dir) if e.is_dir() and e.name.isdigit())
    except FileNotFoundError:
        return []


def load_spec(repository: str, name: str, default_max_batch_size: int = 32) -> ModelSpec:
    """The spec of the highest version of model `name`."""
    model_dir = os.path.join(repository, name)
    versions = _versions(model_dir)
    if not versions:
        raise ModelConfigError(f"model {name!r}: no integer version directory in {model_dir}")
    version = versions[-1]
    version_dir = os.path.join(model_dir, str(version))
    config = _read_json(os.path.join(model_dir, "config.json"))
    config.update(_read_json(os.path.join(version_dir, "config.json")))
    return _spec(name, version, _model_path(version_dir), config, default_max_batch_size)


def _read_json(path: str) -> dict:
    try:
        with open(path) as f:
            value = json.load(f)
    except FileNotFoundError:
        return {}
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelConfigError(f"{path}: {exc}") from exc
    if not isinstance(value, dict):
        raise ModelConfigError(f"{path}: must hold a JSON object")
    return value


def _model_path(version_dir: str) -> str:
    for filename in MODEL_FILES:
        path = os.path.join(version_dir, filename)
        if os.path.exists(path):
            return version_dir if filename == "saved_model.pb" else path
    raise ModelConfigError(f"{version_dir}: holds none of {', '.join(MODEL_FILES)}")


def _spec(name, version, path, config, default_max_batch_size) -> ModelSpec:
    inp = config.get("input", {})
    if inp.get("kind", "image") != "image":
        raise ModelConfigError(f"model {name!r}: input kind {inp.get('kind')!r} is not served yet")
    size = inp.get("size")
    if not (isinstance(size, list) and len(size) == 2 and all(isinstance(s, int) and s > 0
                                                              for s in size)):
        raise ModelConfigError(f"model {name!r}: input.size must be [width, height], got {size!r}")
    color_mode = inp.get("color_mode", "rgb")
    if color_mode not in COLOR_MODES:
        raise ModelConfigError(f"model {name!r}: input.color_mode must be one of "
                               f"{sorted(COLOR_MODES)}, got {color_mode!r}")
    preprocessing = inp.get("preprocessing", "scale_0_1")
    if preprocessing not in PREPROCESSING:
        raise ModelConfigError(f"model {name!r}: input.preprocessing must be one of "
                               f"{PREPROCESSING}, got {preprocessing!r}")
    labels = config.get("labels", [])
    if not (isinstance(labels, list) and all(isinstance(x, str) for x in labels)):
        raise ModelConfigError(f"model {name!r}: labels must be a list of strings")
    top_k, max_bs = config.get("top_k", 5), config.get("max_batch_size", default_max_batch_size)
    for key, value in (("top_k", top_k), ("max_batch_size", max_bs)):
        if not (isinstance(value, int) and value > 0):
            raise ModelConfigError(f"model {name!r}: {key} must be a positive integer")
    return ModelSpec(name=name, version=version, path=path, size=(size[0], size[1]),
                     color_mode=color_mode, preprocessing=preprocessing, labels=labels,
                     top_k=top_k, max_batch_size=max_bs,
                     custom_objects=config.get("custom_objects", ""))
