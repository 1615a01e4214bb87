"""MTA-STS (RFC 8461) parsing and matching, and delivery.tls_policy look-up."""

from __future__ import annotations

import pytest

from waypost.config import ConfigError, Settings, load_settings, render_toml
from waypost.delivery.mtasts import MAX_POLICY, PolicyError, parse_policy, parse_record
from waypost.delivery.tlspolicy import override_for


def test_record():
    assert parse_record("v=STSv1; id=20160831085700Z;") == "20160831085700Z"
    assert parse_record("v=STSv1;id=abc") == "abc"
    for bad in ("v=STSv2; id=1", "id=1", "v=STSv1; id=", "v=STSv1; id=" + "a" * 33, "v=STSv1; id=a-b",
                "v=STSv1; nonsense"):
        with pytest.raises(PolicyError):
            parse_record(bad)


def test_policy_and_wildcards():
    # RFC 8461 §3.2's example, LF line ends.
    p = parse_policy("example.com", "1", "version: STSv1\nmode: enforce\nmx: mail.example.com\n"
                     "mx: *.example.net\nmx: backupmx.example.com\nmax_age: 604800\n", 100.0)
    assert (p.mode, p.max_age, p.mx) == ("enforce", 604800, ("mail.example.com", "*.example.net",
                                                            "backupmx.example.com"))
    assert p.matches("mail.example.com") and p.matches("MAIL.example.com.") and p.matches("mx1.example.net")
    # §4.1: a wildcard covers one label, not the parent itself nor two labels.
    assert not p.matches("example.net") and not p.matches("a.b.example.net") and not p.matches("mx.example.org")
    assert not p.expired(100.0 + 604799) and p.expired(100.0 + 604800)
    none = parse_policy("example.com", "1", "version: STSv1\r\nmode: none\r\nmax_age: 10\r\n", 0.0)
    assert none.mode == "none" and none.mx == ()
    huge = parse_policy("e.com", "1", "version: STSv1\nmode: testing\nmx: a.e.com\nmax_age: 9999999999\n", 0.0)
    assert huge.max_age == 31_557_600


@pytest.mark.parametrize("text", [
    "mode: enforce\nmx: a.example\nmax_age: 1\n",                            # no version
    "version: STSv1\nmode: strict\nmx: a.example\nmax_age: 1\n",             # bad mode
    "version: STSv1\nmode: enforce\nmode: testing\nmx: a.example\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmax_age: 1\n",                           # no mx
    "version: STSv1\nmode: enforce\nmx: a.example\n",                        # no max_age
    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: -1\n",
    "version: STSv1\nmode: enforce\nmx: *.*.example\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nthis line has no colon\nmx: a.example\nmax_age: 1\n",
    "version: STSv1\nmode: enforce\nmx: a.example\nmax_age: 1\n" + "x: y\n" * (MAX_POLICY // 5),
])
def test_bad_policies(text):
    with pytest.raises(PolicyError):
        parse_policy("example", "1", text, 0.0)


def test_tls_policy_setting(tmp_path):
    s = Settings().replace("delivery", tls_policy=["bank.example=verify", ".legacy.example=none",
                                                   ".example=encrypt"])
    assert override_for(s, "bank.example") == "verify"
    assert override_for(s, "legacy.example") == "none" and override_for(s, "mx.legacy.example.") == "none"
    assert override_for(s, "other.example") == "encrypt"   # the longest suffix that covers it wins
    assert override_for(s, "example.org") is None
    (tmp_path / "waypost.toml").write_text(render_toml(Settings().replace("delivery", tls_policy=["x.test=strict"])))
    with pytest.raises(ConfigError, match="delivery.tls_policy"):
        load_settings(tmp_path)


def test_tlsrpt_record():
    from waypost.queue.tlsrpt import parse_rua

    assert parse_rua("v=TLSRPTv1; rua=mailto:tls@example.com,https://r.example.com/x") == [
        "mailto:tls@example.com", "https://r.example.com/x"]
    assert parse_rua("v=TLSRPTv1;rua=ftp://x.example, mailto:a@b.example") == ["mailto:a@b.example"]
    assert parse_rua("v=TLSRPTv2; rua=mailto:a@b.example") == [] and parse_rua("v=TLSRPTv1") == []
