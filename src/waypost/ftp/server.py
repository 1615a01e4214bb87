"""FTP with explicit FTPS (RFC 959, RFC 4217 ``AUTH TLS``) on the account file areas,
served by pyftpdlib; Waypost supplies the logins, the jail and the logging.

Theory of operation
-------------------
Every worker runs one ``FTPService``: a pyftpdlib ``ThreadedFTPServer`` on the listening
socket that ``serve`` bound before forking, so every worker accepts FTP connections
like it accepts SMTP or IMAP ones (a worker that dies takes only its own sessions with
it, and nothing works in one process only).  pyftpdlib runs its own I/O loop, not
asyncio: the acceptor loop runs in one thread of the worker, and each control
connection (with its data connections) in a thread of its own, which is pyftpdlib's
model for handlers that block, as ours do: a login waits for the login throttle, and
an upload is fsynced.  ``ftp.max_connections`` bounds the threads.

* **Logins** are checked by the worker's own ``Server.authenticate`` (``proto="ftp"``),
  run on the worker's asyncio loop with ``run_coroutine_threadsafe``: the same name
  resolution as IMAP and POP3 (``name@domain``, ``name%domain``, a bare name in the
  domain bound to the server address the client connected to, seed 001; aliases;
  ``Access:`` records; disabled accounts refused), the same throttle, and the same
  ``event=auth-failed proto=ftp`` log line.  Without TLS (``AUTH TLS``) no login is
  taken and no data is sent unless ``ftp.plaintext_without_tls`` is set.
* **The jail**: a session sees its account's file area only, through ``AccountFiles``
  (``AreaFS`` below translates pyftpdlib's virtual paths); path safety, symbolic links
  and the size limit are the files package's.  APPE, REST before STOR, STOU, SITE
  CHMOD and MFMT are refused: every upload replaces a whole file atomically.
* **An upload past the limit** is answered ``552`` (RFC 959 §4.2: "Requested file action
  aborted.  Exceeded storage allocation") and leaves nothing: its temporary file is
  removed, an older file of that name stays as it was.  A transfer that is aborted
  (ABOR, a dropped data connection, a stopping server) leaves nothing either: only a
  transfer that ended and was committed is answered ``226``.
* **Stopping**: ``stop`` ends the acceptor loop at once (a byte on a pipe the loop
  polls wakes it; without it the loop would notice only at its poll timeout, 0.5 s,
  and every worker's stop would wait that long), which closes the listening socket in
  this worker and ends every session thread within a second (pyftpdlib's poll
  timeout); uploads in flight are discarded.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import socket
import stat
import sys
import threading
from typing import Any, Callable, Coroutine

from OpenSSL import SSL
from pyftpdlib.authorizers import AuthenticationFailed, AuthorizerError
from pyftpdlib.filesystems import AbstractedFS, FilesystemError
from pyftpdlib.handlers import TLS_DTPHandler, TLS_FTPHandler
from pyftpdlib.servers import ThreadedFTPServer

from .. import metrics
from ..db import StorageUnavailable
from ..files import AccountFiles, FilesError, FileStore, LimitExceeded, Upload
from ..log import event

__all__ = ["FTPLimits", "FTPService", "load_tls"]

log = logging.getLogger("waypost.ftp")

#: Permissions every account has in its own area (pyftpdlib letters): change folder,
#: list, read, append (refused by AreaFS), delete, rename, make folders, write.
_PERMS = "elradfmw"
#: Seconds a login may wait for its answer (the throttle's longest wait is auth.max_delay).
_AUTH_TIMEOUT = 120.0

Authenticate = Callable[[str, str, "str | None", "str | None", str], Coroutine[Any, Any, "str | None"]]


def load_tls(cert: str, key: str) -> SSL.Context:
    """The pyOpenSSL context pyftpdlib needs, from the STARTTLS certificate and key
    (read before ``serve`` changes user): TLS 1.2 or later, no compression."""
    ctx = SSL.Context(SSL.TLS_SERVER_METHOD)
    ctx.set_min_proto_version(SSL.TLS1_2_VERSION)
    ctx.set_options(SSL.OP_NO_COMPRESSION)
    ctx.use_certificate_chain_file(cert)
    ctx.use_privatekey_file(key)
    ctx.check_privatekey()
    return ctx


class FTPLimits:
    """The ``ftp.*`` settings a session uses."""

    __slots__ = ("plaintext_without_tls", "passive_ports", "max_connections", "max_connections_per_ip",
                 "idle_timeout", "failure_delay", "max_login_failures")

    def __init__(self, plaintext_without_tls: bool = False, passive_ports: range = range(50000, 50100),
                 max_connections: int = 100, max_connections_per_ip: int = 10, idle_timeout: float = 300.0,
                 failure_delay: float = 1.0, max_login_failures: int = 3) -> None:
        self.plaintext_without_tls = plaintext_without_tls
        self.passive_ports = passive_ports
        self.max_connections = max_connections
        self.max_connections_per_ip = max_connections_per_ip
        self.idle_timeout = idle_timeout
        self.failure_delay = failure_delay
        self.max_login_failures = max_login_failures


# -- logins -------------------------------------------------------------------------

class _Unavailable(AuthorizerError):  # type: ignore[misc]
    """The login could not be checked now (the database is unreachable)."""

    TEXT = "login not checked: database unreachable"


class _Authorizer:
    """pyftpdlib's authorizer interface, answered by ``Server.authenticate``.  The
    session learns its area in ``validate_authentication``; every account has every
    permission in its own area and none elsewhere (there is nowhere else)."""

    def __init__(self, authenticate: Authenticate, files: FileStore, loop: asyncio.AbstractEventLoop) -> None:
        self._authenticate = authenticate
        self._files = files
        self._loop = loop

    def validate_authentication(self, username: str, password: str, handler: "FTPSession") -> None:
        try:
            server_ip = handler.socket.getsockname()[0]
        except OSError:
            server_ip = None
        future: concurrent.futures.Future[str | None] = asyncio.run_coroutine_threadsafe(
            self._authenticate(username, password, server_ip, handler.remote_ip, "ftp"), self._loop)
        try:
            address = future.result(_AUTH_TIMEOUT)
        except (concurrent.futures.TimeoutError, concurrent.futures.CancelledError, RuntimeError):
            future.cancel()
            raise AuthenticationFailed("Authentication failed.") from None
        except StorageUnavailable as e:  # the database is down: not a wrong password
            event(log, "storage-unavailable", level=logging.ERROR, client=handler.remote_ip, command="PASS",
                  error=str(e))
            raise _Unavailable(_Unavailable.TEXT) from None
        if address is None:
            raise AuthenticationFailed("Authentication failed.")
        try:
            handler.area = self._files.account_area(address)
        except (FilesError, ValueError, LookupError) as e:
            event(log, "ftp-area-error", level=logging.ERROR, account=address, error=str(e))
            raise AuthenticationFailed("File storage not available.") from None
        handler.account = address

    def get_home_dir(self, username: str) -> str:
        return "/"

    def has_user(self, username: str) -> bool:
        return True

    def get_perms(self, username: str) -> str:
        return _PERMS

    def has_perm(self, username: str, perm: str, path: str | None = None) -> bool:
        return perm in _PERMS

    def get_msg_login(self, username: str) -> str:
        return "Logged in."

    def get_msg_quit(self, username: str) -> str:
        return "Goodbye."

    def impersonate_user(self, username: str, password: str) -> None:
        pass

    def terminate_impersonation(self, username: str) -> None:
        pass


# -- the jail ----------------------------------------------------------------------

def _fs_error(e: FilesError) -> FilesystemError:
    return FilesystemError(str(e))


class AreaFS(AbstractedFS):  # type: ignore[misc]
    """pyftpdlib's file-system interface on one ``AccountFiles``.  Its "real" paths are
    the virtual ones (``/docs/a.txt``, always absolute and normalised by pyftpdlib's
    ``ftpnorm``), turned into area-relative paths here; the area checks them again."""

    def __init__(self, root: str, cmd_channel: "FTPSession") -> None:
        super().__init__("/", cmd_channel)
        self.area: AccountFiles = cmd_channel.area

    @staticmethod
    def _rel(path: str) -> str:
        return path.lstrip("/")

    def _call(self, fn: Callable[..., Any], *args: Any) -> Any:
        try:
            return fn(*args)
        except FilesError as e:
            raise _fs_error(e) from None

    def validpath(self, path: str) -> bool:
        return path.startswith("/")

    def realpath(self, path: str) -> str:
        return path

    def open(self, filename: str, mode: str) -> Any:
        if mode == "rb":
            f, _ = self._call(self.area.open, self._rel(filename))
            f.raw.name = self._rel(filename)  # for the transfer log
            return f
        if mode == "wb":
            return self._call(self.area.upload, self._rel(filename))
        raise FilesystemError("Resuming and appending are not supported; send the whole file with STOR")

    def mkstemp(self, suffix: str = "", prefix: str = "", dir: str | None = None, mode: str = "wb") -> Any:
        raise FilesystemError("STOU is not supported; name the file with STOR")

    def chdir(self, path: str) -> None:
        # Never os.chdir: the worker's other threads share its working directory.
        if not self._call(self.area.stat, self._rel(path)).is_dir:
            raise FilesystemError("Not a folder")
        self.cwd = path

    def mkdir(self, path: str) -> None:
        self._call(self.area.mkdir, self._rel(path))

    def listdir(self, path: str) -> list[str]:
        return [e.name for e in self._call(self.area.list, self._rel(path))]

    listdirinfo = listdir

    def rmdir(self, path: str) -> None:
        self._call(self.area.rmdir, self._rel(path))

    def remove(self, path: str) -> None:
        self._call(self.area.remove, self._rel(path))

    def rename(self, src: str, dst: str) -> None:
        self._call(self.area.rename, self._rel(src), self._rel(dst))

    def chmod(self, path: str, mode: Any) -> None:
        raise FilesystemError("Not supported")

    def utime(self, path: str, timeval: Any) -> None:
        raise FilesystemError("Not supported")

    def readlink(self, path: str) -> str:
        raise FilesystemError("Not supported")

    def stat(self, path: str) -> os.stat_result:
        e = self._call(self.area.stat, self._rel(path))
        mode = (stat.S_IFDIR | 0o755) if e.is_dir else (stat.S_IFREG | 0o644)
        return os.stat_result((mode, 0, 0, 1, 0, 0, e.size, int(e.mtime), int(e.mtime), int(e.mtime)))

    lstat = stat

    def isfile(self, path: str) -> bool:
        try:
            return not self.area.stat(self._rel(path)).is_dir
        except FilesError:
            return False

    def isdir(self, path: str) -> bool:
        return self.area.is_dir(self._rel(path))

    def islink(self, path: str) -> bool:
        return False

    def lexists(self, path: str) -> bool:
        try:
            self.area.stat(self._rel(path))
            return True
        except FilesError:
            return False

    def getsize(self, path: str) -> int:
        return int(self.stat(path).st_size)

    def getmtime(self, path: str) -> float:
        return float(self.stat(path).st_mtime)

    def get_user_by_uid(self, uid: int) -> str:
        return "owner"

    def get_group_by_gid(self, gid: int) -> str:
        return "owner"


# -- sessions ----------------------------------------------------------------------

class _DataChannel(TLS_DTPHandler):  # type: ignore[misc]
    """A data connection whose upload is committed before ``226`` is answered, and
    refused with ``552`` (nothing kept) when the area's limit is passed.

    Every way a data connection ends (the client's close, a TLS close_notify, ABOR, an
    error, a timeout) goes through ``close``: an upload whose transfer finished is
    committed there, before pyftpdlib sends its reply; any other is discarded."""

    transfer_finished: bool
    receive: bool

    def close(self) -> None:
        upload = self.file_obj
        if self.receive and isinstance(upload, Upload) and not upload.closed:
            if self.transfer_finished and self._truncated():
                # RFC 4217 §12.6: over TLS, an end of data without close_notify may be an
                # attacker's truncation; in stream mode (RFC 959) nothing else tells.
                self.transfer_finished = False
                self.cmd_channel.replace_reply("226", "426 Data connection closed without TLS close_notify; "
                                                      "nothing was stored.")
                self.cmd_channel.waypost_event("ftp-upload-truncated", level=logging.WARNING, path=upload.name)
            if self.transfer_finished:
                try:
                    upload.commit()
                except LimitExceeded as e:
                    self.transfer_finished = False
                    self.cmd_channel.replace_reply("226", _over_limit(e))
                    self.cmd_channel.waypost_event("ftp-over-limit", level=logging.WARNING, path=upload.name,
                                                   limit=e.limit, needed=e.needed)
                except FilesError as e:
                    self.transfer_finished = False
                    # RFC 959 §4.2: 451 Requested action aborted: local error in processing.
                    self.cmd_channel.replace_reply("226", f"451 {e}; nothing was stored.")
                    self.cmd_channel.waypost_event("ftp-upload-failed", level=logging.WARNING, path=upload.name,
                                                   error=str(e))
            upload.close()  # without a commit: nothing kept
        super().close()

    def _truncated(self) -> bool:
        sock = self.socket
        return isinstance(sock, SSL.Connection) and not sock.get_shutdown() & SSL.RECEIVED_SHUTDOWN

    def handle_error(self) -> None:
        error = sys.exc_info()[1]
        if not isinstance(error, LimitExceeded):
            super().handle_error()
            return
        # Upload.write refused a chunk: the upload is discarded already.
        upload = self.file_obj
        self.transfer_finished = False
        self.close()  # RFC 959: the data connection is closed before the reply
        self.cmd_channel.respond(_over_limit(error))
        self.cmd_channel.waypost_event("ftp-over-limit", level=logging.WARNING, path=getattr(upload, "name", ""),
                                       limit=error.limit, needed=error.needed)


def _over_limit(error: LimitExceeded) -> str:
    # RFC 959 §4.2: 552 Requested file action aborted.  Exceeded storage allocation.
    return f"552 Exceeded storage allocation ({error.limit} octets); nothing was stored."


class FTPSession(TLS_FTPHandler):  # type: ignore[misc]
    """One control connection.  Configured per service by a subclass (pyftpdlib keeps its
    settings as class attributes)."""

    dtp_handler = _DataChannel
    abstracted_fs = AreaFS
    use_sendfile = False
    permit_foreign_addresses = False
    permit_privileged_ports = False
    area: AccountFiles
    account = ""
    _replace: tuple[str, str] | None = None

    def replace_reply(self, code: str, reply: str) -> None:
        """Send ``reply`` in place of the next reply with ``code`` (an upload's ``226``
        that its commit turned into a refusal)."""
        self._replace = (code, reply)

    def respond(self, resp: str, logfun: Any = None) -> None:
        if self._replace is not None and resp.startswith(self._replace[0]):
            resp, self._replace = self._replace[1], None
        if logfun is None:
            super().respond(resp)
        else:
            super().respond(resp, logfun=logfun)

    def handle_auth_failed(self, msg: str, password: str) -> None:
        if msg == _Unavailable.TEXT:  # RFC 959: 421 to PASS, service not available (not counted as a failure)
            self.respond("421 Service not available now (the database cannot be reached); try again later.")
            self.close_when_done()
            return
        super().handle_auth_failed(msg, password)

    def waypost_event(self, name: str, level: int = logging.INFO, **fields: Any) -> None:
        event(log, name, level=level, client=self.remote_ip, account=self.account or None, **fields)

    def on_connect(self) -> None:
        metrics.connection("ftp")

    def on_login(self, username: str) -> None:
        self.waypost_event("ftp-login", login=username[:128], tls="yes" if isinstance(self.socket, SSL.Connection) else "no")

    def on_logout(self, username: str) -> None:
        self.waypost_event("ftp-logout")

    def log_transfer(self, cmd: str, filename: Any, receive: bool, completed: bool, elapsed: float,
                     bytes: int) -> None:
        self.waypost_event("ftp-transfer", command=cmd, path=str(filename), completed="yes" if completed else "no",
                           octets=bytes, seconds=elapsed)

    # pyftpdlib's own chatter (one line per command) stays out of the server's log.
    def log(self, msg: str, logfun: Any = None) -> None:
        log.debug("%s %s", self.remote_ip, msg)

    def log_cmd(self, cmd: str, arg: Any, respcode: int, respstr: str) -> None:
        if respcode >= 500 and cmd not in ("PASS",):
            self.waypost_event("ftp-refused", level=logging.DEBUG, command=cmd, code=respcode, reply=respstr)


class _Waker:
    """The read end of a pipe in the acceptor loop's poll: ``wake`` (from any thread)
    ends the loop's current wait.  pyftpdlib's loop calls ``handle_read_event`` when a
    byte is there and ``close`` when the loop is closed (``close_all``)."""

    def __init__(self, ioloop: Any) -> None:
        self._r, self._w = os.pipe()
        os.set_blocking(self._r, False)
        os.set_blocking(self._w, False)
        self._fileno = self._r
        self._ioloop = ioloop
        # ``wake`` and ``close`` run in different threads: once closed, the numbers may
        # be another file's (a message being stored), so nothing is written to them.
        self._closing = threading.Lock()
        self._closed = False
        ioloop.register(self._r, self, ioloop.READ)

    def readable(self) -> bool:
        return True

    def writable(self) -> bool:
        return False

    def handle_read_event(self) -> None:
        try:
            os.read(self._r, 512)
        except BlockingIOError:
            pass

    def handle_close(self) -> None:
        pass

    def handle_error(self) -> None:  # pragma: no cover - os.read of a pipe we own
        log.exception("event=ftp-waker-failed")

    def wake(self) -> None:
        with self._closing:
            if self._closed:
                return
            try:
                os.write(self._w, b"\0")
            except BlockingIOError:  # full: a wake is pending
                pass

    def close(self) -> None:
        with self._closing:
            if self._closed:
                return
            self._closed = True
            self._ioloop.unregister(self._r)
            for fd in (self._r, self._w):
                os.close(fd)


class FTPService:
    """The FTP listener of one worker (see the module docstring)."""

    def __init__(self, files: FileStore, authenticate: Authenticate, tls: SSL.Context, hostname: str,
                 limits: FTPLimits) -> None:
        self.files = files
        self.authenticate = authenticate
        self.tls = tls
        self.hostname = hostname
        self.limits = limits
        self._server: ThreadedFTPServer | None = None
        self._waker: _Waker | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()

    def start(self, sock: socket.socket, loop: asyncio.AbstractEventLoop, backlog: int) -> None:
        logging.getLogger("pyftpdlib").setLevel(logging.WARNING)
        lim = self.limits
        session = type("WaypostFTPSession", (FTPSession,), {
            "authorizer": _Authorizer(self.authenticate, self.files, loop),
            "ssl_context": self.tls,
            "tls_control_required": not lim.plaintext_without_tls,
            "tls_data_required": not lim.plaintext_without_tls,
            "passive_ports": list(lim.passive_ports),
            "timeout": lim.idle_timeout,
            "auth_failed_timeout": lim.failure_delay,
            "max_login_attempts": lim.max_login_failures,
            "banner": f"{self.hostname} Waypost FTP ready (AUTH TLS)",
        })
        server = ThreadedFTPServer(sock, session, backlog=backlog)
        server.max_cons = lim.max_connections
        server.max_cons_per_ip = lim.max_connections_per_ip
        self._server = server
        self._waker = _Waker(server.ioloop)
        self._thread = threading.Thread(target=self._run, name="ftp-acceptor", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        assert self._server is not None
        try:
            while not self._stopping.is_set():
                self._server.serve_forever(timeout=0.5, blocking=False, handle_exit=False)
        except Exception:  # pragma: no cover - a bug in the acceptor: say so, do not hide it
            log.exception("event=ftp-acceptor-failed")
        finally:
            self._server.close_all()

    def stop(self, timeout: float = 10.0) -> None:
        """End the acceptor and every session (blocking: call it off the event loop)."""
        self._stopping.set()
        if self._waker is not None:
            self._waker.wake()
        if self._thread is not None:
            self._thread.join(timeout)
