"""Three Waypost nodes (127.0.0.1, 127.0.0.2, 127.0.0.3) serving one set of domains:
one PostgreSQL database (a fresh schema of the run's database per test), one shared
store (spool, Maildirs, file areas) and one ``secret.key``; each node has its own data
directory, settings and listeners (docs/cluster.md).  PostgreSQL engine only."""

from __future__ import annotations

import email
import json
import imaplib
import shutil
import smtplib
import threading
import time
from collections import Counter
from pathlib import Path

import pytest

from support import pg
from waypost.secrets import Secrets
from support.dnsserver import TestDNSServer
from support.imap import Raw
from support.server import WaypostInstance, free_port, maildir_messages, wait_for

HOSTS = ("127.0.0.1", "127.0.0.2", "127.0.0.3")
NAMES = ("mail-a.example.test", "mail-b.example.test", "mail-c.example.test")


def make_cluster(tmp_path: Path, lease: int = 600, url: str | None = None,
                 **more: dict) -> tuple[list[WaypostInstance], Path]:
    url = url or pg.new_url()
    storage = more.pop("storage", {})  # more storage.* settings, for every node
    shared = tmp_path / "shared"
    store = {"spool": str(shared / "spool"), "mail": str(shared / "mail"), "files": str(shared / "files")}
    for path in store.values():  # the shared file system an operator mounts on every node
        Path(path).mkdir(parents=True, mode=0o700)
    nodes = []
    for n, (host, name) in enumerate(zip(HOSTS, NAMES)):
        node = WaypostInstance(tmp_path / f"node{n}", database=url, hostname=name, host=host,
                               storage={**store, **storage}, imap={"plaintext_without_tls": True},
                               queue={"lease": lease, "poll_interval": 0.2}, **more)
        if not nodes:
            Secrets(node.data).seal("made now")  # the key file, made on first use
        else:  # one key for the cluster: secrets sealed on one node are read on the others
            shutil.copyfile(nodes[0].data / "secret.key", node.data / "secret.key")
        nodes.append(node)
    return nodes, shared


def start_all(nodes: list[WaypostInstance]) -> None:
    for node in nodes:
        node.start()


def stop_all(nodes: list[WaypostInstance]) -> None:
    for node in nodes:
        if node.proc is not None:
            node.stop()


def send(node: WaypostInstance, rcpt: str, subject: str) -> tuple[int, bytes]:
    with smtplib.SMTP(node.host, node.smtp_port, timeout=30) as c:
        c.ehlo("client.example")
        c.mail("sender@outside.example")
        code, text = c.rcpt(rcpt)
        assert code == 250, (code, text)
        return c.data(f"Subject: {subject}\r\nMessage-ID: <{subject}@outside.example>\r\n\r\nbody\r\n".encode())


def subjects(shared: Path, address: str) -> Counter[str]:
    name, domain = address.split("@")
    found: Counter[str] = Counter()
    for path in maildir_messages(shared / "mail" / domain / name):
        found[str(email.message_from_bytes(path.read_bytes())["Subject"])] += 1
    return found


def test_mail_accepted_on_each_node_is_read_over_imap_on_another(tmp_path):
    nodes, _shared = make_cluster(tmp_path)
    try:
        nodes[0].ok("account", "add", "alice@example.test", "--password", "alice-password")
        start_all(nodes)
        for n, node in enumerate(nodes):
            code, _ = send(node, "alice@example.test", f"via-node-{n}")
            assert code == 250
        for n in range(3):
            reader = nodes[(n + 1) % 3]
            with imaplib.IMAP4(reader.host, reader.imap_port) as m:
                m.login("alice@example.test", "alice-password")

                def found() -> bool:
                    m.select("INBOX")
                    typ, data = m.search(None, "SUBJECT", f"via-node-{n}")
                    return typ == "OK" and bool(data[0].split())
                wait_for(found, timeout=15, what=f"the message accepted on node {n} seen on node {(n + 1) % 3}")
    finally:
        stop_all(nodes)


def test_idle_on_one_node_wakes_for_a_delivery_made_by_another(tmp_path):
    nodes, _shared = make_cluster(tmp_path)
    a, b, c = nodes
    try:
        a.ok("account", "add", "bob@example.test", "--password", "bob-password")
        start_all(nodes)
        send(c, "bob@example.test", "first")  # the mailbox exists before IDLE starts
        r = Raw(b.imap_port, host=b.host)
        r.cmd(b"a1 LOGIN bob@example.test bob-password")
        wait_for(lambda: any(x == b"* 1 EXISTS" for x in r.cmd(b"a2 SELECT INBOX")), timeout=15,
                 what="the first message")
        r.send(b"a3 IDLE\r\n")
        assert r.line().startswith(b"+ ")
        started = time.monotonic()
        send(c, "bob@example.test", "wake up")  # accepted and delivered by node C
        line = r.line()
        waited = time.monotonic() - started
        assert line == b"* 2 EXISTS"
        assert waited < 4.0, waited  # LISTEN/NOTIFY woke it, not IDLE's 30-second re-check
        r.send(b"DONE\r\n")
        while not (line := r.line()).startswith(b"a3 "):
            pass
        assert line.startswith(b"a3 OK")
        r.close()
    finally:
        stop_all(nodes)


def test_an_account_made_with_the_cli_of_one_node_logs_in_on_another_at_once(tmp_path):
    nodes, _shared = make_cluster(tmp_path)
    a, _b, c = nodes
    try:
        start_all(nodes)
        with smtplib.SMTP(c.host, c.smtp_port, timeout=30) as s:  # node C looks carol up: unknown
            s.ehlo("client.example")
            s.mail("sender@outside.example")
            assert s.rcpt("carol@example.test")[0] == 550
        a.ok("account", "add", "carol@example.test", "--password", "carol-password")  # node A's CLI
        with imaplib.IMAP4(c.host, c.imap_port) as m:
            assert m.login("carol@example.test", "carol-password")[0] == "OK"
        with smtplib.SMTP(c.host, c.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.mail("sender@outside.example")
            assert s.rcpt("carol@example.test")[0] == 250
    finally:
        stop_all(nodes)


def test_kill_9_of_one_node_under_load_loses_nothing_answered_250(tmp_path):
    """10 clients × 20 messages spread over the three nodes; node C is killed (-9) once a
    third of them are answered, and never comes back.  Every message answered 250 by
    any node, C included, must end in the Maildirs: C's queued and leased work is on the
    shared spool and in the database, and its leases (4 s here) run out for A and B."""
    nodes, shared = make_cluster(tmp_path, lease=4)
    a, b, c = nodes
    clients, per_client = 10, 20
    rcpts = [f"user{n}@example.test" for n in range(5)]
    try:
        for r in rcpts:
            a.ok("account", "add", r, "--password", "user-password")
        start_all(nodes)
        accepted: list[tuple[str, str]] = []  # (recipient, subject) answered 250
        by_c: list[str] = []  # queue ids of the messages node C answered 250
        early: list[str] = []  # ... of those, delivered by A or B before C was killed
        refused: list[str] = []
        # Sent to a node that gave no answer (C killed mid-transaction): C may have
        # stored it and answered 250 into a closed socket, and the client's try at the
        # next node made a second copy -- SMTP's duplicate (RFC 5321 6.1, RFC 1047),
        # the one duplicate allowed.
        unanswered: set[str] = set()
        lock = threading.Lock()
        c_dead = threading.Event()
        kill_at = clients * per_client // 3

        def client(n: int) -> None:
            for i in range(per_client):
                subject = f"m-{n}-{i}"
                rcpt = rcpts[(n + i) % len(rcpts)]
                for attempt in range(3):  # a node that is gone: the next one
                    node = nodes[(n + i + attempt) % 3]
                    try:
                        code, text = send(node, rcpt, subject)
                    except ConnectionRefusedError:  # C is gone: nothing sent to it
                        continue
                    except (OSError, smtplib.SMTPException):
                        with lock:
                            unanswered.add(f"{rcpt} {subject}")
                        continue
                    if code == 250:
                        with lock:
                            accepted.append((rcpt, subject))
                            if node is c:
                                by_c.append(text.rsplit(b" ", 1)[-1].decode())
                            if len(accepted) >= kill_at and not c_dead.is_set():
                                c_dead.set()
                                # While C lives its leases run: A and B have delivered
                                # none of its messages yet.
                                early.extend(i for node in (a, b) for i in by_c
                                             if node.log_lines(f"event=delivered id={i} "))
                                c.kill9()
                        break
                else:
                    with lock:
                        refused.append(subject)

        threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(180)
        assert c_dead.is_set()
        assert len(accepted) + len(refused) == clients * per_client

        def counts() -> tuple[int, set[str]]:
            found: Counter[str] = Counter()
            for r in rcpts:
                found.update({f"{r} {s}": k for s, k in subjects(shared, r).items()})
            lost = sum(1 for r, s in accepted if found[f"{r} {s}"] == 0)
            return lost, {m for m, k in found.items() if k > 1}

        wait_for(lambda: counts()[0] == 0, timeout=60, interval=0.5, what="every message answered 250 delivered")
        lost, twice = counts()
        # The messages of C that A or B delivered (C died before it could, or before it
        # recorded that it had: then the copy C stored is recognised, not stored again).
        taken_over = {i for node in (a, b) for i in by_c if node.log_lines(f"event=delivered id={i} ")}
        print(f"accepted={len(accepted)} by_c={len(by_c)} taken_over={len(taken_over)} refused={len(refused)}"
              f" lost={lost} unanswered={len(unanswered)} twice={sorted(twice)}")
        assert early == []
        assert lost == 0
        assert twice <= unanswered  # no other message stored twice
        # Nothing is left in the queue once the dead node's leases ran out.
        wait_for(lambda: a.queue_ids() == [], timeout=30, interval=0.5, what="an empty queue")
    finally:
        stop_all(nodes)



class Sink:
    """The customer's own server: takes every message and keeps it."""

    def __init__(self) -> None:
        self.received: list[bytes] = []

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001 - aiosmtpd's hook
        self.received.append(envelope.content)
        return "250 2.0.0 taken"


def test_a_starting_node_leaves_the_others_work_alone_and_etrn_on_b_releases_what_a_held(tmp_path):
    """Node C starts while a message node A accepted is between its index insert and
    its rename into spool/queue/ (simulated: the file is moved out), and while A has a
    write in progress in its own tmp/: C's start-up recovery takes neither for lost or
    left over.  Then ETRN on node B releases the domain whose mail A held."""
    from aiosmtpd.controller import Controller

    sink = Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"customer.test": {"MX": [(10, "mail.customer.test")]},
                         "mail.customer.test": {"A": ["127.0.0.1"]}})
    dns.start()
    nodes, shared = make_cluster(tmp_path, dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                                 delivery={"smtp_port": port, "connect_timeout": 2.0})
    a, b, c = nodes
    try:
        (tmp_path / "router.txt").write_text("Relay: customer.test = customer.test@customer.test.via\n")
        a.ok("router", "import", str(tmp_path / "router.txt"))
        a.ok("queue", "hold", "customer.test")
        a.start()
        b.start()
        with smtplib.SMTP(a.host, a.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.sendmail("sender@outside.example", ["joe@customer.test"], b"Subject: held\r\n\r\nbody\r\n")
        a.expect_log(r"event=held .*rcpt=<joe@customer.test>")
        [qid] = a.queue_ids()
        queued = shared / "spool" / "queue" / qid
        aside = tmp_path / "aside"
        queued.rename(aside)  # as if A were between its index insert and its rename
        in_progress = shared / "spool" / "nodes" / a.hostname / "tmp" / "0190ABCDEF0123456789"
        in_progress.write_bytes(b"WAYPOST-SPOOL 1\n12")  # A writing a message now
        c.start()
        c.expect_log(r"event=recovered ")
        assert not c.log_lines("event=spool-missing")
        assert in_progress.exists()
        assert [m["id"] for m in json.loads(c.ok("queue", "list", "--json"))] == [qid]
        aside.rename(queued)  # A's rename
        in_progress.unlink()
        with smtplib.SMTP(b.host, b.smtp_port, timeout=30) as s:
            s.ehlo("mail.customer.test")
            code, msg = s.docmd("ETRN", "customer.test")
            assert code == 253 and b"1 pending messages" in msg, (code, msg)
        wait_for(lambda: sink.received, timeout=20, what="the held message delivered after ETRN on node B")
        wait_for(lambda: a.queue_ids() == [], timeout=20, what="an empty queue")
        assert len(sink.received) == 1 and b"Subject: held" in sink.received[0]
    finally:
        stop_all(nodes)
        controller.stop()
        dns.stop()


def test_a_node_alone_forgets_an_entry_whose_file_never_came_at_once(tmp_path):
    """With no other node up, an index entry without its file can only be this node's
    own, cut by a kill between its index insert and its rename (never acknowledged):
    start-up recovery forgets it at once, as on SQLite, instead of showing it for
    queue.lease (it held the kill -9 test's queue for 600 s on PostgreSQL)."""
    nodes, shared = make_cluster(tmp_path)
    a = nodes[0]
    try:
        a.ok("queue", "hold", "customer.test")
        a.start()
        with smtplib.SMTP(a.host, a.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.sendmail("sender@outside.example", ["joe@customer.test"], b"Subject: cut\r\n\r\nbody\r\n")
        [qid] = a.queue_ids()
        stop_all(nodes)
        (shared / "spool" / "queue" / qid).unlink()  # the rename a kill -9 cut off
        a.start()
        a.expect_log(r"event=recovered ")
        assert a.queue_ids() == []
    finally:
        stop_all(nodes)


def test_a_postgresql_restart_under_load_answers_4xx_never_250_and_the_nodes_recover(tmp_path):
    """A PostgreSQL server of the test's own (support/pgprivate.py; the machine's is never
    stopped) is stopped while 6 clients send through the three nodes, kept down for 6 s,
    then started again.  While it is down every reply to a command sent then is 4xx
    (never 250, never 5xx), and comes at once (the engine fails fast instead of waiting
    ``storage.pool_timeout``); once it is up, every node answers 250 again within 5 s
    by itself; every message answered 250 is delivered once."""
    from support.pgprivate import PrivatePostgres, available

    if available() is not None:
        pytest.skip(str(available()))
    with PrivatePostgres() as server:
        url = server.new_database()
        nodes, shared = make_cluster(tmp_path, url=url, storage={"pool_timeout": 5.0})
        rcpts = [f"user{n}@example.test" for n in range(3)]
        clients, attempts = 6, 400  # bounded: each client stops at its 400th attempt
        # (node, command, sent, answered, code) of every command after MAIL
        replies: list[tuple[int, str, float, float, int]] = []
        accepted: list[tuple[str, str]] = []
        lock = threading.Lock()
        stop_clients = threading.Event()
        window: dict[str, float] = {}
        try:
            for r in rcpts:
                nodes[0].ok("account", "add", r, "--password", "user-password")
            start_all(nodes)

            def client(n: int) -> None:
                for i in range(attempts):
                    if stop_clients.is_set():
                        return
                    k = (n + i) % 3
                    node, rcpt, subject = nodes[k], rcpts[(n + i) % len(rcpts)], f"r-{n}-{i}"
                    try:
                        with smtplib.SMTP(node.host, node.smtp_port, timeout=30) as s:
                            s.ehlo("client.example")
                            s.mail("sender@outside.example")
                            sent = time.monotonic()
                            code, _ = s.rcpt(rcpt)
                            with lock:
                                replies.append((k, "RCPT", sent, time.monotonic(), code))
                            if code != 250:
                                time.sleep(0.1)  # a client that retries, not a busy loop
                                continue
                            sent = time.monotonic()
                            code, _ = s.data(f"Subject: {subject}\r\n\r\nbody\r\n".encode())
                            with lock:
                                replies.append((k, "DATA", sent, time.monotonic(), code))
                                if code == 250:
                                    accepted.append((rcpt, subject))
                    except (OSError, smtplib.SMTPException):
                        time.sleep(0.1)

            threads = [threading.Thread(target=client, args=(n,)) for n in range(clients)]
            for t in threads:
                t.start()
            wait_for(lambda: len(accepted) >= 20, timeout=60, interval=0.1, what="20 messages before the stop")
            server.stop("fast")  # sessions ended, the port closed
            window["down"] = time.monotonic()
            time.sleep(6.0)  # the database stays down for 6 s while the clients go on
            window["up"] = time.monotonic()
            server.start()
            up = window["up"]

            def every_node_back() -> bool:
                with lock:
                    return all(any(k == n and c == 250 and s >= up for k, _, s, _, c in replies) for n in range(3))
            wait_for(every_node_back, timeout=30, interval=0.1, what="a 250 from every node after the restart")
            stop_clients.set()
            for t in threads:
                t.join(120)
            assert not any(t.is_alive() for t in threads)

            down = [(k, cmd, s, a, c) for k, cmd, s, a, c in replies if s >= window["down"] and a <= window["up"]]
            assert down, "no command was answered while the database was down"
            assert all(400 <= c < 500 for *_, c in down), sorted({(cmd, c) for _, cmd, _, _, c in down})
            waits = sorted(a - s for _, _, s, a, _ in down)
            back = [min(s for k, _, s, _, c in replies if k == n and c == 250 and s >= up) - up for n in range(3)]
            print(f"down-window replies={len(down)} median wait={waits[len(waits) // 2]:.3f}s"
                  f" max={waits[-1]:.3f}s; first 250 after the start per node: {[round(b, 2) for b in back]}s;"
                  f" accepted={len(accepted)}")
            # Fail fast: not storage.pool_timeout (5 s) per command while it is down.
            assert waits[len(waits) // 2] < 1.0, waits
            # The pools reconnect by themselves; ``server.start()`` returned once it was up.
            assert max(back) < 5.0 + 1.0, back

            def counts() -> tuple[int, int]:
                found: Counter[str] = Counter()
                for r in rcpts:
                    found.update({f"{r} {s}": k for s, k in subjects(shared, r).items()})
                lost = sum(1 for r, s in accepted if found[f"{r} {s}"] == 0)
                return lost, sum(1 for k in found.values() if k > 1)

            wait_for(lambda: counts()[0] == 0, timeout=60, interval=0.5, what="every message answered 250 delivered")
            assert counts() == (0, 0)
            wait_for(lambda: nodes[0].queue_ids() == [], timeout=30, interval=0.5, what="an empty queue")
            tracebacks = ["\n".join(node.output[i:i + 30]) for node in nodes
                          for i, line in enumerate(node.output) if "Traceback" in line]
            assert not tracebacks, tracebacks[0]
        finally:
            stop_clients.set()
            stop_all(nodes)


class SlowSink:
    """A next hop that keeps its first callers waiting until ``hold`` is cleared, then
    refuses them (their client is gone by then); later ones it takes and keeps."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.waiting = threading.Event()
        self.hold = True

    async def handle_DATA(self, server, session, envelope):  # noqa: ANN001 - aiosmtpd's hook
        import asyncio

        if self.hold:
            self.waiting.set()
            while self.hold:
                await asyncio.sleep(0.05)
            return "451 4.3.0 the client that sent this is gone"
        self.received.append(envelope.content)
        return "250 2.0.0 taken"


def test_cluster_release_gives_a_dead_nodes_leases_and_journal_back_at_once(tmp_path):
    """Node C is killed (-9) while it delivers a message it accepted (its next hop holds
    it in DATA) and with a delivery in its journal that it never recorded.  Its lease
    (600 s) would keep the message from A and B for ten minutes; ``cluster release``
    (refused while C was heard lately, unless --force) records the journaled delivery,
    gives the lease back, and A or B deliver the message once, at once."""
    from aiosmtpd.controller import Controller

    sink = SlowSink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    dns = TestDNSServer({"customer.test": {"MX": [(10, "mail.customer.test")]},
                         "mail.customer.test": {"A": ["127.0.0.1"]}})
    dns.start()
    nodes, shared = make_cluster(tmp_path, dns={"nameservers": [dns.nameserver], "timeout": 2.0},
                                 delivery={"smtp_port": port, "connect_timeout": 2.0})
    a, b, c = nodes
    try:
        (tmp_path / "router.txt").write_text("Relay: customer.test = customer.test@customer.test.via\n"
                                             "Relay: held.test = held.test@held.test.via\n")
        a.ok("router", "import", str(tmp_path / "router.txt"))
        a.ok("queue", "hold", "held.test")
        start_all(nodes)
        with smtplib.SMTP(c.host, c.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.sendmail("sender@outside.example", ["joe@held.test"], b"Subject: journaled\r\n\r\nx\r\n")
            s.mail("sender@outside.example")
            s.rcpt("joe@customer.test")
            code, text = s.data(b"Subject: leased\r\n\r\nbody\r\n")
            assert code == 250
        leased = text.rsplit(b" ", 1)[-1].decode()
        journaled = next(i for i in c.queue_ids() if i != leased)
        assert sink.waiting.wait(20), "node C never reached its next hop"
        refused = a.cli("cluster", "release", c.hostname)
        assert refused.exit_code == 1 and "is up" in refused.output  # C is alive: refused
        c.kill9()
        # What C's next hop accepted just before the kill, in C's journal (the line
        # format of waypost.queue.journal), never recorded in the index.
        journal = shared / "spool" / "nodes" / c.hostname / "journal"
        (journal / "999999").write_text(f"{journaled} 0\n")
        sink.hold = False  # C's session: refused (C is gone); the next ones are taken
        time.sleep(2.0)  # C's lease (600 s) holds the message: nobody delivers it meanwhile
        assert sink.received == []
        assert "is up" in a.cli("cluster", "release", c.hostname).output  # heard < 30 s ago
        result = json.loads(a.ok("cluster", "release", c.hostname, "--force", "--json"))
        assert result == {"node": c.hostname, "replayed": 1, "released": 1, "workers_forgotten": 1}, result
        wait_for(lambda: sink.received, timeout=20, what="C's message delivered by A or B after the release")
        wait_for(lambda: a.queue_ids() == [], timeout=20, what="an empty queue")
        assert len(sink.received) == 1 and b"Subject: leased" in sink.received[0]
        assert not (journal / "999999").exists()
        assert c.hostname not in {r["node"] for r in json.loads(a.ok("cluster", "status", "--json"))}
        unknown = a.cli("cluster", "release", "mail-x.example.test")
        assert unknown.exit_code == 1 and "no worker of node mail-x.example.test" in unknown.output
    finally:
        stop_all(nodes)
        controller.stop()
        dns.stop()


def test_a_router_table_imported_on_one_node_is_used_by_another_at_once(tmp_path):
    """Node B remembers its routing answers under the database's settings token; a table
    imported through node A's CLI replaces the token on every node (NOTIFY), so B's next
    RCPT is routed by the new table, not answered from memory."""
    nodes, _shared = make_cluster(tmp_path, relay={"trusted_networks": []},
                                  dns={"nameservers": ["127.0.0.1:9"], "timeout": 0.5})
    a, b, _c = nodes
    try:
        b.start()

        def rcpt() -> int:
            with smtplib.SMTP(b.host, b.smtp_port, timeout=30) as s:
                s.ehlo("client.example")
                s.mail("sender@outside.example")
                return s.rcpt("joe@friend.test")[0]

        assert rcpt() >= 500 and rcpt() >= 500  # relaying denied, the second time from memory
        (tmp_path / "router.txt").write_text("Relay: friend.test = friend.test@friend.test.via\n")
        a.ok("router", "import", str(tmp_path / "router.txt"))  # node A's CLI (A not serving)
        assert rcpt() == 250
        a.ok("router", "import", "/dev/null")  # and back: an empty table
        assert rcpt() >= 500
    finally:
        stop_all(nodes)


def test_a_sieve_script_changed_on_one_node_is_used_by_another_at_once(tmp_path):
    """Node B caches alice's active script (read at every local delivery); a new script
    put through node A's CLI, then the account removed and made again under the same
    name (no script), are used by node B from its next delivery on: the cache is
    invalidated across nodes by NOTIFY (STYLE.md point 13)."""
    nodes, shared = make_cluster(tmp_path)
    a, b, _c = nodes
    script = tmp_path / "main.sieve"
    mail = shared / "mail" / "example.test" / "alice"
    try:
        a.ok("account", "add", "alice@example.test", "--password", "alice-password")
        script.write_text('require "fileinto";\nfileinto "A";\n')
        a.ok("sieve", "put", "alice@example.test", "main", str(script), "--activate")
        a.start()
        b.start()
        for n in range(2):  # both through node B: the second is served from its cache
            assert send(b, "alice@example.test", f"first-{n}")[0] == 250
        wait_for(lambda: len(maildir_messages(mail / ".A")) == 2, timeout=15, what="two filed into A by node B")
        script.write_text('require "fileinto";\nfileinto "B";\n')
        a.ok("sieve", "put", "alice@example.test", "main", str(script))  # node A's CLI
        assert send(b, "alice@example.test", "second")[0] == 250
        wait_for(lambda: len(maildir_messages(mail / ".B")) == 1, timeout=15, what="filed into B by node B")
        a.ok("account", "remove", "alice@example.test")
        a.ok("account", "add", "alice@example.test", "--password", "alice-password")
        assert send(b, "alice@example.test", "third")[0] == 250
        wait_for(lambda: subjects(shared, "alice@example.test")["third"] == 1, timeout=15,
                 what="the new account's message in INBOX")
        # Neither old folder was used; they went aside with the removal (test_account_reuse.py).
        [kept] = mail.parent.glob(".removed.alice.*")
        assert len(maildir_messages(kept / ".A")) == 2 and len(maildir_messages(kept / ".B")) == 1
        assert not maildir_messages(mail / ".A") and not maildir_messages(mail / ".B")
    finally:
        stop_all(nodes)


def test_domain_sharings_cache_is_one_for_the_nodes(tmp_path):
    """Domain Sharing (seed 002) between a cluster and another office: bob lives on the
    office P (127.0.0.3, its own SQLite).  Node A asks P's Minger server once and
    remembers the answer in the database; node B then routes bob to P without asking;
    ``share cache clear`` on node B makes node A ask again at once (its cached copy of
    the table is dropped through NOTIFY)."""
    secret = "office-secret-0123456789"
    nodes, _shared = make_cluster(tmp_path, sharing={"secret": secret, "timeout": 2.0})
    a, b, _c = nodes
    minger = free_port("127.0.0.3")
    p = WaypostInstance(tmp_path / "p", hostname="p.example.test", host="127.0.0.3", database="waypost.db",
                        sharing={"secret": secret, "timeout": 2.0}, listen={"minger": f"127.0.0.3:{minger}"})
    try:
        p.ok("account", "add", "bob@example.test", "--no-password")
        a.ok("share", "peer", "add", f"127.0.0.3:{p.smtp_port}", "--minger-port", str(minger), "--secret", secret)
        p.start()
        a.start()
        b.start()
        lookups = r"event=minger-lookup address=bob@example.test"
        assert send(a, "bob@example.test", "via-a")[0] == 250
        wait_for(lambda: len(p.messages("bob@example.test")) == 1, timeout=20, what="bob's message on P, via A")
        assert len(a.log_lines(lookups)) == 1
        assert send(b, "bob@example.test", "via-b")[0] == 250  # A's answer, from the database
        wait_for(lambda: len(p.messages("bob@example.test")) == 2, timeout=20, what="bob's message on P, via B")
        assert b.log_lines(lookups) == []
        assert [r["address"] for r in json.loads(b.ok("share", "cache", "list", "--json"))] == ["bob@example.test"]
        b.ok("share", "cache", "clear")  # on node B: node A forgets it too
        # The NOTIFY reaches node A's listener a moment after the CLI's commit: a message
        # sent in that moment may still go by A's copy (to P all the same).  Within a few
        # tries (seconds at most), A asks P again.
        sent = 2
        for _ in range(10):
            assert send(a, "bob@example.test", f"via-a-again-{sent}")[0] == 250
            sent += 1
            wait_for(lambda: len(p.messages("bob@example.test")) == sent, timeout=20,
                     what="bob's next message on P")
            if len(a.log_lines(lookups)) == 2:
                break
            time.sleep(0.3)
        assert len(a.log_lines(lookups)) == 2
    finally:
        stop_all(nodes)
        p.stop()


def test_atrn_on_one_node_turns_around_mail_another_node_held(tmp_path):
    """ODMR (RFC 2645): node A accepts mail for customer.test, whose mail is held; the
    customer logs in to node B's ODMR port and says ATRN: node B turns the connection
    around and hands over the message node A accepted, once; the queue is then empty."""
    import base64

    from support.transcript import Transcript

    nodes, _shared = make_cluster(tmp_path, smtp={"auth_requires_tls": False})
    a, b, _c = nodes
    try:
        (tmp_path / "router.txt").write_text("Relay: customer.test = customer.test@customer.test.via\n")
        a.ok("router", "import", str(tmp_path / "router.txt"))
        a.ok("queue", "hold", "customer.test")
        a.ok("account", "add", "customer.test@example.test", "--password", "cust-pw")
        a.start()
        b.start()
        with smtplib.SMTP(a.host, a.smtp_port, timeout=30) as s:
            s.ehlo("client.example")
            s.sendmail("sender@outside.example", ["joe@customer.test"], b"Subject: turned\r\n\r\nbody\r\n")
        a.expect_log(r"event=held .*rcpt=<joe@customer.test>")
        with Transcript(b.host, b.odmr_port) as t:
            t.expect(220)
            t.cmd("EHLO mail.customer.test", 250)
            plain = base64.b64encode(b"\0customer.test@example.test\0cust-pw").decode()
            t.cmd("AUTH PLAIN " + plain, 235, "2.7.0")
            t.cmd("ATRN customer.test", 250, "2.0.0")
            t.send("220 mail.customer.test ready to receive email")
            seen: list[str] = []
            while True:
                line = t._line()
                assert line is not None, "node B closed too early"
                seen.append(line)
                if line.startswith("EHLO"):
                    t.send("250 mail.customer.test")
                elif line.startswith(("MAIL FROM:", "RCPT TO:")):
                    t.send("250 OK")
                elif line == "DATA":
                    t.send("354 go ahead")
                    while (body := t._line()) != ".":
                        seen.append("  " + str(body))
                    t.send("250 2.0.0 received")
                elif line == "QUIT":
                    t.send("221 bye")
                    break
        assert seen[0] == f"EHLO {b.hostname}"
        assert seen.count("RCPT TO:<joe@customer.test>") == 1 and "  Subject: turned" in seen
        b.expect_log(r"event=delivered .*rcpt=<joe@customer.test> relay=odmr:customer.test@example.test")
        wait_for(lambda: a.queue_ids() == [], timeout=20, what="an empty queue")
    finally:
        stop_all(nodes)
