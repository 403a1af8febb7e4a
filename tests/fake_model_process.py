"""A model process for the supervisor's tests: worker/child.py's own main, with a stand-in for
the TensorFlow model. Its "model file" is JSON: {"batch_s": seconds each batch takes}."""
import json
import time

import numpy as np


class Predictor:
    """What worker/child.py and worker/loop.py use of worker.predictor.Predictor. Its output
    for an image is the image's mean pixel value."""

    def __init__(self, spec):
        self.spec = spec
        with open(spec.path) as f:
            self.batch_s = json.load(f).get("batch_s", 0.0)
        self.device, self.output_shape = "CPU", [1]

    def warm_up(self):
        pass

    def predict(self, images):
        time.sleep(self.batch_s)  # the model's time on a batch
        return [np.array([im.mean()]) for im in images]

    def result(self, row):
        return {"top_k": [{"label": "mean", "index": 0, "score": float(row[0])}]}

    @staticmethod
    def raw(row):
        return row.tolist()


def main(*args):
    """worker.child.main, serving with the stand-in (spawned: this runs in a fresh process)."""
    import worker.predictor
    from worker import child

    worker.predictor.Predictor = Predictor
    child.main(*args)
