"""Outbound MTA-STS (RFC 8461) end to end: Waypost ``a`` delivers to Waypost ``b``
through the DNS server on 127.0.0.1, and fetches each domain's policy over real HTTPS
(support.policyserver, a certificate from the test CA, which ``a`` trusts through
``delivery.tls_ca_file``).  enforce with a matching certificate delivers; enforce with
a certificate that does not match the MX name, or with an MX the policy does not list,
defers (never in clear); testing delivers and reports; a cached policy outlives its
TXT record; a policy that cannot be fetched is no policy."""

from __future__ import annotations

import smtplib

import pytest

from support.dnsserver import TestDNSServer
from support.policyserver import PolicyServer
from support.server import WaypostInstance, wait_for
from support.tls import write_ca_file

REPORT_PERIOD = 4  # seconds a TLS report covers here (a day in production)
DOMAINS = ["enf.test", "mism.test", "notlisted.test", "testing.test", "cache.test", "bad.test", "over.test"]


def policy(mode: str, *mx: str, max_age: int = 86400) -> str:
    return "version: STSv1\r\nmode: " + mode + "\r\n" + "".join(f"mx: {m}\r\n" for m in mx) + f"max_age: {max_age}\r\n"


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("mtasts")
    zone: dict = {"mail.remote.test": {"A": ["127.0.0.1"]}, "mx2.remote.test": {"A": ["127.0.0.1"]}}
    for d in DOMAINS:
        zone[d] = {"MX": [(10, "mx2.remote.test" if d in ("mism.test", "testing.test", "bad.test")
                           else "mail.remote.test")]}
        zone[f"_mta-sts.{d}"] = {"TXT": ["v=STSv1; id=20261205a"]}
        zone[f"mta-sts.{d}"] = {"A": ["127.0.0.1"]}
    for d in ("forced.test", "plain.test"):  # no MTA-STS; delivery.tls_policy decides
        zone[d] = {"MX": [(10, "mx2.remote.test")]}
    # TLS-RPT (RFC 8460): reports by mail to b and by HTTPS POST to the policy server.
    zone["remote.test"] = {"MX": [(10, "mail.remote.test")]}
    zone["reports.remote.test"] = {"A": ["127.0.0.1"]}
    https = PolicyServer(DOMAINS, extra_names=("reports.remote.test",))
    for d in ("enf.test", "mism.test"):
        zone[f"_smtp._tls.{d}"] = {"TXT": [f"v=TLSRPTv1; rua=mailto:tlsrpt@remote.test,"
                                           f"https://reports.remote.test:{https.port}/tlsrpt"]}
    dns = TestDNSServer(zone).start()
    https.start()
    https.policies.update({
        "enf.test": policy("enforce", "mail.remote.test"),
        "mism.test": policy("enforce", "*.remote.test"),
        "notlisted.test": policy("enforce", "mx.other.test"),
        "testing.test": policy("testing", "*.remote.test"),
        "cache.test": policy("enforce", "mail.remote.test", "mx2.remote.test"),
    })
    https.answers["bad.test"] = (302, "text/plain", b"moved\n")
    https.answers["over.test"] = (200, "text/plain", b"version: STSv1\r\n" + b"x" * 70_000)
    b = WaypostInstance(base / "b", domain="remote.test", dns={"nameservers": [dns.nameserver]})
    b.ok("account", "add", "tlsrpt@remote.test", "--no-password")
    for d in DOMAINS + ["forced.test", "plain.test"]:
        b.ok("domain", "add", d)
        b.ok("account", "add", f"rita@{d}", "--no-password")
    a = WaypostInstance(base / "a", domain="example.test",
                        dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                        delivery={"smtp_port": b.smtp_port, "connect_timeout": 3.0, "mta_sts_port": https.port,
                                  "tls_ca_file": str(write_ca_file(base / "ca.pem")),
                                  "tls_policy": ["forced.test=verify", ".plain.test=none"]},
                        queue={"poll_interval": 0.2, "retry_intervals": [3600]},
                        tlsrpt={"interval": REPORT_PERIOD})
    b.start()
    a.start()
    yield a, b, dns, https
    a.stop()
    b.stop()
    https.stop()
    dns.stop()


def send(a: WaypostInstance, to: str, subject: str) -> None:
    with smtplib.SMTP("127.0.0.1", a.smtp_port, timeout=30) as c:
        assert c.sendmail("alice@example.test", [to], f"From: alice@example.test\r\nTo: {to}\r\n"
                          f"Subject: {subject}\r\n\r\nhello\r\n".encode()) == {}


def arrived(b: WaypostInstance, to: str, subject: str) -> bytes:
    def find():
        for p in b.messages(to):
            data = p.read_bytes()
            if f"Subject: {subject}\r\n".encode() in data:
                return data
        return None
    return wait_for(find, timeout=20, what=f"{subject!r} at {to}")


def test_enforce_with_a_matching_certificate_delivers_over_verified_tls(world):
    a, b, _dns, https = world
    send(a, "rita@enf.test", "enforced ok")
    data = arrived(b, "rita@enf.test", "enforced ok")
    assert b"with cipher" in data.split(b"\r\n\r\n")[0]  # b's Received field: TLS was used
    a.expect_log(r"event=mta-sts-policy domain=enf.test id=20261205a mode=enforce mx=mail.remote.test")
    assert https.requests["enf.test"] == 1


def test_enforce_with_a_certificate_for_another_name_is_deferred_never_sent(world):
    a, b, _dns, _https = world
    send(a, "rita@mism.test", "wrong name")
    a.expect_log(r"event=tls-policy-failed host=.mx2.remote.test \[127.0.0.1\]. policy=MTA-STS result=certificate-host-mismatch"
                 r" .*action=defer")
    a.expect_log(r"event=deferred .*rcpt=<rita@mism.test> .*4.7.5")
    assert not [p for p in b.messages("rita@mism.test")]


def test_enforce_with_an_unlisted_mx_is_deferred(world):
    a, b, _dns, _https = world
    send(a, "rita@notlisted.test", "unlisted mx")
    a.expect_log(r"event=deferred .*rcpt=<rita@notlisted.test> .*4.7.5 no MX host of notlisted.test matches")
    assert not [p for p in b.messages("rita@notlisted.test")]


def test_testing_mode_delivers_and_reports_the_failure(world):
    a, b, _dns, _https = world
    send(a, "rita@testing.test", "testing mode")
    arrived(b, "rita@testing.test", "testing mode")
    a.expect_log(r"event=tls-policy-failed host=.mx2.remote.test \[127.0.0.1\]. policy=.MTA-STS testing. "
                 r"result=certificate-host-mismatch .*action=.deliver \(testing\).")


def test_a_cached_policy_outlives_its_record_and_a_new_id_is_fetched_again(world):
    a, b, dns, https = world
    send(a, "rita@cache.test", "cache one")
    arrived(b, "rita@cache.test", "cache one")
    send(a, "rita@cache.test", "cache two")
    arrived(b, "rita@cache.test", "cache two")
    assert https.requests["cache.test"] == 1  # same id: the cached policy
    # An attacker strips the record and points the MX elsewhere: the cached enforce
    # policy still applies (RFC 8461 §5.1), so the wrong certificate defers.
    dns.remove("_mta-sts.cache.test")
    dns.set("cache.test", "MX", [(10, "mx2.remote.test")])
    send(a, "rita@cache.test", "cache three")
    a.expect_log(r"event=deferred .*rcpt=<rita@cache.test> .*4.7.5")
    assert https.requests["cache.test"] == 1
    # A new id: fetched again; the new policy (testing) lets it through.
    https.policies["cache.test"] = policy("testing", "*.remote.test")
    dns.set("_mta-sts.cache.test", "TXT", ["v=STSv1; id=20261205b"])
    send(a, "rita@cache.test", "cache four")
    arrived(b, "rita@cache.test", "cache four")
    assert https.requests["cache.test"] == 2
    a.expect_log(r"event=mta-sts-policy domain=cache.test id=20261205b mode=testing")


def test_a_policy_that_cannot_be_fetched_is_no_policy(world):
    a, b, _dns, https = world
    send(a, "rita@bad.test", "redirected policy")
    arrived(b, "rita@bad.test", "redirected policy")  # no policy: opportunistic TLS as before
    a.expect_log(r"event=mta-sts-fetch-failed domain=bad.test .*HTTP 302")
    send(a, "rita@over.test", "oversized policy")
    arrived(b, "rita@over.test", "oversized policy")
    a.expect_log(r"event=mta-sts-fetch-failed domain=over.test .*longer than 65536")


def test_delivery_tls_policy_overrides(world):
    a, b, _dns, _https = world
    send(a, "rita@forced.test", "forced verify")
    a.expect_log(r"event=deferred .*rcpt=<rita@forced.test> .*4.7.5 .*delivery.tls_policy verify policy requires TLS "
                 r"with a verified certificate")
    send(a, "rita@plain.test", "in clear")
    data = arrived(b, "rita@plain.test", "in clear")
    assert b"with cipher" not in data.split(b"\r\n\r\n")[0]


def test_our_own_policy_is_served_and_honoured_by_the_next_waypost(tmp_path):
    """``b`` serves its policy ([mta_sts] mode enforce) from listen.https for its
    domain; ``waypost dns`` gives the record with its id; curl (an independent client)
    and ``a``'s delivery fetch it over verified TLS, and ``a`` delivers under it."""
    import json
    import subprocess

    from support import tls
    from support.server import free_port
    from waypost.config import load_settings
    from waypost.mailauth.publish import policy_id

    dns = TestDNSServer({"remote.test": {"MX": [(10, "mail.remote.test")]},
                         "mail.remote.test": {"A": ["127.0.0.1"]},
                         "mta-sts.remote.test": {"A": ["127.0.0.1"]}}).start()
    https_port = free_port()
    b = WaypostInstance(tmp_path / "b", domain="remote.test", dns={"nameservers": [dns.nameserver]},
                        listen={"https": f"127.0.0.1:{https_port}"},
                        mta_sts={"mode": "enforce", "max_age": 86400})
    s = load_settings(b.data)
    tls.install_certificate(s.path(s.tls.certificate), s.path(s.tls.key), b.hostname, "mta-sts.remote.test",
                            "127.0.0.1")
    b.ok("account", "add", "rita@remote.test", "--no-password")
    ca = write_ca_file(tmp_path / "ca.pem")
    a = WaypostInstance(tmp_path / "a", domain="example.test", dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                        delivery={"smtp_port": b.smtp_port, "mta_sts_port": https_port, "tls_ca_file": str(ca)})
    try:
        rows = {(r["name"], r["type"]): r for r in json.loads(b.cli("dns", "remote.test", "--json").output)}
        record = rows[("_mta-sts.remote.test", "TXT")]
        assert record["expected"] == f"v=STSv1; id={policy_id(s)}" and record["status"] == "missing"
        dns.set("_mta-sts.remote.test", "TXT", [record["expected"]])
        rows = {(r["name"], r["type"]): r for r in json.loads(b.cli("dns", "remote.test", "--json").output)}
        assert rows[("_mta-sts.remote.test", "TXT")]["status"] == "ok"
        b.start()
        url = f"https://mta-sts.remote.test:{https_port}/.well-known/mta-sts.txt"
        out = subprocess.run(["curl", "-sS", "-i", "--cacert", str(ca), "--resolve",
                              f"mta-sts.remote.test:{https_port}:127.0.0.1", url],
                             capture_output=True, timeout=30)
        assert out.returncode == 0, out.stderr
        head, _, body = out.stdout.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200") and b"content-type: text/plain" in head.lower()
        assert body == b"version: STSv1\r\nmode: enforce\r\nmx: mail.remote.test\r\nmax_age: 86400\r\n"
        # Another host name, or a domain we do not host: not a policy.
        other = subprocess.run(["curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "-k", "-H",
                                "Host: mta-sts.unknown.test", f"https://127.0.0.1:{https_port}/.well-known/mta-sts.txt"],
                               capture_output=True, timeout=30)
        assert other.stdout == b"404"
        a.start()
        send(a, "rita@remote.test", "under our own policy")
        data = arrived(b, "rita@remote.test", "under our own policy")
        assert b"with cipher" in data.split(b"\r\n\r\n")[0]
        a.expect_log(rf"event=mta-sts-policy domain=remote.test id={policy_id(s)} mode=enforce mx=mail.remote.test")
    finally:
        a.stop()
        b.stop()
        dns.stop()


def test_tls_reports_by_mail_and_https(world):
    """RFC 8460: after their periods end, a sends the reports of enf.test (successes)
    and mism.test (certificate-host-mismatch failures), which publish _smtp._tls, to
    both their rua URIs: a multipart/report mail (gzip'ed JSON) and an HTTPS POST.
    (Runs after the tests above, whose deliveries it reports on.)"""
    import email
    import gzip
    import json

    a, b, _dns, https = world

    def reports_for(domain: str) -> list[dict]:
        out = []
        for p in b.messages("tlsrpt@remote.test"):
            msg = email.message_from_bytes(p.read_bytes())
            if msg["TLS-Report-Domain"] != domain:
                continue
            assert msg.get_content_type() == "multipart/report" and msg.get_param("report-type") == "tlsrpt"
            assert msg["Subject"].startswith(f"Report Domain: {domain} Submitter: mail.example.test Report-ID: <")
            part = [x for x in msg.walk() if x.get_content_type() == "application/tlsrpt+gzip"][0]
            assert part.get_filename().startswith(f"mail.example.test!{domain}!")
            out.append(json.loads(gzip.decompress(part.get_payload(decode=True))))
        return out

    enf = wait_for(lambda: reports_for("enf.test"), timeout=30, what="a TLS report for enf.test")
    mism = wait_for(lambda: reports_for("mism.test"), timeout=30, what="a TLS report for mism.test")
    r = enf[0]
    assert r["organization-name"] == "mail.example.test" and r["contact-info"] == "postmaster@example.test"
    assert r["date-range"]["start-datetime"].endswith("Z") and r["report-id"].endswith("@mail.example.test")
    pol = [p for rep in enf for p in rep["policies"]]
    assert all(p["policy"]["policy-type"] == "sts" and p["policy"]["policy-domain"] == "enf.test" for p in pol)
    assert pol[0]["policy"]["mx-host"] == ["mail.remote.test"]
    assert "mode: enforce" in pol[0]["policy"]["policy-string"]
    assert sum(p["summary"]["total-successful-session-count"] for p in pol) >= 1
    assert sum(p["summary"]["total-failure-session-count"] for p in pol) == 0
    fails = [f for rep in mism for p in rep["policies"] for f in p.get("failure-details", [])]
    assert fails and all(f["result-type"] == "certificate-host-mismatch" for f in fails)
    assert {f["receiving-mx-hostname"] for f in fails} == {"mx2.remote.test"}
    assert {f["receiving-ip"] for f in fails} == {"127.0.0.1"}
    # The same reports by HTTPS.
    posted = wait_for(lambda: [json.loads(gzip.decompress(body)) for host, path, ctype, body in list(https.posts)
                               if host == "reports.remote.test" and path == "/tlsrpt"
                               and ctype == "application/tlsrpt+gzip"], timeout=30, what="reports by HTTPS")
    domains = {p["policy"]["policy-domain"] for rep in posted for p in rep["policies"]}
    assert {"enf.test", "mism.test"} <= domains
    a.expect_log(r"event=tlsrpt-sent domain=enf.test to=https://reports.remote.test:\d+/tlsrpt status=201")
