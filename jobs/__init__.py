"""What the API and the worker share: settings, Redis keys, the job store and the streams, and
how a JPEG's header is walked."""
