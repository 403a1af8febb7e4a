"""The pattern inferq replaces: a Flask app that decodes the upload and calls `model.predict` once
per request (the common tutorial). Run under the API's own gunicorn settings:

BENCH_NAIVE_MODEL=<model.keras> BENCH_NAIVE_SIZE=224 INFERQ_API_PORT=P \
    gunicorn -c api/gunicorn_conf.py "bench.naive_app:create_app()"

gunicorn loads the app in each worker process after the fork, so each has its own model."""
import os

import numpy as np
from flask import Flask, jsonify, request
from PIL import Image


def create_app() -> Flask:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import keras

    model = keras.models.load_model(os.environ["BENCH_NAIVE_MODEL"], compile=False)
    size = int(os.environ.get("BENCH_NAIVE_SIZE", "224"))
    app = Flask("naive")

    @app.post("/predict")
    def predict():
        image = Image.open(request.files["image"].stream).convert("RGB").resize((size, size))
        x = np.asarray(image, dtype=np.float32)[None] / 127.5 - 1.0
        scores = model.predict(x, verbose=0)[0]
        best = np.argsort(-scores)[:5]
        return jsonify({"top_k": [{"label": f"class_{i}", "index": int(i),
                                   "score": float(scores[i])} for i in best]})

    @app.get("/healthz")
    def healthz():
        return jsonify({"status": "ok"})

    return app
