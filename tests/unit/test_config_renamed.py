"""Settings read under an older name (issue 21 names the ManageSieve listener
``listen.managesieve``; earlier versions wrote ``listen.sieve``)."""

from pathlib import Path

import pytest

from waypost.config import ConfigError, settings_from_dict


def test_listen_managesieve_is_the_setting(tmp_path: Path) -> None:
    s = settings_from_dict({"listen": {"managesieve": "127.0.0.1:4190"}}, tmp_path)
    assert s.listen.managesieve == "127.0.0.1:4190"


def test_the_older_spelling_listen_sieve_is_read_as_listen_managesieve(tmp_path: Path) -> None:
    s = settings_from_dict({"listen": {"sieve": "127.0.0.1:4190"}}, tmp_path)
    assert s.listen.managesieve == "127.0.0.1:4190"


def test_both_spellings_at_once_are_refused_naming_both(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"listen": {"sieve": "127.0.0.1:4190", "managesieve": "127.0.0.1:4191"}}, tmp_path)
    assert "listen.sieve" in str(e.value) and "listen.managesieve" in str(e.value)


def test_a_bad_address_under_the_older_spelling_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as e:
        settings_from_dict({"listen": {"sieve": "nowhere"}}, tmp_path)
    assert "listen.managesieve" in str(e.value)
