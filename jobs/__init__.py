"""The shared core that the API, the workers and the webhook worker use: settings, every Redis
key, the job record, the producer and consumer sides of the job store, the model streams,
routing, the worker registry, webhook deliveries, the model repository on disk."""
