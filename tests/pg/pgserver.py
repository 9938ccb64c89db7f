# SPDX-License-Identifier: MIT
"""A real PostgreSQL 15 server for the tests of the clinic's records (issue 14).

PgServer() runs initdb into a temporary directory and starts postgres on a Unix
socket in it (no TCP), as a user that is not root (initdb and pg_ctl refuse
root: when the tests run as root, the server runs as the "postgres" user of
Debian's package, or "nobody").  close() stops it and removes everything.  A
watchdog process does the same if the process that made the server dies first
(SIGKILL, SIGTERM, a crash): the server never outlives the suite.

Nothing here is a mock: the daemon talks to this server through libpq.
"""
import os
import pwd
import shutil
import subprocess
import tempfile
import time

BIN = '/usr/lib/postgresql/15/bin'

# The watchdog: waits for EOF on stdin (the suite's end, however it ends), then
# stops the server if it still runs (woken first: it may be SIGSTOPped) and
# removes its directory.  argv: the directory, the data directory, the user.
WATCHDOG = r"""
import os, shutil, signal, subprocess, sys, time
d, data, user = sys.argv[1:4]
sys.stdin.buffer.read()
def pids():
    try:
        with open(os.path.join(data, 'postmaster.pid')) as f:
            master = int(f.readline())
    except (OSError, ValueError):
        return []
    kids = subprocess.run(['pgrep', '-P', str(master)], capture_output=True,
                          text=True).stdout.split()
    return [master] + [int(k) for k in kids]
left = pids()
if left:
    for pid in left:
        try:
            os.kill(pid, signal.SIGCONT)
        except ProcessLookupError:
            pass
    cmd = ['%s/pg_ctl' % sys.argv[4], '-D', data, '-m', 'immediate', '-w', '-t', '20', 'stop']
    if user:
        cmd = ['runuser', '-u', user, '--'] + cmd
    subprocess.run(cmd, capture_output=True)
    for pid in left:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
shutil.rmtree(d, ignore_errors=True)
"""


def _server_user():
    if os.geteuid() != 0:
        return None
    for name in ('postgres', 'nobody'):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            pass
    raise RuntimeError('no user to run postgres as (it refuses root)')


class PgServer:
    def __init__(self, settings=()):
        self.user = _server_user()
        self.dir = tempfile.mkdtemp(prefix='smpl-pg-')
        self.data = os.path.join(self.dir, 'data')
        # Its own session: a signal to the suite's process group leaves it to clean up.
        self._watchdog = subprocess.Popen(
            ['/usr/bin/python3', '-c', WATCHDOG, self.dir, self.data,
             self.user.pw_name if self.user else '', BIN],
            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True)     # holds no pipe of the suite's output open
        os.chmod(self.dir, 0o755)
        if self.user:
            os.chown(self.dir, self.user.pw_uid, self.user.pw_gid)
        self.log = os.path.join(self.dir, 'server.log')
        self.socket_dir = self.dir
        self.settings = ['listen_addresses=', 'fsync=off', 'max_connections=300',
                         'unix_socket_directories=' + self.dir] + list(settings)
        self._as_server([BIN + '/initdb', '-D', self.data, '--auth=trust', '-U', 'postgres',
                         '-E', 'UTF8', '--no-sync', '--no-instructions'], quiet=True)
        self.start()
        self.n = 0

    def _as_server(self, cmd, quiet=False, check=True, timeout=60):
        if self.user:
            cmd = ['runuser', '-u', self.user.pw_name, '--'] + cmd
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError('%s failed:\n%s%s' % (' '.join(cmd), p.stdout, p.stderr))
        return p

    def start(self):
        opts = ' '.join("-c '%s'" % s for s in self.settings)
        self._as_server([BIN + '/pg_ctl', '-D', self.data, '-o', opts, '-l', self.log,
                         '-w', '-t', '60', 'start'])

    def stop(self, mode='fast'):
        self._as_server([BIN + '/pg_ctl', '-D', self.data, '-m', mode, '-w', '-t', '60',
                         'stop'], check=False)

    def running(self):
        return self._as_server([BIN + '/pg_ctl', '-D', self.data, 'status'],
                               check=False).returncode == 0

    def close(self):
        if os.path.isdir(self.data):
            if os.path.exists(os.path.join(self.data, 'postmaster.pid')):
                self.unhang()       # a SIGSTOPped server would not stop
            self.stop('immediate')
        shutil.rmtree(self.dir, ignore_errors=True)
        if self._watchdog:
            self._watchdog.stdin.close()    # nothing left for it to do
            self._watchdog.wait(60)
            self._watchdog = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    # --- SQL, as the superuser unless told ----------------------------------

    def psql(self, sql, db='postgres', user='postgres', check=True, vars=()):
        cmd = ['psql', '-X', '-q', '-A', '-t', '-F', '|', '-v', 'ON_ERROR_STOP=1',
               '-h', self.socket_dir, '-U', user, '-d', db]
        for k, v in vars:
            cmd += ['-v', '%s=%s' % (k, v)]
        p = subprocess.run(cmd + ['-c', sql], capture_output=True, text=True, timeout=120)
        if check and p.returncode != 0:
            raise RuntimeError('psql %r failed: %s' % (sql[:200], p.stderr))
        return p

    def psql_file(self, text, db='postgres', user='postgres', check=True, timeout=600):
        p = subprocess.run(['psql', '-X', '-q', '-v', 'ON_ERROR_STOP=1', '-h', self.socket_dir,
                            '-U', user, '-d', db], input=text, capture_output=True, text=True,
                           timeout=timeout)
        if check and p.returncode != 0:
            raise RuntimeError('psql failed: %s' % p.stderr)
        return p

    def rows(self, sql, db):
        """The rows of a query as lists of strings (NULL is '')."""
        out = self.psql(sql, db=db).stdout
        return [line.split('|') for line in out.splitlines() if line]

    def value(self, sql, db):
        r = self.rows(sql, db)
        return r[0][0] if r else None

    def new_database(self, owner='smpl_ws', create_role=True):
        """An empty database owned by a login role (created if needed)."""
        self.n += 1
        name = 'clinic%d' % self.n
        if create_role:
            self.psql("DO $$BEGIN CREATE ROLE %s LOGIN; EXCEPTION WHEN duplicate_object"
                      " THEN NULL; END$$" % owner)
        self.psql('CREATE DATABASE %s OWNER %s' % (name, owner))
        return name

    def conninfo(self, db, user='smpl_ws'):
        return 'host=%s dbname=%s user=%s' % (self.socket_dir, db, user)

    def terminate(self, db, like='smplaserd%'):
        """pg_terminate_backend() of the daemons' connections to @db: how many."""
        return int(self.value("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
                              " WHERE datname = '%s' AND application_name LIKE '%s'"
                              % (db, like), 'postgres'))

    def pids(self):
        """The postmaster and its children (backends, walwriter, ...)."""
        with open(os.path.join(self.data, 'postmaster.pid')) as f:
            master = int(f.readline())
        kids = subprocess.run(['pgrep', '-P', str(master)], capture_output=True,
                              text=True).stdout.split()
        return [master] + [int(k) for k in kids]

    def hang(self):
        """The server stops answering (SIGSTOP), its sockets open: a hung server."""
        import signal as sig
        for pid in self.pids():
            os.kill(pid, sig.SIGSTOP)

    def unhang(self):
        import signal as sig
        for pid in self.pids():
            try:
                os.kill(pid, sig.SIGCONT)
            except ProcessLookupError:
                pass

    def wait_ready(self, timeout=30):
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.psql('SELECT 1', check=False).returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError('postgres did not come back')
