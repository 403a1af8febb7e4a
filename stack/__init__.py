"""Start inferq's pieces as local processes (redis-server, the API, workers) for the tests and
the benchmark."""
