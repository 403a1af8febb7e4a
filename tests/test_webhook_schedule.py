"""The retry schedule and Retry-After handling (pure)."""
import email.utils
import time

import pytest

from jobs.settings import SettingsError, load_settings
from webhooks.attempt import _retry_after, next_delay


def test_default_schedule_then_the_last_delay_repeats():
    s = load_settings({})
    assert s.webhook_retry_schedule == [5, 30, 120, 600, 1800, 3600]
    for attempts_made, base in [(1, 5), (2, 30), (6, 3600), (7, 3600), (30, 3600)]:
        delays = [next_delay(s, attempts_made) for _ in range(200)]
        assert base * 0.8 <= min(delays) and max(delays) <= base * 1.2  # jittered around it
        assert max(delays) - min(delays) > 0


def test_retry_after_in_seconds_or_as_a_date():
    assert _retry_after("120") == 120
    later = email.utils.formatdate(time.time() + 300, usegmt=True)
    assert 290 <= _retry_after(later) <= 301
    assert _retry_after(None) is None and _retry_after("soon") is None


@pytest.mark.parametrize("value", ["", "5,-1", "a,b", "0"])
def test_bad_schedules_are_refused_at_start(value):
    with pytest.raises(SettingsError, match="INFERQ_WEBHOOK_RETRY_SCHEDULE_S"):
        load_settings({"INFERQ_WEBHOOK_RETRY_SCHEDULE_S": value or ","})


def test_bad_secrets_and_networks_are_refused_at_start():
    with pytest.raises(SettingsError, match="INFERQ_WEBHOOK_SECRET"):
        load_settings({"INFERQ_WEBHOOK_SECRET": "plain-password"})
    with pytest.raises(SettingsError, match="INFERQ_WEBHOOK_ALLOW_NETWORKS"):
        load_settings({"INFERQ_WEBHOOK_ALLOW_NETWORKS": "10.0.0.0/33"})
