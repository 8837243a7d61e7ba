from cryptography.fernet import Fernet

from pulse_project.testing.daemons import manage


def test_it_refuses_to_start_without_a_secret_key_when_debug_is_off():
    result = manage("check", PULSE_DEBUG="off", PULSE_ENCRYPTION_KEY=Fernet.generate_key().decode())
    assert result.returncode != 0
    assert "PULSE_SECRET_KEY must be set" in result.stderr


def test_it_refuses_to_start_without_an_encryption_key_when_debug_is_off():
    result = manage("check", PULSE_DEBUG="off", PULSE_SECRET_KEY="x" * 60)
    assert result.returncode != 0
    assert "PULSE_ENCRYPTION_KEY must be set" in result.stderr


def test_deploy_checks_pass_with_production_settings():
    result = manage(
        "check",
        "--deploy",
        "--fail-level",
        "WARNING",
        PULSE_DEBUG="off",
        PULSE_SECRET_KEY="k" * 20 + "Zq8#vY2!pL" * 5,
        PULSE_ENCRYPTION_KEY=Fernet.generate_key().decode(),
        PULSE_ALLOWED_HOSTS="pulse.example.com",
    )
    assert result.returncode == 0, result.stderr


def test_it_refuses_to_start_with_a_level_shift_confirmation_count_that_means_nothing():
    for value in ("-3", "1", "5000"):
        result = manage("check", PULSE_LEVEL_SHIFT_CONFIRMATIONS=value)
        assert result.returncode != 0
        assert "PULSE_LEVEL_SHIFT_CONFIRMATIONS must be 0 (only rebaseline accepts a level shift) or 2 to 1000" in (
            result.stderr
        )
        assert f"not {int(value)}" in result.stderr


def test_it_refuses_to_start_with_a_kept_session_idle_time_that_means_nothing():
    for value in ("-1", "nan", "1e9", "two minutes"):
        result = manage("check", PULSE_KEPT_SESSION_IDLE_SECONDS=value)
        assert result.returncode != 0
        assert "PULSE_KEPT_SESSION_IDLE_SECONDS must be 0 (keep no replica session between batches) to 86400" in (
            result.stderr
        )
        assert f"not {value!r}" in result.stderr
