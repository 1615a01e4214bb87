"""The ``Server``: one object that owns the data directory, the database, the directory,
the router, the mailstore and the queue, and runs the listeners of one worker.

``serve`` binds every listening socket once, recovers the queue from the spool, and
then runs one worker in this process or forks ``server.workers`` workers that share the
sockets.  A worker behaves like a cluster node: everything shared is in the database and
the file system.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import errno
import gc
import hashlib
import hmac
import ipaddress
import logging
import os
import signal
import socket
import stat
import ssl
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from .acceptor import Acceptor, Balance
from .config import Settings, parse_hostport, parse_port_range
from .certs import ServerTLS, make_tls_context, write_self_signed
from .datadir import owned_by_others, switch_user, user_ids
from .db import ObjectRecord, StorageUnavailable, database_problem, is_postgresql, open_database
from .directory import Directory, password_hasher
from .directory.throttle import LoginThrottle, ThrottlePolicy, log_auth_failed
from .directory.verified import VerifiedLogins
from .files import FileStore
from .log import configure_logging, event
from . import metrics
from .metrics.listener import MAX_REQUEST_HEAD, MetricsListener
from .bus import Bus
from .imap.proto import Params
from .imap.server import IMAPService
from .imap.server import Limits as IMAPLimits
from .imap.commands.search import search_cache_held, set_search_cache
from .imap.message import list_keys
from .mailauth import Sealer, Signer, load_psl
from .mailstore import Mailstore
from .pop3 import POP3Service
from .queue import QueueManager, release_dead_worker
from .queue.manager import NODE_HEARTBEAT, RECOVERY_PENDING, cluster_node
from .router import Context, Router
from .router.resolve import GatewayOptions
from .rules import credentials_for, gateway_store, rules_store
from .rules.srs import SRS
from .secrets import Secrets
from .sharing import MingerServer, directory_code
from .sharing.peers import ask_peers
from .smtp.server import SMTPService, WaypostSMTP
# The SMTP handler table is imported here, before the workers fork, not by each
# worker's first session (that one waited for the import, and a worker compiled the
# modules again wherever no bytecode cache could be written).
from .smtp import commands as _smtp_commands  # noqa: F401

if TYPE_CHECKING:
    from .ftp import FTPService
    from .web import WebService
    from .sieve.managesieve import ManageSieveService

__all__ = ["Problem", "Server", "bind_listeners", "default_workers", "own_addresses", "serve", "startup_problems"]

log = logging.getLogger("waypost.server")

#: Listeners this version serves (the others in [listen] are refused when set).
SERVED = ("smtp", "submission", "submissions", "odmr", "lmtp", "imap", "imaps", "pop3", "pop3s", "ftp", "http",
          "https", "managesieve", "metrics")
#: The SMTP listeners among them.
SMTP_LISTENERS = ("smtp", "submission", "odmr", "lmtp")
#: Listeners with TLS from the first octet (RFC 8314), and the plain listener each one mirrors.
IMPLICIT_TLS = {"submissions": "submission", "imaps": "imap", "pop3s": "pop3"}
#: Every TCP/UDP listener, in the order they are bound.
ALL_LISTENERS = ("smtp", "submission", "submissions", "odmr", "lmtp", "imap", "imaps", "pop3", "pop3s", "ftp", "http",
                 "https", "minger", "managesieve", "metrics")


@dataclass(frozen=True, slots=True)
class Problem:
    """Something in the settings that stops ``serve`` (``fatal``) or that it works
    around; ``key`` is the setting to look at."""

    key: str
    text: str
    fatal: bool = True

    def __str__(self) -> str:
        return f"{self.key}: {self.text}"


def startup_problems(settings: Settings, probe_ports: bool = False) -> list[Problem]:
    """Every problem ``serve`` would meet at start-up because of the settings, found
    without starting anything (``waypost config check`` prints them; ``serve`` refuses to
    start on a fatal one).  ``probe_ports`` also binds each listening address for a
    moment: an address in use is only a warning (a running server holds it)."""
    out: list[Problem] = []
    db = database_problem(settings.storage.database, settings.data_dir)
    if db is not None:
        out.append(Problem("storage.database", db))
    elif probe_ports and is_postgresql(settings.storage.database):
        # Only a warning: serve starts anyway and answers 451 until the database is back.
        try:
            probe = open_database(settings.storage.database, settings.data_dir, pool_size=1, pool_timeout=3.0)
            try:
                probe.list_domains()
            finally:
                probe.close()
        except StorageUnavailable as e:
            out.append(Problem("storage.database", f"{e} (serve would answer 451 until it is reachable)",
                               fatal=False))
    for key in ("spool", "mail", "files"):
        path = settings.path(getattr(settings.storage, key))
        if path.exists() and not path.is_dir():
            out.append(Problem(f"storage.{key}", f"{path}: not a directory"))
    out += _listener_problems(settings, probe_ports)
    out += _tls_problems(settings)
    out += _user_problems(settings)
    return out


def _listener_problems(settings: Settings, probe_ports: bool) -> list[Problem]:
    out: list[Problem] = []
    seen: dict[tuple[str, int, bool], str] = {}
    for name in ALL_LISTENERS:
        value = getattr(settings.listen, name)
        if not value:
            continue
        key = f"listen.{name}"
        if name == "lmtp" and value.startswith("/"):
            problem = _unix_socket_problem(value)
            if problem is not None:
                out.append(Problem(key, problem))
            continue
        if name not in SERVED and name != "minger":
            out.append(Problem(key, "this listener is not available in this version; set it to \"\""))
            continue
        host, port = parse_hostport(value)
        udp = name == "minger"
        if (host, port, udp) in seen:
            out.append(Problem(key, f"{value} is also listen.{seen[host, port, udp]}"))
            continue
        seen[host, port, udp] = name
        if probe_ports:
            failure = _probe(host, port, udp)
            if failure is not None and failure.errno == errno.EADDRINUSE:
                out.append(Problem(key, f"{value} is in use now (by a running server?)", fatal=False))
            elif failure is not None:
                out.append(Problem(key, f"cannot listen on {value}: {failure.strerror}"))
    return out


def _probe(host: str, port: int, udp: bool) -> OSError | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM if udp else socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT if udp else socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as e:
        return e
    finally:
        sock.close()
    return None


def _self_signed_allowed(settings: Settings) -> bool:
    """A missing certificate is made anew only where ``init`` would have made it: both
    files missing, both inside the data directory (never over a path that an
    administrator set to a real certificate elsewhere)."""
    cert, key = settings.path(settings.tls.certificate), settings.path(settings.tls.key)
    return (not cert.exists() and not key.exists()
            and cert.is_relative_to(settings.data_dir) and key.is_relative_to(settings.data_dir))


def _tls_problems(settings: Settings) -> list[Problem]:
    cert, key = settings.path(settings.tls.certificate), settings.path(settings.tls.key)
    if _self_signed_allowed(settings):
        return [Problem("tls.certificate", f"{cert} not found: serve will make a new self-signed certificate for"
                        f" {settings.server.hostname}", fatal=False)]
    for name, path in (("tls.certificate", cert), ("tls.key", key)):
        if not path.is_file():
            return [Problem(name, f"{path}: not found (IMAP and POP3 logins need TLS)")]
    try:
        ssl.create_default_context(ssl.Purpose.SERVER_AUTH).load_verify_locations(cafile=str(cert))
    except (ssl.SSLError, OSError) as e:
        return [Problem("tls.certificate", f"{cert}: not a usable PEM certificate ({e})")]
    try:
        make_tls_context(str(cert), str(key))
    except (ssl.SSLError, OSError) as e:
        return [Problem("tls.key", f"{key}: not the private key of {cert} ({e})")]
    return []


def _user_problems(settings: Settings) -> list[Problem]:
    name = settings.server.user
    if not name:
        return []
    try:
        uid, _ = user_ids(name)
    except KeyError:
        return [Problem("server.user", f"no such user {name!r}")]
    if os.geteuid() == 0:
        others = owned_by_others(settings, uid)
        if others:
            return [Problem("server.user", f"not owned by {name}: {', '.join(map(str, others))}"
                            f" (chown -R {name}: {settings.data_dir})")]
    elif os.geteuid() != uid:
        return [Problem("server.user", f"serve must start as root (to become {name}) or as {name}")]
    return []


def bind_listeners(settings: Settings) -> dict[str, socket.socket]:
    sockets: dict[str, socket.socket] = {}
    for name in ALL_LISTENERS:
        value = getattr(settings.listen, name)
        if not value or name == "minger":  # UDP: each worker binds it (SO_REUSEPORT)
            continue
        if name not in SERVED:  # pragma: no cover - startup_problems refused it first
            raise SystemExit(f"listen.{name}: this listener is not available in this version; set it to \"\"")
        if name == "lmtp" and value.startswith("/"):
            sockets[name] = _bind_unix(value, settings.server.listen_backlog, sockets)
            continue
        host, port = parse_hostport(value)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        # IPPROTO_TCP, not 0: accepted sockets inherit it, and asyncio turns Nagle off
        # (TCP_NODELAY) only for sockets that say they are TCP.  With Nagle on, the last
        # line of a reply written in pieces waits for the client's delayed ACK (~40 ms).
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((host, port))
        except OSError as e:
            sock.close()
            for other in sockets.values():
                other.close()
            raise SystemExit(f"listen.{name}: cannot listen on {value}: {e.strerror}") from None
        sock.listen(settings.server.listen_backlog)
        sock.setblocking(False)
        sockets[name] = sock
    return sockets


def _unix_socket_problem(path: str) -> str | None:
    """Why a Unix socket cannot be made at ``path`` (None: it can)."""
    p = Path(path)
    if not p.parent.is_dir():
        return f"{p.parent} is not a directory"
    if p.exists() or p.is_symlink():
        if not stat.S_ISSOCK(p.lstat().st_mode):
            return f"{path} exists and is not a socket"
        if _socket_in_use(path):
            return f"{path} is in use now (by a running server?)"
    return None


def _socket_in_use(path: str) -> bool:
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
        return True
    except OSError:
        return False
    finally:
        probe.close()


def _bind_unix(path: str, backlog: int, bound: dict[str, socket.socket]) -> socket.socket:
    """A listening Unix socket at ``path``; a stale socket file nobody listens on (a
    server that was killed) is replaced."""
    problem = _unix_socket_problem(path)
    if problem is None and os.path.lexists(path):
        os.unlink(path)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        if problem is not None:
            raise OSError(errno.EADDRINUSE, problem)
        sock.bind(path)
        os.chmod(path, 0o666)
    except OSError as e:
        sock.close()
        for other in bound.values():
            other.close()
        raise SystemExit(f"listen.lmtp: cannot listen on {path}: {e.strerror}") from None
    sock.listen(backlog)
    sock.setblocking(False)
    return sock


def own_addresses(settings: Settings) -> list[str]:
    """The server's own IP addresses: loopback and every listener's address."""
    out = {"127.0.0.1", "::1"}
    for name in SERVED:
        value = getattr(settings.listen, name)
        if value and not value.startswith("/"):
            host, _ = parse_hostport(value)
            try:
                out.add(str(ipaddress.ip_address(host)))
            except ValueError:
                pass
    return sorted(out)


class Server:
    def __init__(self, settings: Settings, tls: ssl.SSLContext | None = None, ftp_tls: Any = None) -> None:
        self.settings = settings
        self.owner = f"{settings.server.hostname}/{os.getpid()}"
        self.db = open_database(settings.storage.database, settings.data_dir,
                                pool_size=settings.storage.pool_size, pool_timeout=settings.storage.pool_timeout)
        self.secrets = Secrets(settings.data_dir)
        self.directory = Directory(self.db, settings.server.main_domain, secrets=self.secrets,
                                   hasher=password_hasher(settings.auth.argon2_memory, settings.auth.argon2_passes))
        self.srs = SRS(self.secrets.derive("srs"), settings.server.main_domain)
        g = settings.gateway
        self.router = Router(self.directory, settings.relay.trusted_networks, self._own_addresses(),
                             forwarding=gateway_store(self.db).get,
                             gateway=GatewayOptions(g.local_users_stay, g.relay_matched, g.check_local),
                             srs=self.srs)
        self.bus = Bus(settings.data_dir / "run")
        self.mailstore = Mailstore(settings.path(settings.storage.mail), settings.server.hostname, self.db, self.bus,
                                   listing_cache=settings.storage.listing_cache)
        self.mailstore.sort_keys = list_keys  # kept as each message is stored (WebUser's sorts)
        self.queue = QueueManager(settings, self.db, self.router, self.mailstore, self.owner, self.is_self,
                                  credentials=lambda who: credentials_for(self.db, self.secrets, who), srs=self.srs,
                                  signer=Signer(self.db, self.secrets),
                                  sealer=Sealer(self.db, self.secrets, settings.server.hostname,
                                                settings.mailauth.arc_domain) if settings.mailauth.arc_seal else None)
        self._servers: list[Acceptor | asyncio.base_events.Server] = []
        self._service: SMTPService | None = None
        self._minger: MingerServer | None = None
        self._imap: IMAPService | None = None
        self._pop3: POP3Service | None = None
        self._ftp: "FTPService | None" = None
        self._ftp_tls = ftp_tls
        self._web: "WebService | None" = None
        self._managesieve: "ManageSieveService | None" = None
        self._learner: Any = None  # waypost.mailauth.learn.Learner, with filter.rspamd_controller
        self.balance: Balance | None = None  # with several workers: see waypost.acceptor
        self.files = FileStore(settings.path(settings.storage.files), self.directory, settings.files.size_limit)
        self._tls = tls if tls is not None else self._tls_context()
        self._dummy: ObjectRecord | None = None
        # Password checks (argon2: ~0.1 s of CPU and 64 MiB each) run on their own two
        # threads, at most 8 waiting: a flood of AUTH attempts cannot starve the queue's
        # database and Maildir work, which uses the default executor.
        self._hash_pool = concurrent.futures.ThreadPoolExecutor(max_workers=2, thread_name_prefix="passwords")
        self._hash_slots = asyncio.Semaphore(8)
        self._warming: set[tuple[str, str]] = set()  # accounts whose INBOX a login is warming
        a = settings.auth
        self.throttle = LoginThrottle(self.db, ThrottlePolicy(a.free_failures, a.delay, a.max_delay, a.block_after,
                                                              a.block_time, a.window, a.known_client_days))
        # Successful checks remembered for a while (see VerifiedLogins: keyed by the
        # stored hash, which a password change replaces in every worker at once).
        self._verified = VerifiedLogins(a.verified_cache_size, a.verified_cache_ttl)

    def _own_addresses(self) -> list[str]:
        return own_addresses(self.settings)

    def _smtp_endpoints(self) -> set[tuple[str, int]]:
        out = set()
        if self.settings.listen.smtp:
            host, port = parse_hostport(self.settings.listen.smtp)
            out.add((host, port))
        return out

    def is_self(self, host: str, ip: str, port: int) -> bool:
        """Whether a delivery hop is this very server (RFC 5321 §5.1 loop check)."""
        for lhost, lport in self._smtp_endpoints():
            if port != lport:
                continue
            if host.rstrip(".").lower() == self.settings.server.hostname.lower():
                return True
            if lhost in ("0.0.0.0", "::"):
                try:
                    if ipaddress.ip_address(ip).is_loopback:
                        return True
                except ValueError:
                    pass
            if ip == lhost:
                return True
        return False

    def _tls_context(self) -> Any:
        cert = self.settings.path(self.settings.tls.certificate)
        key = self.settings.path(self.settings.tls.key)
        if cert.exists() and key.exists():
            return ServerTLS.load(str(cert), str(key))
        log.warning("event=no-tls cert=%s (STARTTLS not offered)", cert)
        return None

    # -- authentication -------------------------------------------------------------

    async def authenticate(self, login: str, password: str, server_ip: str | None, client_ip: str | None = None,
                           proto: str = "smtp") -> str | None:
        """The account address for a login name and password, or None (never says why).
        Throttled and logged (``LoginThrottle``)."""
        return await self._authenticate(login, password, server_ip, client_ip, proto, warm=False)

    def reader_login(self, proto: str) -> Callable[[str, str, str | None, str | None], Awaitable[str | None]]:
        """``authenticate`` for IMAP and POP3 (``proto``).  While the password hash is
        checked (a tenth of a second of C code that lets go of the interpreter),
        another thread brings the account's INBOX index up to date, so that the SELECT
        or the maildrop that follows a login finds it ready instead of scanning then.
        Nothing is sent before the check ends; what a wrong password can cause is
        bounded (see ``_warm_inbox``)."""
        async def check(login: str, password: str, server_ip: str | None, client_ip: str | None) -> str | None:
            return await self._authenticate(login, password, server_ip, client_ip, proto, warm=True)
        return check

    async def _authenticate(self, login: str, password: str, server_ip: str | None, client_ip: str | None,
                            proto: str, warm: bool) -> str | None:
        account = self.router.resolve_login(login, Context(kind="access", server_ip=server_ip))

        async def verify() -> bool:
            if account is None:
                # Spend the same time as a real check, so that names cannot be probed.
                if self._dummy is None:
                    self._dummy = ObjectRecord("", "", "account", {"password": self.directory.hash_password("x" * 16)})
                await self._verify(self._dummy, password, remember=False)
                return False
            if warm and account.kind == "account" and account.data.get("enabled", True):
                self._warm_inbox(account.domain, account.name)
            return await self._verify(account, password)

        return await self._guarded(login, account, client_ip, proto, verify)

    async def _guarded(self, login: str, account: ObjectRecord | None, client_ip: str | None, proto: str,
                       verify: Callable[[], Awaitable[bool]]) -> str | None:
        """One login attempt through the throttle: wait, or refuse a blocked one
        unchecked; count a failure, remember a success's client; log every failure."""
        address = account.address if account is not None else None
        loop = asyncio.get_running_loop()
        waited = 0.0
        while True:
            verdict = self.throttle.assess(client_ip, address, time.time())
            if verdict.delay > waited:
                await asyncio.sleep(verdict.delay - waited)
                waited = verdict.delay
                continue  # look again: the failures of attempts made meanwhile count
            if verdict.blocked:
                log_auth_failed(proto, client_ip, login, "blocked")
                metrics.login(proto, False, "blocked")
                return None
            # A free slot is taken without yielding to the event loop: nothing of this
            # process ran since the look above, which then stands (one database read
            # per login instead of two; on PostgreSQL a round trip the loop waited for).
            queued = self._hash_slots.locked()
            async with self._hash_slots:
                # The decisive look, holding a slot to check the password in: attempts
                # that arrived side by side (50 connections at once) are checked one
                # slot at a time, each seeing the failures counted before it.
                if queued:
                    verdict = self.throttle.assess(client_ip, address, time.time())
                if verdict.delay <= waited and not verdict.blocked:
                    ok = await verify()
                    if not ok:  # counted before the slot is let go
                        await loop.run_in_executor(None, self.throttle.failed, verdict, time.time())
                    break
        if not ok:
            log_auth_failed(proto, client_ip, login, "credentials")
            metrics.login(proto, False, "credentials")
            return None
        assert address is not None
        metrics.login(proto, True)
        await loop.run_in_executor(None, self.throttle.succeeded, verdict, address, time.time())
        return address

    def _warm_inbox(self, domain: str, name: str) -> None:
        """Before the password is known, so bounded: an existing INBOX only (nothing is
        created), one warm-up per account and ``_WARM_AT_ONCE`` per worker at a time
        (more logins simply do not warm), and a sync that found nothing new costs two
        stat calls."""
        key = (domain, name)
        if key in self._warming or len(self._warming) >= _WARM_AT_ONCE:
            return
        self._warming.add(key)
        # Logged before the password check ends, so before the login's own log line.
        log.debug("event=inbox-warm account=%s@%s", name, domain)

        def work() -> None:
            inbox = self.db.mailbox_get(domain, name, "INBOX")
            if inbox is not None:
                self.mailstore.sync(inbox)
                # What SELECT needs (the UIDs, from the UID file when this worker has
                # not read the listing): the records are read when a command needs them.
                selection = self.mailstore.selection(inbox)
                # And what it looks up: the account's mailbox aliases (cached under the
                # change token) and the first message without \Seen (kept for this
                # state); on PostgreSQL this also readies the connection for these reads.
                self.db.mailbox_alias_list(domain, name)
                if inbox.unseen:
                    self.mailstore.first_unseen(inbox.id, selection.state)

        def done(future: "asyncio.Future[None]") -> None:
            self._warming.discard(key)
            if not future.cancelled() and future.exception() is not None:
                log.warning("event=inbox-warm-failed account=%s@%s error=%r", name, domain, future.exception())

        asyncio.get_running_loop().run_in_executor(None, work).add_done_callback(done)

    async def authenticate_cram(self, login: str, challenge: str, digest: str, server_ip: str | None,
                                client_ip: str | None = None, proto: str = "smtp") -> str | None:
        """RFC 2195 CRAM-MD5 against the account's sealed secret (``account passwd --cram-md5``);
        throttled and logged like ``authenticate``."""
        account = self.router.resolve_login(login, Context(kind="access", server_ip=server_ip))

        async def verify() -> bool:
            secret = self.directory.cram_secret(account) if account is not None else None
            if secret is None:
                return False
            expected = hmac.new(secret.encode("utf-8"), challenge.encode("ascii"), hashlib.md5).hexdigest()
            return hmac.compare_digest(expected, digest)

        return await self._guarded(login, account, client_ip, proto, verify)

    async def ask_peers(self, address: str) -> dict[str, int | str]:
        """Domain sharing: every peer that shares the address's domain, asked at once by
        Minger; a positive answer is remembered (sharing.cache_ttl)."""
        sharing = self.settings.sharing
        answers = await ask_peers(self.db, self.secrets, address, sharing.timeout, sharing.cache_ttl)
        if answers:
            metrics.minger_lookup(answers)
        event(log, "minger-lookup", address=address, answers=",".join(f"{h}={a}" for h, a in answers.items()))
        return answers

    async def _verify(self, account: ObjectRecord, password: str, remember: bool = True) -> bool:
        """(Called holding one of ``_hash_slots``, after the throttle let the attempt
        through: see ``_guarded``.)  A password verified for the account's present hash
        within ``auth.verified_cache_ttl`` is accepted without the argon2 check; only
        successes are remembered.  ``remember=False`` for the dummy check of an unknown
        name, whose timing must stay that of a full check."""
        if remember and self._verified.known(account, password):
            event(log, "password-check", level=logging.DEBUG, account=account.address, cached="yes", ok="yes",
                  pid=os.getpid())
            return True
        loop = asyncio.get_running_loop()
        ok = await loop.run_in_executor(self._hash_pool, self.directory.verify_password, account, password)
        if remember:
            if ok:
                self._verified.remember(account, password)
            event(log, "password-check", level=logging.DEBUG, account=account.address, cached="no",
                  ok="yes" if ok else "no", pid=os.getpid())
        return bool(ok)

    # -- running ------------------------------------------------------------------

    async def start(self, sockets: dict[str, socket.socket]) -> None:
        loop = asyncio.get_running_loop()
        await self.queue.start()
        service = SMTPService(self.settings, self.router, self.queue, self.authenticate, self._tls,
                              self.authenticate_cram, self.ask_peers, rules_store(self.db).get,
                              mailstore=self.mailstore, lookup_account=self.directory.account_named)
        self._service = service
        await self.bus.start()
        link_bus(self.bus, self.db, self.settings.server.hostname)
        from .mailstore.maildir import LISTINGS_TOPIC

        self.bus.subscribe(LISTINGS_TOPIC, self.mailstore.forget_listings)
        if self.settings.filter.rspamd_controller:
            from .mailauth.learn import Learner

            # Moves into and out of Junk (IMAP, WebUser) reported to Rspamd's controller.
            self._learner = Learner(self.settings, loop)
            self.mailstore.on_copy = self._learner.copied
        # The protocol listeners are served by an Acceptor (one connection a wake-up, so
        # the workers sharing the socket share its connections); the socket's backlog is
        # the master's listen(server.listen_backlog).  start_server (ManageSieve,
        # metrics) calls listen() again, with the setting passed on.
        backlog = self.settings.server.listen_backlog
        for name, sock in sockets.items():
            # submissions, imaps, pop3s (RFC 8314): the service of the plain listener,
            # with the TLS handshake first (the same context, so the same certificate).
            kind = IMPLICIT_TLS.get(name, name)
            tls: dict[str, Any] = {}
            if name in IMPLICIT_TLS:
                if self._tls is None:  # pragma: no cover - startup_problems refused it first
                    raise RuntimeError(f"listen.{name} needs tls.certificate and tls.key")
                tls = {"tls": self._tls, "handshake_timeout": 60.0}
            server: Acceptor | asyncio.base_events.Server
            if kind in SMTP_LISTENERS:
                server = Acceptor(loop, sock, _counted(_smtp_factory(service, kind), name), name=name, **tls,
                                  balance=self.balance)
            elif kind == "imap":
                if self._imap is None:
                    self._imap = self._imap_service()
                    self._imap.start_pruning()
                server = Acceptor(loop, sock, _counted(self._imap.protocol_factory(), name), name=name, **tls,
                                  balance=self.balance)
            elif kind == "pop3":
                if self._pop3 is None:
                    pop3 = self.settings.pop3
                    self._pop3 = POP3Service(self.mailstore, self.reader_login("pop3"), self._tls,
                                             hostname=self.settings.server.hostname,
                                             plaintext_without_tls=pop3.plaintext_without_tls,
                                             failure_delay=pop3.failure_delay, max_failures=pop3.max_login_failures,
                                             idle_timeout=pop3.idle_timeout)
                server = Acceptor(loop, sock, _counted(self._pop3.protocol_factory(), name), name=name, **tls,
                                  balance=self.balance)
            elif name == "managesieve":
                self._managesieve = self._managesieve_service()
                handle = self._managesieve.handle

                async def counted_sieve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
                    metrics.connection("sieve")
                    await handle(reader, writer)

                server = await asyncio.start_server(counted_sieve, sock=sock, backlog=backlog)
            elif name == "metrics":  # counts its own connections
                scrape = MetricsListener(metrics.metrics_dir(self.settings.data_dir), self.db,
                                         self.settings.metrics.token)
                server = await asyncio.start_server(scrape.handle, sock=sock, backlog=backlog,
                                                    limit=MAX_REQUEST_HEAD)
            elif name in ("http", "https"):  # WebUser and the file areas (waypost.web)
                if name == "https" and self._tls is None:
                    raise RuntimeError("listen.https needs tls.certificate and tls.key")
                server = self._web_service().serve(sock, self._tls if name == "https" else None, name, self.balance)
            elif name == "ftp":  # pyftpdlib's own threads, not asyncio (see waypost.ftp)
                self._ftp = self._ftp_service()
                self._ftp.start(sock, loop, backlog)
                continue
            else:  # pragma: no cover - bind_listeners refuses what is not served
                raise RuntimeError(f"no service for listener {name}")
            self._servers.append(server)
        if self.settings.listen.minger:
            host, port = parse_hostport(self.settings.listen.minger)
            sharing = self.settings.sharing
            self._minger = MingerServer(
                lambda mailbox: directory_code(self.db, mailbox), allowed_networks=sharing.clients,
                secret=sharing.secret or None, allow_anonymous=sharing.allow_anonymous, host=host, port=port,
                reuse_port=True,
            )
            await self._minger.start()

    def _imap_service(self) -> IMAPService:
        imap = self.settings.imap
        limits = IMAPLimits(plaintext_without_tls=imap.plaintext_without_tls, idle_timeout=imap.idle_timeout,
                            login_timeout=imap.login_timeout, failure_delay=imap.failure_delay,
                            max_failures=imap.max_login_failures, max_bad_commands=imap.max_bad_commands,
                            expunged_keep=imap.expunged_keep, idle_recheck=imap.idle_check_interval)
        params = Params(max_line_length=imap.max_line_length, max_literal_size=imap.max_append_size,
                        max_command_size=imap.max_append_size + 1024 * 1024,
                        max_append_messages=imap.max_append_messages)
        set_search_cache(imap.search_cache)
        metrics.report_search_cache(search_cache_held)
        return IMAPService(self.mailstore, self.reader_login("imap"), self._tls, hostname=self.settings.server.hostname,
                           lookup=self.directory.account_named, bus=self.bus, limits=limits, params=params)

    def _managesieve_service(self) -> "ManageSieveService":
        from .sieve.managesieve import ManageSieveService

        m = self.settings.managesieve
        async def login(name: str, password: str, server_ip: str | None, client_ip: str | None) -> str | None:
            return await self.authenticate(name, password, server_ip, client_ip, "managesieve")

        return ManageSieveService(self.db, login, self._tls,
                                  hostname=self.settings.server.hostname, plaintext_without_tls=m.plaintext_without_tls,
                                  idle_timeout=m.idle_timeout, max_scripts=m.max_scripts,
                                  max_script_size=m.max_script_size)

    def _web_service(self) -> "WebService":
        # Imported here: only a server with listen.http(s) loads Starlette and uvicorn.
        from .web import WebService

        if self._web is None:
            self._web = WebService(self)
        return self._web

    def _ftp_service(self) -> "FTPService":
        # Imported here: only a server with listen.ftp loads pyftpdlib and pyOpenSSL.
        from .ftp import FTPLimits, FTPService, load_tls

        f = self.settings.ftp
        tls = self._ftp_tls
        if tls is None:
            tls = load_tls(str(self.settings.path(self.settings.tls.certificate)),
                           str(self.settings.path(self.settings.tls.key)))
        limits = FTPLimits(f.plaintext_without_tls, parse_port_range(f.passive_ports), f.max_connections,
                           f.max_connections_per_ip, f.idle_timeout, f.failure_delay, f.max_login_failures)
        return FTPService(self.files, self.authenticate, tls, self.settings.server.hostname, limits)

    def reload_tls(self) -> None:
        """SIGHUP: read the certificate and key again; the next handshake of every
        listener (STARTTLS and implicit TLS) uses them.  (FTPS keeps its own context
        until a restart.)"""
        if isinstance(self._tls, ServerTLS):
            self._tls.reload()
        else:
            event(log, "tls-reload-skipped", level=logging.WARNING, reason="no TLS context (no certificate at start)")

    def open_connections(self) -> int:
        """This worker's SMTP, IMAP, POP3 and web connections (``Balance``)."""
        return ((len(self._service.sessions) if self._service is not None else 0)
                + (len(self._imap.connections) if self._imap is not None else 0)
                + (len(self._pop3.sessions) if self._pop3 is not None else 0)
                + (self._web.connections() if self._web is not None else 0))

    async def stop(self, grace: float = 10.0) -> None:
        """Stop listening, let messages in flight finish (at most ``grace`` s), tell the
        other sessions 421, then stop the queue (its leases go back to the index)."""
        for server in self._servers:
            server.close()
        if self._learner is not None:
            self.mailstore.on_copy = None
            await self._learner.stop(min(grace, 5.0))
        if self._minger is not None:
            await self._minger.close()
        if self._service is not None:
            await self._service.shutdown(grace)
        if self._imap is not None:
            await self._imap.shutdown(min(grace, 5.0))
        if self._pop3 is not None:
            await self._pop3.shutdown(min(grace, 5.0))
        if self._managesieve is not None:
            await self._managesieve.shutdown(min(grace, 5.0))
        if self._ftp is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._ftp.stop, min(grace, 10.0))
        if self._web is not None:
            await self._web.shutdown(min(grace, 5.0))
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), timeout=2)
            except asyncio.TimeoutError:
                pass
        await self.queue.stop(grace)
        self.bus.close()
        # The database is not closed here: threads of the default executor may still be
        # finishing a statement; asyncio.run waits for them, and the process exit closes it.


def _smtp_factory(service: SMTPService, mode: str) -> Callable[[], WaypostSMTP]:
    return lambda: WaypostSMTP(service, mode=mode)


def _counted(factory: Callable[[], Any], listener: str) -> Callable[[], Any]:
    """``factory``, counting each connection it is called for (``waypost_connections_total``)."""
    def make() -> Any:
        metrics.connection(listener)
        return factory()
    return make


#: Seconds between two readings of a worker's resident memory.
MEMORY_INTERVAL = 5.0


#: Seconds between two writings of a worker's open connections into ``Balance`` (besides
#: those at each new connection): how stale the others' view of a closed one may be.
BALANCE_INTERVAL = 1.0


async def _watch_worker(balance: Balance | None = None) -> None:
    """Every MEMORY_INTERVAL the worker's memory into its metrics; every BALANCE_INTERVAL
    its open connections into ``balance``."""
    ticks = round(MEMORY_INTERVAL / BALANCE_INTERVAL)
    n = 0
    while True:
        if n % ticks == 0:
            metrics.update_memory()
        if balance is not None:
            balance.publish()
        n += 1
        await asyncio.sleep(BALANCE_INTERVAL)


# A worker was forked with the supervisor's TLS context: set when a SIGHUP reached the
# supervisor before (the context is then stale) or the worker before its event loop took
# the signal over; the worker then reads the certificate again as soon as it can.
_HUP_PENDING = False


def _note_hup(signum: int, frame: Any) -> None:
    global _HUP_PENDING
    _HUP_PENDING = True


def _run_worker(settings: Settings, sockets: dict[str, socket.socket], tls: ssl.SSLContext | None,
                ftp_tls: Any = None, balance: Balance | None = None, slot: int = 0) -> int:
    async def main() -> None:
        metrics.start_worker(metrics.metrics_dir(settings.data_dir))
        server = Server(settings, tls, ftp_tls)
        asyncio.get_running_loop().set_default_executor(_warm_executor(server.db))
        if balance is not None:
            balance.take(slot, server.open_connections)
            server.balance = balance
        await server.start(sockets)
        watch = asyncio.create_task(_watch_worker(balance))
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set)
        loop.add_signal_handler(signal.SIGHUP, server.reload_tls)
        if _HUP_PENDING:  # a SIGHUP came before the loop took it, or before this worker was forked
            server.reload_tls()
        _tune_gc()
        event(log, "worker-ready", pid=os.getpid())
        await stop.wait()
        event(log, "worker-stopping", pid=os.getpid())
        watch.cancel()
        await server.stop()

    asyncio.run(main())
    return 0


def _warm_executor(db: Any) -> concurrent.futures.ThreadPoolExecutor:
    """The worker's thread pool (``asyncio.to_thread``, ``run_in_executor(None)``) as
    asyncio would make it, with every thread started before the first connection and
    its database connection open and its common reads compiled
    (``Database.prepare_thread``; the event loop's thread too).  asyncio starts them one
    at a time as work comes, and SQLite opens a connection at its thread's first
    statement: the first commands after a restart waited 0.1-0.8 ms for that each.
    A thread whose preparation fails still serves; it opens its connection later."""
    size = min(32, (os.cpu_count() or 1) + 4)  # asyncio's own default (Python 3.8+)
    pool = concurrent.futures.ThreadPoolExecutor(size, thread_name_prefix="asyncio")
    # Each job holds its thread until all have started, so that the pool starts a new
    # thread for every one instead of handing the next job to an idle thread.
    started = threading.Barrier(size)

    def prepare() -> None:
        try:
            db.prepare_thread()
        finally:
            started.wait(timeout=10)

    jobs = [pool.submit(prepare) for _ in range(size)]
    failures: list[BaseException] = []
    try:
        db.prepare_thread()
    except Exception as e:
        failures.append(e)
    done, _ = concurrent.futures.wait(jobs, timeout=15)
    failures += [e for e in (job.exception() for job in done) if e is not None]
    if failures:  # the database cannot be opened now: commands will say so
        event(log, "thread-prepare-failed", level=logging.WARNING,
              error=f"{type(failures[0]).__name__}: {failures[0]}")
    return pool


#: INBOX warm-ups (see ``Server._warm_inbox``) a worker runs at once.
_WARM_AT_ONCE = 2


def _tune_gc() -> None:
    """A worker's modules, settings and caches live as long as it does: move them out of
    the cyclic collector's sight (``gc.freeze``) so that a full collection walks only
    what requests made, and collect the youngest generation less often (every 10,000
    allocations instead of 700): a first SELECT of 10,000 messages or a busy SMTP
    second otherwise pays for dozens of collections that find next to nothing."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(10_000, 10, 10)


def _share_with_workers() -> None:
    """Before each worker is forked: the objects made so far (modules, settings, the
    Public Suffix List) move out of the cyclic collector's sight in this process, so
    that a worker's collections never walk them.  A collection writes into the header
    of every object it walks: the first full one in each worker (``_tune_gc``) used to
    copy every page of the parent's heap that holds one, so the pages the workers were
    forked to share were each worker's own.  With 2 workers the server's memory before
    any connection went from 125 to 103 MiB (bench/imap_idle)."""
    gc.collect()
    gc.freeze()


def default_workers() -> int:
    """The number of workers ``server.workers = 0`` (the default) runs: one per CPU this
    process may run on.  That is the CPUs of its affinity mask (``taskset``, a cgroup
    cpuset, a container's ``--cpuset-cpus``), not every core of the machine: a worker on
    a CPU it may not use only takes turns with another one.  The work of a worker is
    CPU-bound Python (one core each), shared state lives in the database and the spool,
    so fewer workers than usable CPUs leave cores idle and more only add switching."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # no affinity on this platform
        return os.cpu_count() or 1


def serve(settings: Settings, workers: int | None = None, out: Callable[[str], None] = print) -> int:
    """Bind, recover, run; returns the exit status.  SIGTERM stops cleanly."""
    configure_logging(settings.server.log_format, settings.server.log_level)
    fixed_mmap_threshold()
    problems = startup_problems(settings)
    errors = [p for p in problems if p.fatal]
    if errors:
        raise SystemExit("\n".join(map(str, errors)))
    for p in problems:
        event(log, "config-warning", level=logging.WARNING, key=p.key, problem=p.text)
    # SIGHUP reloads the certificate once the workers run; until then it is ignored
    # (its default would end the server).
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    n = workers if workers is not None else settings.server.workers
    if n == 0:
        n = default_workers()
    sockets = bind_listeners(settings)
    minger = _check_udp(settings.listen.minger) if settings.listen.minger else ""
    tls = _tls_setup(settings)
    # pyOpenSSL's context for FTPS, from the same files, also read before the change of user.
    ftp_tls = None
    if settings.listen.ftp:
        from .ftp import load_tls

        ftp_tls = load_tls(str(settings.path(settings.tls.certificate)), str(settings.path(settings.tls.key)))
    if settings.server.user and os.geteuid() == 0:
        # The ports are bound and the TLS key read: nothing needs root any more.
        switch_user(settings.server.user)
        event(log, "user-switched", user=settings.server.user, uid=os.getuid())
    elif os.geteuid() == 0:
        event(log, "running-as-root", level=logging.WARNING, hint="set server.user to an unprivileged user")
    # Recovery runs once, before any worker takes work.  A database that cannot be
    # reached now (PostgreSQL down) does not stop the server: it listens and answers
    # "try again later" (451), nothing enters or leaves the queue, and recovery runs
    # as soon as the database is back (RECOVERY_PENDING tells the workers).
    metrics.reset(metrics.metrics_dir(settings.data_dir))  # as the user the workers run as
    recovery = Server(settings, tls)
    # Uploads a killed server left half-written; on a store other nodes share, only old
    # ones (theirs in progress stay).
    recovery.files.recover(min_age=3600.0 if cluster_node(settings) else 0.0)
    pending = settings.data_dir / RECOVERY_PENDING
    try:
        _note_other_nodes(settings, recovery)
        recovery.queue.recover()
        pending.unlink(missing_ok=True)
        recovery.db.close()
    except StorageUnavailable as e:
        event(log, "database-unreachable", level=logging.ERROR, error=str(e),
              hint="mail is answered 451 until the database is back; recovery runs then")
        pending.parent.mkdir(mode=0o700, exist_ok=True)
        pending.touch(mode=0o600)
        threading.Thread(target=_recover_later, args=(recovery, pending), name="recovery", daemon=True).start()
    if settings.mailauth.inbound != "off":
        # Every inbound check needs the Public Suffix List (DMARC): read once here, the
        # workers forked below share it, and no message pays for it.
        load_psl()
    for name, sock in sockets.items():
        if sock.family == socket.AF_UNIX:
            out(f"listening {name} {sock.getsockname()}")
            continue
        host, port = sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        out(f"listening {name} {shown}:{port}")
    if minger:
        out(f"listening minger {minger} (udp)")
    sys.stdout.flush()
    if n == 1:
        return _run_worker(settings, sockets, tls, ftp_tls)
    return _supervise(settings, sockets, n, tls, ftp_tls)


#: glibc's ``M_MMAP_THRESHOLD`` as ``serve`` sets it (see ``fixed_mmap_threshold``).
#: Above the pieces a session handles (256 KiB read and framing buffers, 1 MiB spool
#: writes), which are freed and reused at once from the heap: served by mmap, each of
#: them cost a fresh mapping and a page fault per 4 KiB, twice the CPU of copying
#: them.  Below whole big messages (loaded for delivery or a check), which go back to
#: the system when freed.
MMAP_THRESHOLD = 4 * 1024 * 1024
_M_MMAP_THRESHOLD = -3  # <malloc.h>


def fixed_mmap_threshold(threshold: int = MMAP_THRESHOLD) -> bool:
    """Make glibc's malloc serve every block of ``threshold`` octets or more with its own
    mmap, so that freeing it gives the memory back to the system at once.

    By default the threshold is dynamic: once a block mmap'ed for a big message (the
    text of a DATA, a message loaded for delivery) is freed, glibc raises the
    threshold to that size, and the next big blocks come from the heap, where a small
    object allocated after them keeps the memory from ever being returned: the RSS of
    a worker grew with the biggest messages it had seen and stayed there.  Setting
    the threshold turns the dynamic adjustment off (mallopt(3)); the forked workers
    inherit it.  Returns False where the C library is not glibc (nothing changed)."""
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    return bool(mallopt(_M_MMAP_THRESHOLD, threshold))


def link_bus(bus: Bus, db: Any, node: str, background: bool = True) -> None:
    """On PostgreSQL, whose database several nodes share: the bus's topics (IMAP IDLE
    wake-ups, listings to forget) cross nodes through LISTEN/NOTIFY (``waypost.bus``)."""
    from .db.postgres import PostgresDatabase

    if isinstance(db, PostgresDatabase):
        bus.link(node, db.publish_topics, background=background)
        if background:
            db.listen_topics(bus.heard)


def _note_other_nodes(settings: Settings, recovery: "Server") -> None:
    """Several nodes share a PostgreSQL database and the mail store (docs/cluster.md):
    the start-up log names the others seen up now."""
    now = time.time()
    others = sorted({n.node for n in recovery.db.node_list(now)
                     if n.node != settings.server.hostname and now - n.seen <= 3 * NODE_HEARTBEAT})
    if others:
        event(log, "cluster-nodes", node=settings.server.hostname, others=",".join(others))


def _recover_later(recovery: "Server", pending: Path) -> None:
    """Start-up recovery, tried again until the database answers; then the workers may
    index and claim (they look for ``pending``)."""
    while True:
        time.sleep(1.0)
        try:
            recovery.queue.recover()
        except StorageUnavailable:
            continue
        except Exception:
            log.exception("event=recovery-error")
            continue
        pending.unlink(missing_ok=True)
        event(log, "database-reachable", level=logging.WARNING, hint="start-up recovery done")
        recovery.db.close()
        return


def _tls_setup(settings: Settings) -> ssl.SSLContext:
    """The TLS context every worker uses, read before any change of user.  A data
    directory whose certificate went missing gets a new self-signed one (said in the
    log): without TLS, IMAP and POP3 logins would be impossible."""
    cert, key = settings.path(settings.tls.certificate), settings.path(settings.tls.key)
    if _self_signed_allowed(settings):
        write_self_signed(cert, key, settings.server.hostname)
        if settings.server.user and os.geteuid() == 0:
            uid, gid = user_ids(settings.server.user)
            for p in {cert.parent, key.parent, cert, key}:
                os.chown(p, uid, gid)
        event(log, "tls-certificate-created", level=logging.WARNING, certificate=str(cert),
              hostname=settings.server.hostname)
    return ServerTLS.load(str(cert), str(key))


def _check_udp(value: str) -> str:
    """Fail early (in the supervisor) if the Minger port cannot be bound; the workers
    bind it themselves with SO_REUSEPORT, so this probe is closed at once."""
    host, port = parse_hostport(value)
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind((host, port))
    except OSError as e:
        raise SystemExit(f"listen.minger: cannot listen on {value}: {e.strerror}") from None
    finally:
        sock.close()
    return value


def _release_leases(settings: Settings, pid: int) -> None:
    """A dead worker's messages go back to the others now, not when its leases expire
    (what its journal says was delivered is recorded first: see release_dead_worker)."""
    try:
        db = open_database(settings.storage.database, settings.data_dir,
                           pool_size=settings.storage.pool_size,
                           pool_timeout=settings.storage.pool_timeout)
        try:
            release_dead_worker(settings, db, f"{settings.server.hostname}/{pid}", pid)
        finally:
            db.close()
    except Exception:
        log.exception("event=lease-release-error pid=%d", pid)


def _supervise(settings: Settings, sockets: dict[str, socket.socket], n: int, tls: ssl.SSLContext,
               ftp_tls: Any = None) -> int:
    children: dict[int, int] = {}
    stopping = False
    balance = Balance(n)  # before the forks: every worker maps the same page

    def spawn(slot: int) -> None:
        _share_with_workers()  # what the master made since (a replacement's start too)
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            signal.signal(signal.SIGHUP, _note_hup)  # until the worker's loop takes it over
            code = 1
            try:
                code = _run_worker(settings, sockets, tls, ftp_tls, balance, slot)
            finally:
                os._exit(code)
        children[pid] = slot

    def on_term(signum: int, frame: Any) -> None:
        nonlocal stopping
        stopping = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass

    def on_hup(signum: int, frame: Any) -> None:
        # Each worker reads the certificate again (they were forked with the old one);
        # so does each worker forked from now on (a replacement), at its start.
        global _HUP_PENDING
        _HUP_PENDING = True
        for pid in list(children):
            try:
                os.kill(pid, signal.SIGHUP)
            except ProcessLookupError:
                pass

    signal.signal(signal.SIGTERM, on_term)
    signal.signal(signal.SIGINT, on_term)
    signal.signal(signal.SIGHUP, on_hup)
    for slot in range(n):
        if stopping:  # a SIGTERM before every worker was forked: fork no more
            break
        spawn(slot)
    while children:
        try:
            pid, status = os.wait()
        except ChildProcessError:
            break
        except InterruptedError:  # pragma: no cover
            continue
        if pid not in children:
            continue
        slot = children.pop(pid)
        if status != 0:
            event(log, "worker-exit", level=logging.ERROR if not stopping else logging.WARNING, pid=pid, status=status)
        metrics.worker_died(metrics.metrics_dir(settings.data_dir), pid)
        if not stopping:
            event(log, "worker-died", level=logging.ERROR, pid=pid, status=status)
            _release_leases(settings, pid)
            time.sleep(0.2)
            spawn(slot)
    return 0
