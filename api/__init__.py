"""The HTTP front end: Flask, Redis and Pillow only (never TensorFlow)."""
