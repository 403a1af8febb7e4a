import pytest

from jobs.settings import SettingsError, load_settings


def test_defaults_run_locally():
    s = load_settings({})
    assert s.redis_url == "redis://127.0.0.1:6379/0"
    assert s.api_port == 8000 and s.max_wait_s == 0.0 and s.model_names == []


def test_environment_variables_are_read_and_typed():
    s = load_settings({"INFERQ_MAX_BATCH_SIZE": "16", "INFERQ_MAX_WAIT_S": "0.005",
                       "INFERQ_MODELS": "shapes, other", "INFERQ_MAX_BODY_BYTES": "1_000_000"})
    assert s.max_batch_size == 16 and s.max_wait_s == 0.005
    assert s.model_names == ["shapes", "other"] and s.max_body_bytes == 1_000_000


@pytest.mark.parametrize("env,message", [
    ({"INFERQ_MAX_BATCH_SIZE": "many"}, "INFERQ_MAX_BATCH_SIZE must be a whole number"),
    ({"INFERQ_MAX_BATCH_SIZE": "0"}, "INFERQ_MAX_BATCH_SIZE must be greater than 0"),
    ({"INFERQ_MAX_WAIT_S": "-1"}, "INFERQ_MAX_WAIT_S must be 0 or more"),
    ({"INFERQ_REDIS_URL": "localhost:6379"}, "INFERQ_REDIS_URL must be a redis://"),
    ({"INFERQ_REDIS_SENTINELS": "s1:26379,s2", "INFERQ_REDIS_MASTER": "m"},
     "INFERQ_REDIS_SENTINELS must be host:port of each sentinel"),
    ({"INFERQ_REDIS_SENTINELS": "s1:99999", "INFERQ_REDIS_MASTER": "m"},
     "INFERQ_REDIS_SENTINELS must be host:port"),
    ({"INFERQ_REDIS_SENTINELS": "s1:26379"}, "INFERQ_REDIS_MASTER must name the master"),
    ({"INFERQ_REDIS_MASTER": "m"}, "INFERQ_REDIS_MASTER needs INFERQ_REDIS_SENTINELS"),
    ({"INFERQ_REDIS_SENTINELS": "s1:26379", "INFERQ_REDIS_MASTER": "m",
      "INFERQ_REDIS_URL": "unix:///tmp/r.sock"}, "INFERQ_REDIS_URL must be redis:// or rediss://"),
    ({"INFERQ_REDIS_MIN_REPLICAS_ACK": "-1"}, "INFERQ_REDIS_MIN_REPLICAS_ACK must be 0 or more"),
    ({"INFERQ_REDIS_WAIT_TIMEOUT_MS": "0"}, "INFERQ_REDIS_WAIT_TIMEOUT_MS must be greater than 0"),
])
def test_bad_values_are_refused_with_the_variable_named(env, message):
    with pytest.raises(SettingsError, match=message):
        load_settings(env)


def test_sentinels_are_read_as_host_port_pairs():
    s = load_settings({"INFERQ_REDIS_SENTINELS": " s1:26379, 10.0.0.2:26380,[::1]:26381",
                       "INFERQ_REDIS_MASTER": "inferq"})
    assert s.sentinel_addresses == [("s1", 26379), ("10.0.0.2", 26380), ("::1", 26381)]
