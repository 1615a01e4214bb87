"""Settings: declared once, loaded from ``DATA/waypost.toml``, validated at start.

Every setting is a field of one of the section dataclasses below, with its type, its
default and a sentence saying what it means (``doc``).  The loader refuses unknown
sections, unknown keys and values of the wrong type with an error naming the key, and
``waypost config reference`` prints the reference that the README carries (a test checks
that the two agree).

This module imports nothing from the rest of Waypost.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import os
import re
import tomllib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .address import AddressError, normalize_domain

__all__ = [
    "ConfigError",
    "Settings",
    "load_settings",
    "parse_hostport",
    "parse_port_range",
    "reference_markdown",
    "render_toml",
    "SETTINGS_FILE",
]

SETTINGS_FILE = "waypost.toml"


class ConfigError(ValueError):
    """A settings file that cannot be used; the message names the key."""


def _s(default: Any, doc: str) -> Any:
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata={"doc": doc})
    return field(default=default, metadata={"doc": doc})


@dataclass(frozen=True, slots=True)
class ServerSettings:
    hostname: str = _s("localhost", "Name used in the SMTP greeting, EHLO and Received header fields.")
    main_domain: str = _s("localhost", "The main domain: addresses without a domain belong to it.")
    workers: int = _s(0, "Worker processes sharing the listening sockets (0 = one per usable CPU).")
    listen_backlog: int = _s(1024, "Connections each TCP listener lets wait to be accepted (listen(2) backlog; "
                                   "the kernel caps it at net.core.somaxconn).")
    log_format: str = _s("text", "Log line format: 'text' (key=value) or 'json'.")
    log_level: str = _s("info", "Least severe level logged: debug, info, warning, error.")
    user: str = _s("", "Started as root, serve binds its ports and then runs as this user; every other"
                   " command also runs as it (\"\" = stay who started it).")


@dataclass(frozen=True, slots=True)
class ListenSettings:
    smtp: str = _s("127.0.0.1:2525", "SMTP relay and ETRN listener (host:port, \"\" = off).")
    submission: str = _s("127.0.0.1:2587", "SMTP submission listener; AUTH is required before MAIL.")
    odmr: str = _s("127.0.0.1:2366", "ODMR (ATRN, RFC 2645) listener; AUTH is required before ATRN.")
    lmtp: str = _s("", "LMTP (RFC 2033) listener for another MTA: host:port, or the absolute path of a Unix "
                       "socket (made 0666: let its directory's permissions say who may connect); \"\" = off.")
    submissions: str = _s("", "SMTP submission over implicit TLS (RFC 8314; production port 465, e.g. "
                              "\"0.0.0.0:465\"; AUTH required before MAIL, like listen.submission); \"\" = off.")
    imap: str = _s("127.0.0.1:2143", "IMAP listener (STARTTLS; production port 143).")
    imaps: str = _s("", "IMAP over implicit TLS (RFC 8314; production port 993); \"\" = off.")
    pop3: str = _s("127.0.0.1:2110", "POP3 listener (STLS; production port 110).")
    pop3s: str = _s("", "POP3 over implicit TLS (RFC 8314; production port 995); \"\" = off.")
    http: str = _s("127.0.0.1:8080", "HTTP listener: WebUser mail and the account file areas (production "
                                     "port 80; \"\" = off).")
    https: str = _s("127.0.0.1:8443", "HTTPS listener, with the certificate of STARTTLS (tls.certificate; "
                                      "production port 443; \"\" = off).")
    minger: str = _s("", "Minger (UDP) listener for domain sharing (production port 4069; needs sharing.secret).")
    ftp: str = _s("127.0.0.1:2121", "FTP listener for the account file areas (explicit FTPS with AUTH TLS; "
                                    "production port 21).")
    managesieve: str = _s("", "ManageSieve (RFC 5804) listener for the accounts' Sieve filters (production and "
                              "conventional port 4190, e.g. \"127.0.0.1:4190\"; STARTTLS). The older spelling "
                              "listen.sieve is read too.")
    metrics: str = _s("", "Prometheus metrics listener (GET /metrics), e.g. \"127.0.0.1:9101\"; keep it on a "
                          "private address, and set metrics.token if others can reach it.")


@dataclass(frozen=True, slots=True)
class StorageSettings:
    database: str = _s("waypost.db", "SQLite file (relative to the data directory) or a postgresql:// URL.")
    spool: str = _s("spool", "Directory of the durable message spool (relative to the data directory).")
    mail: str = _s("mail", "Root of the Maildir store (relative to the data directory).")
    files: str = _s("files", "Root of the account file areas, one folder per domain and account (relative to "
                             "the data directory).")
    pool_size: int = _s(4, "PostgreSQL only: connections each worker process keeps open to the database at most.")
    pool_timeout: float = _s(5.0, "PostgreSQL only: seconds to wait for a database connection before answering "
                                  "\"try again later\" (SMTP 451 4.3.0); at once while the database is known to be "
                                  "down (docs/postgresql.md).")
    listing_cache: int = _s(200_000, "Message records (UID, flags, file name) of recently read mailbox listings a "
                                     "worker keeps in memory, over all mailboxes (about 200 octets each).")


@dataclass(frozen=True, slots=True)
class TLSSettings:
    certificate: str = _s("tls/cert.pem", "PEM certificate chain for STARTTLS and the implicit-TLS listeners "
                                          "(relative to the data directory); read again on SIGHUP.")
    key: str = _s("tls/key.pem", "PEM private key of the certificate (relative to the data directory); read again "
                                 "on SIGHUP.")


@dataclass(frozen=True, slots=True)
class SMTPSettings:
    max_message_size: int = _s(50 * 1024 * 1024, "Largest message accepted, in bytes (SIZE; 552 above it).")
    max_recipients: int = _s(1000, "Most RCPT commands accepted for one message (452 4.5.3 above it).")
    max_line_length: int = _s(1000, "Longest command or text line, in octets with CRLF (RFC 5321 §4.5.3.1).")
    command_timeout: float = _s(300.0, "Seconds to wait for the next command before closing (RFC 5321 §4.5.3.2.7).")
    data_timeout: float = _s(600.0, "Seconds a client may take to send a whole message after 354.")
    max_received_headers: int = _s(30, "Messages with more Received header fields are bounced as a loop.")
    max_errors: int = _s(20, "Bad commands tolerated in one session before it is closed with 421.")
    auth_requires_tls: bool = _s(True, "Offer and accept AUTH only after STARTTLS.")
    cram_md5: bool = _s(False, "Offer AUTH CRAM-MD5 on the SMTP and submission listeners (before STARTTLS too); it works "
                               "only for accounts whose password is sealed (account passwd --cram-md5). The ODMR "
                               "listener always offers it (RFC 2645 clients use it).")
    smtputf8: bool = _s(True, "Advertise SMTPUTF8 (RFC 6531).")


@dataclass(frozen=True, slots=True)
class IMAPSettings:
    plaintext_without_tls: bool = _s(False, "Accept LOGIN and AUTHENTICATE PLAIN without TLS (LOGINDISABLED otherwise).")
    idle_timeout: float = _s(1800.0, "Seconds an authenticated client may stay silent (RFC 3501 §5.4: at least 30 min).")
    login_timeout: float = _s(60.0, "Seconds a client has to log in.")
    max_line_length: int = _s(64 * 1024, "Longest command line, in octets; every legal command must fit (an ID of 30 "
                                          "1,024-octet values, RFC 2971), and RFC 7162 §4 asks for at least 8192.")
    max_append_size: int = _s(50 * 1024 * 1024, "Largest literal (APPEND message) taken; larger ones are refused unread.")
    max_append_messages: int = _s(100, "Most messages in one APPEND (RFC 3502 MULTIAPPEND); one more is BAD [LIMIT]. "
                                       "Together they are bounded by max_append_size + 1 MiB.")
    failure_delay: float = _s(1.0, "Seconds before answering a failed login; doubles with each failure.")
    max_login_failures: int = _s(3, "Failed logins on one connection before it is closed.")
    max_bad_commands: int = _s(20, "Bad commands in a row before the connection is closed with BYE.")
    idle_check_interval: float = _s(30.0, "Seconds between two looks at the index by a session in IDLE or with "
                                          "NOTIFY when nothing woke it (a change made through Waypost wakes it at "
                                          "once); what a "
                                          "program that writes into the Maildirs itself adds is seen this late at "
                                          "most. Dovecot's mailbox_idle_check_interval is 30 s too.")
    search_cache: int = _s(64 * 1024 * 1024, "Octets of message headers a worker keeps in memory for SEARCH, over "
                                             "all mailboxes; the least recently searched go first.")
    expunged_keep: float = _s(7 * 86400.0, "Seconds the index keeps the UID and mod-sequence of each expunged "
                                           "message (QRESYNC's VANISHED, RFC 7162); a client back from longer away "
                                           "is sent every UID of its range that is not there. The header blocks "
                                           "kept of expunged messages (SEARCH in sessions not yet told) go after "
                                           "twice imap.idle_timeout, or with these records if sooner.")


@dataclass(frozen=True, slots=True)
class POP3Settings:
    plaintext_without_tls: bool = _s(False, "Accept USER/PASS and AUTH PLAIN without TLS.")
    idle_timeout: float = _s(600.0, "Seconds a client may stay silent (RFC 1939 §3: at least 10 minutes).")
    failure_delay: float = _s(1.0, "Seconds before answering a failed login; doubles with each failure.")
    max_login_failures: int = _s(3, "Failed logins on one connection before it is closed.")


@dataclass(frozen=True, slots=True)
class ManageSieveSettings:
    plaintext_without_tls: bool = _s(False, "Accept AUTHENTICATE PLAIN without STARTTLS.")
    idle_timeout: float = _s(1800.0, "Seconds a ManageSieve client may stay silent.")
    max_scripts: int = _s(32, "Sieve scripts an account may keep.")
    max_script_size: int = _s(1024 * 1024, "Octets of one Sieve script.")


@dataclass(frozen=True, slots=True)
class FilesSettings:
    size_limit: int = _s(100 * 1024 * 1024, "Octets of files an account's file area may hold, unless the account "
                                            "or its domain has its own limit (waypost files set).")


@dataclass(frozen=True, slots=True)
class FTPSettings:
    plaintext_without_tls: bool = _s(False, "Accept USER/PASS and data transfers without AUTH TLS and PROT P.")
    passive_ports: str = _s("50000-50099", "Range of TCP ports (first-last) for passive data connections, on "
                                           "the address the client connected to.")
    max_connections: int = _s(100, "FTP control connections each worker serves at once (one thread each).")
    max_connections_per_ip: int = _s(10, "FTP control connections from one client address, per worker.")
    idle_timeout: float = _s(300.0, "Seconds a client may stay silent on the control connection (also a stalled "
                                    "data connection).")
    failure_delay: float = _s(1.0, "Seconds before answering a failed login (the login throttle may add more).")
    max_login_failures: int = _s(3, "Failed logins on one connection before it is closed.")


@dataclass(frozen=True, slots=True)
class WebSettings:
    session_lifetime: float = _s(8 * 3600.0, "Seconds a WebUser session lasts after its login.")
    page_size: int = _s(50, "Messages on one page of a WebUser message list.")
    max_upload_size: int = _s(25 * 1024 * 1024, "Octets a WebUser form (a composed message, a file upload) "
                                                "may carry; a larger request is answered 413.")


@dataclass(frozen=True, slots=True)
class AuthSettings:
    free_failures: int = _s(5, "Failed logins (every protocol, every worker) from one client address, or for one "
                               "account, within auth.window before the next attempts are slowed.")
    delay: float = _s(1.0, "Seconds the first slowed attempt waits before its password is checked; doubles with "
                           "each further failure.")
    max_delay: float = _s(30.0, "Longest such wait, in seconds (also the wait before a blocked attempt is refused).")
    block_after: int = _s(30, "Failed logins (from one client address, or for one account, within auth.window) "
                              "after which it is blocked: logins are refused unchecked for auth.block_time.")
    block_time: float = _s(900.0, "Seconds a block lasts; another failure once it is over blocks again.")
    window: float = _s(3600.0, "Seconds after the last failure when a client's or an account's count starts again.")
    known_client_days: float = _s(60.0, "An address from which an account logged in within this many days is known: "
                                        "the account's failures (a guessing attack) do not slow or block it there.")
    verified_cache_size: int = _s(10000, "Successful logins each worker remembers (a keyed digest of account, stored "
                                         "hash and password, in memory only), so that a client logging in again "
                                         "skips the argon2id check; 0 = off.")
    verified_cache_ttl: float = _s(300.0, "Seconds a successful login is remembered; a password change ends it at once "
                                          "in every worker; 0 = off.")
    argon2_memory: int = _s(65536, "KiB of memory each new password hash (argon2id, 4 lanes) fills; with "
                                   "auth.argon2_passes, RFC 9106's second recommended setting (64 MiB, 3 passes). "
                                   "A stored hash keeps the cost it was made with: a change applies to passwords "
                                   "set from then on. At least 32.")
    argon2_passes: int = _s(3, "Passes over that memory (argon2id's time cost) of each new password hash; "
                               "at least 1.")


@dataclass(frozen=True, slots=True)
class DNSSettings:
    nameservers: list[str] = _s([], "Name servers as host or host:port; empty = the system's resolver.")
    timeout: float = _s(5.0, "Seconds a DNS look-up may take.")
    trust_ad: bool = _s(False, "Trust the AD (authenticated data) bit of the name servers' answers: they are a "
                               "validating resolver on this host (dns.nameservers on 127.0.0.1 or ::1 only, e.g. "
                               "unbound). Needed for DANE (delivery.dane).")


@dataclass(frozen=True, slots=True)
class DeliverySettings:
    smtp_port: int = _s(25, "TCP port used for delivery to MX and A hosts (tests use a high port).")
    max_per_host: int = _s(10, "Concurrent SMTP connections to one destination host.")
    max_connections: int = _s(100, "Concurrent outgoing SMTP connections in all.")
    connect_timeout: float = _s(30.0, "Seconds to wait for a remote server's TCP connection and greeting.")
    command_timeout: float = _s(300.0, "Seconds to wait for a remote server's reply to one command.")
    starttls: bool = _s(True, "Use STARTTLS when the remote server offers it (opportunistic, unverified).")
    bind_address: str = _s("", "Source address of outgoing SMTP connections (\"\" = the system chooses).")
    dane: bool = _s(True, "Use DANE (RFC 7672) where DNSSEC-validated TLSA records exist for an MX host (only with "
                          "dns.trust_ad): TLS matching them, or the message waits.")
    mta_sts: bool = _s(True, "Honour the MTA-STS policies (RFC 8461) of the domains we deliver to: 'enforce' asks for "
                             "TLS with a certificate valid for a listed MX host, or the message waits.")
    mta_sts_port: int = _s(443, "TCP port of the HTTPS policy servers (mta-sts.<domain>); tests use a high port.")
    mta_sts_timeout: float = _s(10.0, "Seconds a policy fetch may take.")
    tls_ca_file: str = _s("", "PEM file of the certificate authorities that verified outbound TLS (MTA-STS policy "
                              "fetches, enforce and verify deliveries) trusts; \"\" = the system's store.")
    tls_policy: list[str] = _s([], "Per-destination TLS, as 'domain=level' (a leading '.' covers sub-domains): "
                                   "'none' (never STARTTLS), 'may' (opportunistic), 'encrypt' (TLS required, not "
                                   "verified), 'verify' (TLS with a certificate valid for the MX host). It replaces "
                                   "MTA-STS and DANE for that domain.")


@dataclass(frozen=True, slots=True)
class QueueSettings:
    retry_intervals: list[int] = _s(
        [300, 600, 1200, 1800, 3600, 7200, 14400],
        "Seconds between delivery attempts; the last interval repeats until expiry.",
    )
    expire_after: int = _s(5 * 86400, "Seconds after which undelivered mail is bounced (default 5 days).")
    poll_interval: float = _s(1.0, "Seconds between looks at the queue index for due or released work.")
    lease: int = _s(600, "Seconds a worker holds a message it is delivering before others may retry it.")
    orphan_scan: float = _s(60.0, "Seconds between looks for spool files the index lost (a worker killed mid-commit).")


@dataclass(frozen=True, slots=True)
class RelaySettings:
    trusted_networks: list[str] = _s(["127.0.0.0/8", "::1/128"], "Client networks allowed to relay without AUTH.")
    backup_mx: bool = _s(False, "Relay to All Hosts We Backup: relay for domains whose MX lists this server below another host.")
    backup_mx_cache: int = _s(300, "Seconds a backup-MX decision is remembered.")


@dataclass(frozen=True, slots=True)
class SharingSettings:
    secret: str = _s("", "Minger shared secret (16 to 50 printable characters) our server checks (listen.minger).")
    allow_anonymous: bool = _s(False, "Answer Minger queries that carry no digest.")
    clients: list[str] = _s(["127.0.0.0/8", "::1/128"], "Networks whose Minger queries are answered (others get code 1).")
    timeout: float = _s(5.0, "Seconds to wait for the peers' Minger answers.")
    cache_ttl: int = _s(5 * 86400, "Seconds a peer's positive answer is remembered (negative answers are not).")
    query_senders: bool = _s(False, "Query Domain Sharing hosts for message senders: a MAIL FROM address in a shared "
                                     "domain must exist here or on a peer (else 550 5.1.0; 451 4.4.3 if a peer cannot be asked).")


@dataclass(frozen=True, slots=True)
class GatewaySettings:
    local_users_stay: bool = _s(True, "Gateway rules never forward mail for an existing local user.")
    relay_matched: bool = _s(False, "Accept a recipient as relay at RCPT time when a gateway rule forwards it.")
    check_local: bool = _s(True, "A recipient in a local domain that has no such user is not forwarded (550).")


@dataclass(frozen=True, slots=True)
class MetricsSettings:
    token: str = _s("", "Bearer token a scrape of listen.metrics must send (Authorization: Bearer ...); "
                        "\"\" = none asked.")


@dataclass(frozen=True, slots=True)
class ETRNSettings:
    clients: list[str] = _s(["0.0.0.0/0", "::/0"], "Client networks that may send ETRN (RFC 1985); others get 459.")
    domains: list[str] = _s([], "Domains ETRN may release (empty: every domain with queued mail).")


@dataclass(frozen=True, slots=True)
class MailAuthSettings:
    inbound: str = _s("off", "Checks of mail from outside at the SMTP listener (SPF for MAIL FROM and HELO, DKIM, DMARC; "
                             "not for relay.trusted_networks, mailauth.exempt_networks or logged-in senders): 'off'; "
                             "'tag' (an Authentication-Results field is added, forged ones with our host name are "
                             "removed, nothing is refused); 'enforce' (also DMARC p=reject: mailauth.dmarc_reject, "
                             "p=quarantine: into Junk, a DNS failure that leaves DMARC open: 451 4.7.1).")
    dmarc_reject: str = _s("reject", "Under enforce, what a DMARC failure of a p=reject domain gets, unless every "
                                     "recipient's domain says otherwise (waypost domain set --dmarc-reject): 'reject' "
                                     "(550 5.7.1 at the end of DATA) or 'junk' (accepted into the Junk mailbox).")
    exempt_networks: list[str] = _s([], "Client networks whose mail is not checked, besides relay.trusted_networks "
                                        "(e.g. a backup MX or a forwarding service of your own).")
    timeout: float = _s(10.0, "Seconds all the checks of one message may take (each DNS look-up has dns.timeout); "
                              "longer is a temporary error (451 4.7.1 under enforce).")
    arc_trusted_sealers: list[str] = _s([], "Domains whose ARC seals we trust (mailing lists, forwarders): a DMARC "
                                            "failure whose ARC chain passes and in which one of them recorded "
                                            "dmarc=pass gets disposition none (RFC 8617 §7.2).")
    arc_seal: bool = _s(True, "Seal (ARC, RFC 8617) mail from outside that was checked (mailauth.inbound) and is "
                              "sent on to another server (forwarders, groups, lists, gateway rules), with the "
                              "active RSA DKIM key of mailauth.arc_domain.")
    arc_domain: str = _s("", "Domain whose active RSA DKIM key seals (d= of the ARC-Seal); \"\" = the domain of "
                             "server.hostname (or its nearest parent with a key, up to the organisational domain).")


@dataclass(frozen=True, slots=True)
class MTASTSSettings:
    mode: str = _s("", "Our MTA-STS policy (RFC 8461), served at https://mta-sts.<domain>/.well-known/mta-sts.txt "
                       "for every hosted domain by listen.https: 'testing', 'enforce' or 'none'; \"\" = not served.")
    mx: list[str] = _s([], "The MX host names (or *.parent patterns) the policy lists; empty = server.hostname.")
    max_age: int = _s(604800, "Seconds senders may cache the policy (at most 31557600).")


@dataclass(frozen=True, slots=True)
class TLSRPTSettings:
    enabled: bool = _s(True, "Send TLS-RPT reports (RFC 8460) of our deliveries under MTA-STS and DANE policies to "
                             "the domains that publish _smtp._tls (rua=mailto: through the queue, https: by POST).")
    interval: int = _s(86400, "Seconds one report covers (RFC 8460: a UTC day); periods are aligned on the epoch. "
                              "Tests use a few seconds.")
    organization: str = _s("", "organization-name of the reports; \"\" = server.hostname.")
    contact: str = _s("", "contact-info of the reports; \"\" = postmaster@server.main_domain.")


@dataclass(frozen=True, slots=True)
class FilterSettings:
    rspamd: str = _s("", "Rspamd's normal worker as http://host:port (e.g. \"http://127.0.0.1:11333\"), asked "
                         "(POST /checkv2) after DATA for mail from outside (as mailauth.inbound chooses it); "
                         "\"\" = off.")
    rspamd_timeout: float = _s(20.0, "Seconds Rspamd may take for one message; then filter.rspamd_failure applies.")
    rspamd_failure: str = _s("open", "What a message gets when Rspamd does not answer in time or cannot be reached: "
                                     "'open' (accepted unscanned, logged) or 'closed' (451 4.7.1, the sender retries).")
    rspamd_controller: str = _s("", "Rspamd's controller worker as http://host:port (e.g. \"http://127.0.0.1:11334\"): "
                                    "a message moved into Junk is reported as spam (POST /learnspam), one moved out "
                                    "of Junk (not into Trash) as ham (/learnham); \"\" = off.")
    rspamd_password: str = _s("", "The controller's password (sent as its Password field; \"\" = none, for a "
                                  "controller that trusts our address through its secure_ip).")


@dataclass(frozen=True, slots=True)
class Settings:
    server: ServerSettings = field(default_factory=ServerSettings)
    listen: ListenSettings = field(default_factory=ListenSettings)
    storage: StorageSettings = field(default_factory=StorageSettings)
    tls: TLSSettings = field(default_factory=TLSSettings)
    smtp: SMTPSettings = field(default_factory=SMTPSettings)
    imap: IMAPSettings = field(default_factory=IMAPSettings)
    pop3: POP3Settings = field(default_factory=POP3Settings)
    managesieve: ManageSieveSettings = field(default_factory=ManageSieveSettings)
    ftp: FTPSettings = field(default_factory=FTPSettings)
    files: FilesSettings = field(default_factory=FilesSettings)
    web: WebSettings = field(default_factory=WebSettings)
    auth: AuthSettings = field(default_factory=AuthSettings)
    dns: DNSSettings = field(default_factory=DNSSettings)
    delivery: DeliverySettings = field(default_factory=DeliverySettings)
    queue: QueueSettings = field(default_factory=QueueSettings)
    relay: RelaySettings = field(default_factory=RelaySettings)
    etrn: ETRNSettings = field(default_factory=ETRNSettings)
    sharing: SharingSettings = field(default_factory=SharingSettings)
    gateway: GatewaySettings = field(default_factory=GatewaySettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    mailauth: MailAuthSettings = field(default_factory=MailAuthSettings)
    mta_sts: MTASTSSettings = field(default_factory=MTASTSSettings)
    tlsrpt: TLSRPTSettings = field(default_factory=TLSRPTSettings)
    filter: FilterSettings = field(default_factory=FilterSettings)
    # Not a setting: where the file was read from; paths are relative to it.
    data_dir: Path = field(default=Path("."), metadata={"internal": True})

    def path(self, relative: str) -> Path:
        """A setting's path, resolved against the data directory."""
        p = Path(relative)
        return p if p.is_absolute() else self.data_dir / p

    def replace(self, section: str, **values: Any) -> "Settings":
        """A copy with some keys of one section changed (used by tests and `init`)."""
        current = getattr(self, section)
        return dataclasses.replace(self, **{section: dataclasses.replace(current, **values)})


def _sections() -> list[tuple[str, type]]:
    hints = typing.get_type_hints(Settings)
    return [(f.name, hints[f.name]) for f in dataclasses.fields(Settings) if not f.metadata.get("internal")]


def _check_value(where: str, value: Any, expected: Any) -> Any:
    origin = typing.get_origin(expected)
    if origin is list:
        (item,) = typing.get_args(expected)
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {type(value).__name__}")
        return [_check_value(f"{where}[{i}]", v, item) for i, v in enumerate(value)]
    if expected is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if expected is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        return value
    if expected is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if expected is str:
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{where}: unsupported type {expected}")  # pragma: no cover - declaration bug


#: Keys read under an older name: (section, old key) -> the key's name now.
_RENAMED = {("listen", "sieve"): "managesieve"}


def settings_from_dict(raw: dict[str, Any], data_dir: Path) -> Settings:
    """Validate a parsed TOML document; every error names the offending key."""
    sections = dict(_sections())
    values: dict[str, Any] = {}
    for name, content in raw.items():
        if name not in sections:
            raise ConfigError(f"unknown section [{name}] (known: {', '.join(sections)})")
        if not isinstance(content, dict):
            raise ConfigError(f"{name}: expected a table [{name}]")
        cls = sections[name]
        hints = typing.get_type_hints(cls)
        known = {f.name for f in dataclasses.fields(cls)}
        kwargs = {}
        for key, value in content.items():
            new = _RENAMED.get((name, key))
            if new is not None:
                if new in content:
                    raise ConfigError(f"{name}.{key} and {name}.{new} are the same setting: keep only {name}.{new}")
                key = new
            if key not in known:
                raise ConfigError(f"unknown key {name}.{key} (known: {', '.join(sorted(known))})")
            kwargs[key] = _check_value(f"{name}.{key}", value, hints[key])
        values[name] = cls(**kwargs)
    settings = Settings(**values, data_dir=data_dir)
    _validate(settings)
    return settings


def _validate(s: Settings) -> None:
    for f in dataclasses.fields(ListenSettings):
        value = getattr(s.listen, f.name)
        if f.name == "lmtp" and value.startswith("/"):
            continue  # a Unix socket (checked when serve starts)
        if value:
            try:
                parse_hostport(value)
            except ValueError as e:
                raise ConfigError(f"listen.{f.name}: {e}") from None
    for i, ns in enumerate(s.dns.nameservers):
        try:
            parse_hostport(ns, default_port=53)
        except ValueError as e:
            raise ConfigError(f"dns.nameservers[{i}]: {e}") from None
    for key, nets in (("relay.trusted_networks", s.relay.trusted_networks), ("etrn.clients", s.etrn.clients),
                      ("sharing.clients", s.sharing.clients), ("mailauth.exempt_networks", s.mailauth.exempt_networks)):
        for i, net in enumerate(nets):
            try:
                ipaddress.ip_network(net, strict=False)
            except ValueError as e:
                raise ConfigError(f"{key}[{i}]: {e}") from None
    for key, domains in (("server.main_domain", [s.server.main_domain]), ("etrn.domains", s.etrn.domains)):
        for d in domains:
            try:
                normalize_domain(d)
            except AddressError as e:
                raise ConfigError(f"{key}: {d!r}: {e}") from None
    if s.server.log_format not in ("text", "json"):
        raise ConfigError("server.log_format: expected 'text' or 'json'")
    if s.server.log_level not in ("debug", "info", "warning", "error"):
        raise ConfigError("server.log_level: expected debug, info, warning or error")
    if s.imap.max_append_messages <= 0:
        raise ConfigError("imap.max_append_messages: must be positive")
    if s.imap.expunged_keep <= 0:
        raise ConfigError("imap.expunged_keep: must be positive")
    if not s.queue.retry_intervals or any(i <= 0 for i in s.queue.retry_intervals):
        raise ConfigError("queue.retry_intervals: expected a non-empty list of positive seconds")
    for name in ("max_message_size", "max_recipients", "max_line_length", "max_received_headers"):
        if getattr(s.smtp, name) <= 0:
            raise ConfigError(f"smtp.{name}: must be positive")
    for key, value in (("storage.listing_cache", s.storage.listing_cache), ("imap.search_cache", s.imap.search_cache)):
        if value < 0:
            raise ConfigError(f"{key}: must be 0 or more")
    if s.storage.pool_size <= 0 or s.storage.pool_timeout <= 0:
        raise ConfigError("storage.pool_size and storage.pool_timeout: must be positive")
    if s.smtp.max_line_length < 512:
        raise ConfigError("smtp.max_line_length: RFC 5321 §4.5.3.1.4 requires at least 512")
    if s.delivery.bind_address:
        try:
            ipaddress.ip_address(s.delivery.bind_address)
        except ValueError as e:
            raise ConfigError(f"delivery.bind_address: {e}") from None
    if not 0 < s.delivery.smtp_port < 65536:
        raise ConfigError("delivery.smtp_port: expected a TCP port number")
    if s.listen.minger and not s.sharing.allow_anonymous and not 16 <= len(s.sharing.secret) <= 50:
        raise ConfigError("sharing.secret: listen.minger is set, so a secret of 16 to 50 characters is needed"
                          " (or sharing.allow_anonymous = true)")
    a = s.auth
    if a.free_failures < 0 or a.block_after <= 0:
        raise ConfigError("auth.free_failures and auth.block_after: expected 0 or more, and 1 or more")
    for name in ("delay", "max_delay", "block_time", "window", "known_client_days", "verified_cache_size",
                 "verified_cache_ttl"):
        if getattr(a, name) < 0:
            raise ConfigError(f"auth.{name}: must not be negative")
    if a.argon2_memory < 32 or a.argon2_passes < 1:  # argon2: 8 KiB per lane at least
        raise ConfigError("auth.argon2_memory and auth.argon2_passes: expected 32 or more, and 1 or more")
    if s.files.size_limit < 0:
        raise ConfigError("files.size_limit: must be 0 or more")
    try:
        parse_port_range(s.ftp.passive_ports)
    except ValueError as e:
        raise ConfigError(f"ftp.passive_ports: {e}") from None
    if s.ftp.max_connections <= 0 or s.ftp.max_connections_per_ip <= 0 or s.ftp.max_login_failures <= 0:
        raise ConfigError("ftp.max_connections, ftp.max_connections_per_ip, ftp.max_login_failures: must be positive")
    if s.server.listen_backlog <= 0:
        raise ConfigError("server.listen_backlog: must be positive")
    if s.dns.trust_ad:
        for ns in s.dns.nameservers or ["(the system's resolver)"]:
            try:
                loopback = ipaddress.ip_address(parse_hostport(ns, default_port=53)[0]).is_loopback
            except ValueError:
                loopback = False
            if not loopback:
                raise ConfigError(f"dns.trust_ad: name server {ns} is not on this host (127.0.0.1 or ::1): "
                                  "its AD bit could be forged on the way")
    if s.tlsrpt.interval < 1:
        raise ConfigError("tlsrpt.interval: at least 1 second")
    if s.mta_sts.mode not in ("", "testing", "enforce", "none"):
        raise ConfigError("mta_sts.mode: expected \"\", 'testing', 'enforce' or 'none'")
    if not 0 <= s.mta_sts.max_age <= 31557600:
        raise ConfigError("mta_sts.max_age: from 0 to 31557600 seconds (RFC 8461 §3.2)")
    for entry in s.delivery.tls_policy:
        name, eq, level = entry.partition("=")
        if not eq or not name.strip() or level.strip() not in ("none", "may", "encrypt", "verify"):
            raise ConfigError(f"delivery.tls_policy: {entry!r}: expected 'domain=none|may|encrypt|verify'")
    if s.mailauth.inbound not in ("off", "tag", "enforce"):
        raise ConfigError("mailauth.inbound: expected 'off', 'tag' or 'enforce'")
    if s.mailauth.dmarc_reject not in ("reject", "junk"):
        raise ConfigError("mailauth.dmarc_reject: expected 'reject' or 'junk'")
    if s.mailauth.timeout <= 0:
        raise ConfigError("mailauth.timeout: must be positive")
    if s.filter.rspamd and not re.fullmatch(r"http://[^/\s:]+(:\d{1,5})?(/\S*)?", s.filter.rspamd):
        raise ConfigError("filter.rspamd: expected http://host:port, e.g. \"http://127.0.0.1:11333\"")
    if s.filter.rspamd_controller and not re.fullmatch(r"http://[^/\s:]+(:\d{1,5})?(/\S*)?",
                                                        s.filter.rspamd_controller):
        raise ConfigError("filter.rspamd_controller: expected http://host:port, e.g. \"http://127.0.0.1:11334\"")
    if s.filter.rspamd_failure not in ("open", "closed"):
        raise ConfigError("filter.rspamd_failure: expected 'open' or 'closed'")
    if s.filter.rspamd_timeout <= 0:
        raise ConfigError("filter.rspamd_timeout: must be positive")
    if s.server.workers < 0:
        raise ConfigError("server.workers: expected 0 (one per usable CPU) or more")


def load_settings(data_dir: str | os.PathLike[str]) -> Settings:
    """Read ``DATA/waypost.toml``; raises ConfigError naming the key on any problem."""
    directory = Path(data_dir).resolve()
    path = directory / SETTINGS_FILE
    try:
        with open(path, "rb") as f:
            raw = tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"{path}: not found (create it with 'waypost init {data_dir}')") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: {e}") from None
    return settings_from_dict(raw, directory)


def parse_hostport(value: str, default_port: int | None = None) -> tuple[str, int]:
    """``host:port``, ``[v6]:port`` or (with a default port) a bare host."""
    value = value.strip()
    if value.startswith("["):
        host, sep, rest = value[1:].partition("]")
        if not sep:
            raise ValueError(f"{value!r}: unbalanced '['")
        port_text = rest[1:] if rest.startswith(":") else ""
        if rest and not rest.startswith(":"):
            raise ValueError(f"{value!r}: expected ':' after ']'")
    elif value.count(":") == 1:
        host, _, port_text = value.partition(":")
    elif value.count(":") > 1:
        host, port_text = value, ""  # a bare IPv6 address
    else:
        host, port_text = value, ""
    if not host:
        raise ValueError(f"{value!r}: no host")
    if not port_text:
        if default_port is None:
            raise ValueError(f"{value!r}: expected host:port")
        return host, default_port
    if not port_text.isdigit() or not 0 <= int(port_text) < 65536:
        raise ValueError(f"{value!r}: bad port {port_text!r}")
    return host, int(port_text)


def parse_port_range(value: str) -> range:
    """``first-last`` TCP ports, both included."""
    first, sep, last = value.strip().partition("-")
    if not sep or not first.strip().isdigit() or not last.strip().isdigit():
        raise ValueError(f"{value!r}: expected first-last, e.g. 50000-50099")
    lo, hi = int(first), int(last)
    if not 1024 <= lo <= hi < 65536:
        raise ValueError(f"{value!r}: expected ports from 1024 to 65535, first <= last")
    return range(lo, hi + 1)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    escaped = str(value).replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def render_toml(settings: Settings) -> str:
    """A complete, commented settings file for ``settings``."""
    lines = ["# Waypost settings. Every key is documented in README.md (Configuration).", ""]
    for name, cls in _sections():
        lines.append(f"[{name}]")
        section = getattr(settings, name)
        for f in dataclasses.fields(cls):
            lines.append(f"# {f.metadata['doc']}")
            lines.append(f"{f.name} = {_toml_value(getattr(section, f.name))}")
        lines.append("")
    return "\n".join(lines)


def _type_name(tp: Any) -> str:
    if typing.get_origin(tp) is list:
        return f"list of {_type_name(typing.get_args(tp)[0])}"
    if isinstance(tp, types.GenericAlias):  # pragma: no cover
        return str(tp)
    return {str: "string", int: "integer", float: "number", bool: "boolean"}.get(tp, str(tp))


def reference_markdown() -> str:
    """The configuration reference, one table row per key (README.md carries it)."""
    out = ["| key | type | default | meaning |", "| --- | --- | --- | --- |"]
    defaults = Settings()
    for name, cls in _sections():
        hints = typing.get_type_hints(cls)
        for f in dataclasses.fields(cls):
            default = _toml_value(getattr(getattr(defaults, name), f.name))
            out.append(f"| `{name}.{f.name}` | {_type_name(hints[f.name])} | `{default}` | {f.metadata['doc']} |")
    return "\n".join(out)
