"""The GPU worker: a Celery worker process with the inference loop running beside Celery."""
