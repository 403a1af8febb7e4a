"""The pure micro-batching core: no Redis, no Celery, no TensorFlow."""
from batching.core import BatchPolicy, OutputMismatch, bucket_for, buckets, pad, split

__all__ = ["BatchPolicy", "OutputMismatch", "bucket_for", "buckets", "pad", "split"]
