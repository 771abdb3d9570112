from workers.checks import broker_errors


def test_an_unreachable_broker_gives_a_clear_error_with_a_hint():
    errors = broker_errors("redis://127.0.0.1:1/0")
    assert [e.id for e in errors] == ["services.E002"]
    assert "cannot be reached" in errors[0].msg
    assert errors[0].hint == "Start Redis or set REDIS_URL."


def test_a_reachable_broker_gives_no_error(settings):
    assert broker_errors(settings.CELERY_BROKER_URL) == []


def test_the_broker_url_is_shown_without_its_password():
    errors = broker_errors("redis://:hunter2-secret@127.0.0.1:1/0")
    assert "hunter2" not in errors[0].msg
