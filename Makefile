# Waypost — developer entry points.  Every install step lives here, so that a clean
# clone on a fresh Debian machine gets the same set-up as a developer's tree.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
DATA   ?= ./var
# The exact versions the tests passed with; every pip install below is held to them.
CONSTRAINTS := constraints.txt
# Debian tools the tests drive as real peers, as command:package (libmail-dkim-perl: Perl's
# Mail::DKIM, the second ARC verifier of our seals; its dkimproxy-verify marks it installed;
# redis-server: the Bayes store of the Rspamd learning test).
DEBIAN_TEST_TOOLS := swaks:swaks fetchmail:fetchmail mbsync:isync ss:iproute2 fail2ban-regex:fail2ban curl:curl opendkim-testmsg:opendkim-tools openssl:openssl postfix:postfix pg_restore:postgresql-client sieve-connect:sieve-connect rspamd:rspamd chromium:chromium dkimproxy-verify:libmail-dkim-perl redis-server:redis-server
APT_GET := $(shell command -v apt-get 2>/dev/null)
SUDO    := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: venv install install-test debian-test-tools demo serve test typecheck unit clean bench constraints postgresql-up

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q -c $(CONSTRAINTS) -e .
	touch $@

$(VENV)/.installed-test: $(VENV)/.installed pyproject.toml $(CONSTRAINTS)
	$(PIP) install -q -c $(CONSTRAINTS) -e '.[test]'
	touch $@

# Rewrite constraints.txt from the venv, after an upgrade that the tests passed with.
constraints: $(VENV)/.installed-test
	{ sed -n '/^#/p' $(CONSTRAINTS); $(PIP) freeze --exclude-editable | grep -v '^#' | grep -iv '^waypost'; } > $(CONSTRAINTS).new
	mv $(CONSTRAINTS).new $(CONSTRAINTS)

venv install: $(VENV)/.installed

install-test: $(VENV)/.installed-test debian-test-tools

# Installs the Debian packages the tests use when one of them is missing.
debian-test-tools:
	@missing=""; for t in $(DEBIAN_TEST_TOOLS); do command -v $${t%%:*} >/dev/null 2>&1 || missing="$$missing $${t#*:}"; done; \
	if [ -n "$$missing" ]; then \
	  if [ -n "$(APT_GET)" ]; then \
	    echo "installing Debian packages:$$missing"; \
	    $(SUDO) apt-get -o DPkg::Lock::Timeout=600 update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get -o DPkg::Lock::Timeout=600 install -y -qq $$missing >/dev/null; \
	  else echo "warning: apt-get not found; tests needing$$missing will fail"; fi; \
	fi

# Initialise ./var with a demo domain and account (once), then serve on the dev ports.
demo: $(VENV)/.installed
	@if [ ! -f $(DATA)/waypost.toml ]; then \
	  $(VENV)/bin/waypost init $(DATA) --domain demo.test --hostname mail.demo.test && \
	  $(VENV)/bin/waypost --data $(DATA) account add demo@demo.test --password demo-password && \
	  echo "demo account: demo@demo.test / demo-password"; \
	fi
	$(VENV)/bin/waypost --data $(DATA) serve

serve: $(VENV)/.installed
	$(VENV)/bin/waypost --data $(DATA) serve

typecheck: $(VENV)/.installed-test
	$(VENV)/bin/mypy

# `make test` runs the whole suite on SQLite (the unit tests of the storage layer run on
# both engines there: the make_db fixture) and, at the same time, the whole end-to-end
# suite again with every test server on PostgreSQL (WAYPOST_TEST_DATABASE=postgresql;
# tests marked sqlite_only are about SQLite's files and skip).  test_postgresql.py,
# test_cluster.py and test_pg_outage.py are left out of that second pass: they choose
# PostgreSQL themselves and already ran in the first.  The two passes share the two
# cores (test servers spend much of their time waiting on clients, fsync and the
# database); their ports never collide (tests/support/server.py free_port claims each
# port machine-wide) and each makes and drops its own PostgreSQL database; only the
# first keeps .pytest_cache (--lf).  tests/run_engines.py runs them and prints the
# PostgreSQL pass's output after the SQLite one's.
PG_E2E := tests/e2e --ignore=tests/e2e/test_postgresql.py --ignore=tests/e2e/test_cluster.py \
	--ignore=tests/e2e/test_pg_outage.py

# The machine's PostgreSQL (127.0.0.1:5432) is started if it is not running.
postgresql-up:
	@command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p 5432 || \
	  { command -v pg_ctlcluster >/dev/null 2>&1 && $(SUDO) pg_ctlcluster --skip-systemctl-redirect $$(ls /etc/postgresql) main start; } || \
	  echo "warning: PostgreSQL is not running on 127.0.0.1:5432; its tests will fail"

# The sources are byte-compiled first: each test starts `waypost serve` in a new
# interpreter over a thousand times (both passes), and where PYTHONDONTWRITEBYTECODE is set (as in this
# machine's environment) no .pyc is ever written, so every start compiled ~180 modules
# again (0.4 s of CPU each time).  A .pyc older than its source is not used.
test: install-test typecheck postgresql-up
	$(PY) -m compileall -q src tests >/dev/null
	$(PY) tests/run_engines.py $(PG_E2E)

clean:
	rm -rf $(VENV) build src/*.egg-info .pytest_cache .mypy_cache
