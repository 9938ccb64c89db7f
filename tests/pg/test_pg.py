#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The clinic's records on PostgreSQL (issue 14), against a real PostgreSQL 15.

One server for the suite (tests/pg/pgserver.py: initdb + pg_ctl on a Unix
socket in a temporary directory); each test gets its own database, and its own
daemons: each daemon is one workstation, on its own private bus, with its own
state directory (its journal), all on the test's database.

Run: /usr/bin/python3 tests/pg/test_pg.py [test_name...]
"""
import os
import signal
import sys
import threading
import time

import dbus

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (GOOD_PARAMS, ROOT, Env, expect_error, pump, test,  # noqa: E402
                     wait_until)
from pgserver import PgServer  # noqa: E402

PG = None


def pg():
    global PG
    if PG is None:
        PG = PgServer()
    return PG


def unit_path(ws, n=1):
    """The object of workstation @ws's simulated unit @n: serial SIM<nn>-<ws>."""
    serial = 'SIM%02d-%s' % (n, ws)
    enc = ''.join(c if c.isalnum() else '_%02x' % ord(c) for c in serial)
    return ROOT + '/unit/' + enc, serial


def config(db, ws, user='smpl_ws', extra=''):
    return ('[records]\nbackend = postgresql\nconninfo = %s\nworkstation = %s\n%s'
            % (pg().conninfo(db, user), ws, extra))


class Workstation(Env):
    """One workstation: a daemon on the clinic's database."""

    def __init__(self, db, ws, user='smpl_ws', extra=''):
        super().__init__(config(db, ws, user, extra))
        self.db = db
        self.ws = ws
        self.upath, self.serial = unit_path(ws)

    def u(self, bus=None):
        return self.unit(self.upath, bus)

    def simu(self):
        return self.sim(self.upath)

    def state(self):
        try:
            return str(self.unit_prop('State', self.upath))
        except dbus.DBusException as e:
            return e.get_dbus_name()

    def wait_state(self, state, timeout=6.0):
        wait_until(lambda: self.state() == state, timeout, '%s: unit %s' % (self.ws, state))

    def ready(self, patient, patch='crown'):
        """A session with its patch selected, eyewear confirmed, parameters set."""
        spath = self.u().StartSession(patient)
        self.session(spath).SelectPatch(patch)
        self.session(spath).ConfirmEyewear()
        self.u().SetParameters(GOOD_PARAMS)
        return spath

    def fire(self, seconds):
        self.simu().SetFootswitch(True)
        pump(seconds)
        self.simu().SetFootswitch(False)
        pump(0.2)

    def treat(self, patient, patch='crown', seconds=0.5):
        spath = self.ready(patient, patch)
        self.u().Arm()
        self.wait_state('ready')
        self.fire(seconds)
        self.u().Disarm()
        self.wait_state('standby')
        self.end_session(spath, 'done')     # the endpoint first (issue 16)
        return spath

    def fired_shots(self):
        return [f['shot'] for f in self.fired(self.serial)]

    def recorded_shots(self):
        """The unit's pulses in the clinic's records (each row; repeats would show)."""
        return [int(r[0]) for r in pg().rows(
            "SELECT shot FROM smplaser.pulses WHERE unit_serial = '%s' ORDER BY shot"
            % self.serial, self.db)]

    def journal_waiting(self):
        import sqlite3
        path = os.path.join(self.state_dir, 'journal.db')
        if not os.path.exists(path):
            return 0
        db = sqlite3.connect('file:%s?mode=ro' % path, uri=True, timeout=5)
        try:
            return db.execute('SELECT count(*) FROM outbox').fetchone()[0]
        finally:
            db.close()

    def wait_shipped(self, timeout=15):
        # A session's End is answered before its record is written (the writer thread):
        # an empty outbox proves nothing until the writer has passed what came before.
        if self.daemon and self.daemon.poll() is None:
            self.settle_records()
        wait_until(lambda: self.journal_waiting() == 0, timeout,
                   '%s: the journal shipped' % self.ws)


def treatments(db, where='true'):
    return pg().rows("SELECT id, workstation, patient, patch, unit_serial, outcome,"
                     " coalesce(pulse_count::text, ''), pulses_recorded FROM smplaser.treatments"
                     " WHERE %s ORDER BY id" % where, db)


# --- the schema -------------------------------------------------------------------------

@test
def test_schema_created_in_an_empty_database():
    """Given an empty database its role owns, the daemon creates the schema; the role may
    neither delete nor truncate, and the triggers refuse it even to the superuser."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        assert pg().value("SELECT schema_version FROM smplaser.meta", db) == '3'
        w.treat('p-001')
        p = pg().psql('DELETE FROM smplaser.treatments', db=db, user='smpl_ws', check=False)
        assert p.returncode != 0 and 'permission denied' in p.stderr, p.stderr
        p = pg().psql('TRUNCATE smplaser.pulses', db=db, user='smpl_ws', check=False)
        assert p.returncode != 0 and 'permission denied' in p.stderr, p.stderr
        p = pg().psql('DELETE FROM smplaser.audit', db=db, check=False)
        assert p.returncode != 0 and 'never deleted' in p.stderr, p.stderr
        p = pg().psql("UPDATE smplaser.treatments SET patch = 'occipital'", db=db, check=False)
        assert p.returncode != 0 and 'never changed' in p.stderr, p.stderr
        assert len(treatments(db)) == 1


@test
def test_print_schema_for_an_administrator():
    """smplaserd --print-schema=ROLE makes the schema as the database's owner; the daemon's
    role, granted only what it prints, runs a treatment and cannot delete."""
    import subprocess
    db = pg().new_database(owner='postgres', create_role=False)
    pg().psql("DO $$BEGIN CREATE ROLE smpl_granted LOGIN; EXCEPTION WHEN duplicate_object"
              " THEN NULL; END$$")
    sql = subprocess.run([harness.DAEMON, '--print-schema=smpl_granted'], capture_output=True,
                         text=True, check=True).stdout
    assert 'GRANT' in sql and 'DELETE' not in sql.split('REVOKE')[0].split('GRANT', 1)[1]
    pg().psql_file(sql, db=db)
    with Workstation(db, 'ws1', user='smpl_granted') as w:
        w.start()
        w.treat('p-002')
        assert len(treatments(db, "patient = 'p-002'")) == 1
        p = pg().psql('DELETE FROM smplaser.pulses', db=db, user='smpl_granted', check=False)
        assert 'permission denied' in p.stderr, p.stderr


@test
def test_foreign_newer_or_forbidden_database_refused():
    """A database holding other tables, one with a newer schema, and a role without rights
    on the records are each refused at start with a clear error."""
    db = pg().new_database()
    pg().psql('CREATE TABLE public.invoices (id int)', db=db, user='smpl_ws')
    with Workstation(db, 'ws1') as w:
        rc, out = w.run_to_exit()
        assert rc != 0 and 'not smplaser' in out and 'invoices' in out, out
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
    pg().psql('UPDATE smplaser.meta SET schema_version = 99', db=db)
    with Workstation(db, 'ws1') as w:
        rc, out = w.run_to_exit()
        assert rc != 0 and 'newer' in out and '99' in out, out
    pg().psql("DO $$BEGIN CREATE ROLE smpl_nobody LOGIN; EXCEPTION WHEN duplicate_object"
              " THEN NULL; END$$")
    pg().psql('UPDATE smplaser.meta SET schema_version = 2', db=db)
    with Workstation(db, 'ws1', user='smpl_nobody') as w:
        rc, out = w.run_to_exit()
        assert rc != 0 and 'may not read' in out and 'print-schema' in out, out
    empty = pg().new_database(owner='postgres', create_role=False)
    with Workstation(empty, 'ws1', user='smpl_nobody') as w:
        rc, out = w.run_to_exit()
        assert rc != 0 and 'may not create' in out, out


@test
def test_password_in_conninfo_refused():
    """A password in smplaserd.conf is refused with the line: libpq's password file."""
    db = pg().new_database()
    with Env(config='[records]\nbackend = postgresql\nconninfo = %s password=x\n'
             % pg().conninfo(db)) as e:
        rc, out = e.run_to_exit()
        assert rc != 0 and ':3:' in out and 'password' in out, out


@test
def test_without_libpq_the_daemon_says_to_install_it():
    """libpq is loaded only when the PostgreSQL records are configured (a workstation on
    SQLite never maps it, nor OpenSSL, Kerberos and LDAP behind it: 6 MiB of resident
    memory).  Configured without it (here hidden by /dev/null bound over its file in a
    mount namespace of the daemon's own), the daemon refuses to start and says what to
    install; on SQLite it starts as before."""
    if os.getuid() != 0:
        return 'skip'
    lib = os.path.realpath('/usr/lib/x86_64-linux-gnu/libpq.so.5')
    assert os.path.exists(lib), lib
    db = pg().new_database()
    hide = ['unshare', '-m', '--propagation', 'private', 'sh', '-c',
            'mount --bind /dev/null "$0" && exec "$@"', lib]
    with Env(config=config(db, 'ws-nolib')) as e:
        args_fn = e.daemon_args
        e.daemon_args = lambda sim=1: hide + args_fn(sim)
        rc, out = e.run_to_exit()
        assert rc != 0 and 'libpq.so.5' in out and 'install the libpq5 package' in out, out
        print('# ' + [line for line in out.splitlines() if 'libpq' in line][0][:200])
    with Env() as e:
        args_fn = e.daemon_args
        e.daemon_args = lambda sim=1: hide + args_fn(sim)
        e.start()
        assert e.manager_prop('State') == 'running'
        maps = open('/proc/%d/maps' % e.daemon.pid).read()
        assert 'libpq' not in maps and 'libssl' not in maps, 'SQLite records mapped libpq'


# --- two workstations ------------------------------------------------------------------

@test
def test_two_workstations_share_the_rule():
    """A patch treated on one workstation is refused on the other (CheckPatch, SelectPatch
    and Arm, decided by the database), and both Histories show the treatment.  Both start
    at once on the empty database: one makes the schema, the other uses it."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b:
        a.start(wait=False)
        b.start(wait=False)
        wait_until(a._running, 20, 'ws1 to run')
        wait_until(b._running, 20, 'ws2 to run')
        # ws2 selects the patch while it is untreated: its Arm must still be refused.
        spath_b = b.ready('p-100', 'crown')
        a.treat('p-100', 'crown')
        eligible, _, reason = b.manager().CheckPatch('P-100', 'crown')
        assert not eligible and 'eligible from' in reason, reason
        expect_error('CooldownActive', b.u().Arm, contains=('ws1', 'eligible from'))
        b.end_session(spath_b, 'refused')
        spath = b.u().StartSession('p-100')
        expect_error('CooldownActive', b.session(spath).SelectPatch, 'crown')
        b.session(spath).SelectPatch('occipital')   # another patch is fine
        b.end_session(spath, '')
        for w in (a, b):
            h = w.history('p-100')
            assert len(h) == 1, h
            assert h[0]['workstation'] == 'ws1' and h[0]['unit'] == a.serial, h[0]
            assert h[0]['pulses'] > 0
        assert len(treatments(db)) == 1


@test
def test_race_exactly_one_arms():
    """Both workstations select the same patient's untreated patch, then Arm at the same
    instant, 100 times: exactly one arms each time, the other gets CooldownActive.
    A trigger of the test's own widens the race: every insert of a treatment waits 30 ms
    between the rules' reads and the commit."""
    db = pg().new_database()
    rounds = int(os.environ.get('SMPL_PG_RACE_ROUNDS', '100'))
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b:
        a.start()
        b.start()
        pg().psql("CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
                  " $$BEGIN PERFORM pg_sleep(0.03); RETURN NEW; END$$;"
                  " CREATE TRIGGER slow BEFORE INSERT ON smplaser.treatments FOR EACH ROW"
                  " EXECUTE FUNCTION public.slow()", db=db)
        wins = {'ws1': 0, 'ws2': 0}
        for i in range(rounds):
            patient = 'race-%03d' % i
            sa = a.ready(patient, 'crown')
            sb = b.ready(patient, 'crown')
            results = {}

            def arm(w):
                def ok():
                    results[w.ws] = 'armed'

                def err(e):
                    results[w.ws] = e.get_dbus_name().split('.')[-1]
                w.u().Arm(reply_handler=ok, error_handler=err, timeout=60)
            arm(a)
            arm(b)
            wait_until(lambda: len(results) == 2, 30, 'both answers')
            armed = [ws for ws, r in results.items() if r == 'armed']
            assert len(armed) == 1, 'round %d: %s' % (i, results)
            loser = 'ws2' if armed[0] == 'ws1' else 'ws1'
            assert results[loser] == 'CooldownActive', 'round %d: %s' % (i, results)
            wins[armed[0]] += 1
            for w, s in ((a, sa), (b, sb)):
                w.u().Disarm()
                w.end_session(s, '')
            (a if armed[0] == 'ws1' else b).wait_state('standby')
        n = int(pg().value("SELECT count(*) FROM smplaser.treatments WHERE patient LIKE"
                           " 'race-%%'", db))
        assert n == rounds, n
        print('# %d rounds: ws1 armed %d, ws2 armed %d' % (rounds, wins['ws1'], wins['ws2']))


@test
def test_race_test_spot_on_two_patches():
    """The test-spot rule, which no constraint expresses: a new patient's crown selected on
    one workstation and occipital on the other, both Arm at the same instant, 20 times.
    The first treatment is the test spot and puts the patient under review: exactly one
    arms each time, the other gets CooldownActive (the review).  Only the SERIALIZABLE
    arming holds this (the patches differ: the exclusion constraint cannot)."""
    db = pg().new_database()
    rounds = max(1, int(os.environ.get('SMPL_PG_RACE_ROUNDS', '100')) // 5)
    rules = '[rules]\ntest_spot = true\n'
    with Workstation(db, 'ws1', extra=rules) as a, Workstation(db, 'ws2', extra=rules) as b:
        a.start()
        b.start()
        pg().psql("CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
                  " $$BEGIN PERFORM pg_sleep(0.03); RETURN NEW; END$$;"
                  " CREATE TRIGGER slow BEFORE INSERT ON smplaser.treatments FOR EACH ROW"
                  " EXECUTE FUNCTION public.slow()", db=db)
        wins = {'ws1': 0, 'ws2': 0}
        for i in range(rounds):
            patient = 'spot-%03d' % i
            sa = a.ready(patient, 'crown')
            sb = b.ready(patient.upper(), 'occipital')     # one patient, typed otherwise
            results = {}

            def arm(w):
                def ok():
                    results[w.ws] = 'armed'

                def err(e):
                    results[w.ws] = e.get_dbus_name().split('.')[-1]
                w.u().Arm(reply_handler=ok, error_handler=err, timeout=60)
            arm(a)
            arm(b)
            wait_until(lambda: len(results) == 2, 30, 'both answers')
            armed = [ws for ws, r in results.items() if r == 'armed']
            assert len(armed) == 1, 'round %d: %s' % (i, results)
            loser = 'ws2' if armed[0] == 'ws1' else 'ws1'
            assert results[loser] == 'CooldownActive', 'round %d: %s' % (i, results)
            wins[armed[0]] += 1
            for w, s in ((a, sa), (b, sb)):
                w.u().Disarm()
                w.end_session(s, '')
            (a if armed[0] == 'ws1' else b).wait_state('standby')
        n = int(pg().value("SELECT count(*) FROM smplaser.treatments WHERE patient_key LIKE"
                           " 'spot-%%'", db))
        assert n == rounds, n
        print('# %d rounds: ws1 armed %d, ws2 armed %d' % (rounds, wins['ws1'], wins['ws2']))


@test
def test_the_database_refuses_an_overlapping_treatment():
    """Without any daemon: a treatment inserted straight into the records inside another's
    cooldown (another session, same patient in another letter case, same patch) is refused
    by the exclusion constraint; the same patch after the cooldown is accepted."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-200', 'crown')
    t = treatments(db)[0]
    sid = pg().value('SELECT session_id FROM smplaser.treatments', db)
    day = 86400000
    cols = ('session_id, workstation, patient, patch, unit_serial, unit_firmware,'
            ' operator_uid, operator_name, wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps,'
            ' rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, shot_at_arm, cooldown_ms')

    def insert(patient, armed_expr):
        return pg().psql(
            "INSERT INTO smplaser.sessions (workstation, patient, unit_serial, operator_uid,"
            " operator_name, start_ms) VALUES ('x', '%s', '%s', 0, 'x', 0);"
            "INSERT INTO smplaser.treatments (%s) SELECT currval(pg_get_serial_sequence("
            "'smplaser.sessions', 'id')), 'x', '%s', patch, unit_serial, unit_firmware, 0, 'x',"
            " 1064, 3000, 3000, 10000, 5000, 1, %s, 0, 100000, %d FROM smplaser.treatments"
            " WHERE session_id = %s" % (patient, t[4], cols, patient, armed_expr, 42 * day, sid),
            db=db, user='smpl_ws', check=False)
    p = insert('P-200', 'emission_ms + %d' % (41 * day))
    assert p.returncode != 0 and 'cooldown' in p.stderr, p.stderr
    p = insert('P-200', 'emission_ms + %d' % (43 * day))
    assert p.returncode == 0, p.stderr


# --- fail closed, lose nothing ----------------------------------------------------------

@test
def test_server_unreachable_fails_closed():
    """The server stopped: Arm, StartSession, CheckPatch, SelectPatch and History are refused
    with RecordsUnavailable saying why, never eligible; back, all work again."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        spath = w.ready('p-300', 'crown')
        spath2 = None
        pg().stop()
        try:
            expect_error('RecordsUnavailable', w.u().Arm, contains=('unreachable',))
            assert w.state() == 'standby'
            expect_error('RecordsUnavailable', w.manager().CheckPatch, 'p-300', 'crown')
            expect_error('RecordsUnavailable', w.manager().History, 'p-300')
            expect_error('RecordsUnavailable', w.session(spath).SelectPatch, 'occipital')
            w.end_session(spath, 'server away')    # journaled
            expect_error('RecordsUnavailable', w.u().StartSession, 'p-301')
        finally:
            pg().start()
        wait_until(lambda: w.journal_waiting() == 0, 10, 'the journal shipped')
        spath2 = w.ready('p-300', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.u().Disarm()
        w.end_session(spath2, '')
        assert pg().value("SELECT state FROM smplaser.sessions WHERE id = %s"
                          % spath.split('/')[-1], db) == 'ended'


@test
def test_server_stopped_mid_treatment():
    """The server stops while the unit emits: the treatment goes on (no disarm), its pulses
    wait in the workstation's journal and arrive once when the server is back."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        spath = w.ready('p-400', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.fire(0.5)
        pg().stop()
        before = len(w.fired_shots())
        try:
            w.fire(1.0)
            assert len(w.fired_shots()) > before     # fired with the server away
            assert w.state() == 'ready', w.state()     # not disarmed by the server's absence
            w.u().Disarm()
            w.wait_state('standby')
            w.end_session(spath, 'done')
            pump(0.5)
            assert w.journal_waiting() > 0
        finally:
            pg().start()
        w.wait_shipped()
        fired = w.fired_shots()
        assert w.recorded_shots() == fired, (w.recorded_shots(), fired)
        t = treatments(db)
        assert len(t) == 1 and t[0][5] == 'completed' and int(t[0][6]) == len(fired), t


@test
def test_sigkill_while_the_server_is_down():
    """The daemon is killed (SIGKILL) while the server is down and pulses wait in the
    journal; both back: every pulse is in the records once, the treatment settled."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.ready('p-500', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.fire(0.4)
        pg().stop()
        try:
            w.fire(0.8)
            pump(0.3)       # past a flush into the journal
            w.kill(signal.SIGKILL)
        finally:
            pg().start()
        w.start()
        w.wait_shipped()
        wait_until(lambda: treatments(db)[0][5] != 'open', 10, 'the treatment settled')
        fired = w.fired_shots()
        assert w.recorded_shots() == fired, (w.recorded_shots(), fired)
        t = treatments(db)
        assert len(t) == 1 and t[0][5] == 'reconciled' and int(t[0][6]) == len(fired), t


@test
def test_connection_killed_while_arming():
    """pg_terminate_backend() of the daemon's connection in the middle of the arming
    transaction: Arm succeeds on a new connection, once (one treatment)."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.ready('p-600', 'crown')
        pg().psql("CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
                  " $$BEGIN PERFORM pg_sleep(1); RETURN NEW; END$$;"
                  " CREATE TRIGGER slow BEFORE INSERT ON smplaser.treatments FOR EACH ROW"
                  " EXECUTE FUNCTION public.slow()", db=db)
        result = []
        w.u().Arm(reply_handler=lambda: result.append('armed'),
                  error_handler=lambda e: result.append(e.get_dbus_name()), timeout=60)
        wait_until(lambda: pg().value("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                      " '%s' AND query LIKE 'INSERT INTO smplaser.treatments%%'"
                                      % db, 'postgres') == '1', 10, 'the arming insert')
        assert pg().terminate(db, 'smplaserd writer%') >= 1
        wait_until(lambda: result, 30, 'the Arm reply')
        assert result == ['armed'], result
        w.wait_state('ready')
        assert len(treatments(db)) == 1
        w.u().Disarm()


@test
def test_server_stopped_while_arming():
    """The server shuts down inside the arming transaction (its insert waits in a trigger):
    Arm is refused with RecordsUnavailable, the unit never arms, and nothing of that arming
    is in the records; back, the same Arm arms once."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.ready('p-610', 'crown')
        pg().psql("CREATE FUNCTION public.slow() RETURNS trigger LANGUAGE plpgsql AS"
                  " $$BEGIN PERFORM pg_sleep(1); RETURN NEW; END$$;"
                  " CREATE TRIGGER slow BEFORE INSERT ON smplaser.treatments FOR EACH ROW"
                  " EXECUTE FUNCTION public.slow()", db=db)
        result = []
        states = set()
        w.u().Arm(reply_handler=lambda: result.append('armed'),
                  error_handler=lambda e: result.append(e.get_dbus_name()), timeout=60)
        wait_until(lambda: pg().value("SELECT count(*) FROM pg_stat_activity WHERE datname ="
                                      " '%s' AND query LIKE 'INSERT INTO smplaser.treatments%%'"
                                      % db, 'postgres') == '1', 10, 'the arming insert')
        pg().stop()
        try:
            def answered():
                states.add(w.state())
                return result
            wait_until(answered, 30, 'the Arm reply')
            assert result == [harness.ERR + 'RecordsUnavailable'], result
            pump(0.5)
            states.add(w.state())
            assert states == {'standby'}, states
        finally:
            pg().start()
        pg().wait_ready()
        assert treatments(db) == [], treatments(db)
        pg().psql('DROP TRIGGER slow ON smplaser.treatments', db=db)
        wait_until(lambda: w.journal_waiting() == 0, 10, 'the journal shipped')
        w.u().Arm()
        w.wait_state('ready')
        assert len(treatments(db)) == 1, treatments(db)
        w.u().Disarm()


@test
def test_connection_killed_while_emitting():
    """The daemon's connections terminated again and again while the unit emits: every
    pulse arrives once."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        spath = w.ready('p-700', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        stop = threading.Event()
        killed = [0]

        def killer():
            while not stop.is_set():
                killed[0] += pg().terminate(db)
                time.sleep(0.07)
        t = threading.Thread(target=killer)
        t.start()
        try:
            w.fire(2.0)
        finally:
            stop.set()
            t.join()
        w.u().Disarm()
        w.wait_state('standby')
        w.end_session(spath, '')
        w.wait_shipped()
        fired = w.fired_shots()
        assert killed[0] > 5, killed
        assert w.recorded_shots() == fired, (w.recorded_shots(), fired)
        print('# %d connections killed, %d pulses, each once' % (killed[0], len(fired)))


@test
def test_hung_server_stalls_no_loop():
    """A server that stops answering (SIGSTOP, its sockets open) while one unit emits: the
    daemon's loop goes on (another unit's properties answered at once, a Disarm at once,
    the emitting unit not disarmed by the wait), queries end with RecordsUnavailable at
    their deadline, and every pulse arrives once when the server is back."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start(sim=2)
        u2, _ = unit_path('ws1', 2)
        spath = w.ready('p-h01', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        answers = []
        worst = 0.0
        pg().hang()
        try:
            w.simu().SetFootswitch(True)
            w.manager().CheckPatch('p-h02', 'crown', timeout=60,
                                   reply_handler=lambda *a: answers.append('answered'),
                                   error_handler=lambda e: answers.append(e.get_dbus_name()))
            end = time.monotonic() + 3
            while time.monotonic() < end:
                t0 = time.monotonic()
                w.unit_prop('State', u2)
                worst = max(worst, time.monotonic() - t0)
                pump(0.05)
            assert w.state() in ('ready', 'emitting'), w.state()
            w.simu().SetFootswitch(False)
            t0 = time.monotonic()
            w.u().Disarm()
            disarm_s = time.monotonic() - t0
            w.wait_state('standby', 2)
            wait_until(lambda: answers, 30, 'CheckPatch to end at its deadline')
        finally:
            pg().unhang()
        assert worst < 0.5, 'a property took %.2f s while the server hung' % worst
        assert disarm_s < 0.5, 'Disarm took %.2f s while the server hung' % disarm_s
        assert answers == [harness.ERR + 'RecordsUnavailable'], answers
        w.end_session(spath, '')
        w.wait_shipped(30)
        assert w.recorded_shots() == w.fired_shots()
        print('# worst property read %.0f ms, Disarm %.0f ms while the server hung'
              % (worst * 1000, disarm_s * 1000))


class CutProxy:
    """A Unix-socket proxy in front of the test's server that cuts, once when told, the
    connection that sends the COMMIT of a transaction in which it saw @after (default: a
    SERIALIZABLE one, the arming), right after the server got it: the commit goes on on
    the server, its answer is lost."""

    def __init__(self, target_dir, after=b'ISOLATION LEVEL SERIALIZABLE'):
        import socket
        import tempfile
        self.dir = tempfile.mkdtemp(prefix='smpl-pgproxy-')
        os.chmod(self.dir, 0o755)
        self.target = os.path.join(target_dir, '.s.PGSQL.5432')
        self.after = after
        self.cut_next = threading.Event()
        self.cuts = 0
        self.srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        path = os.path.join(self.dir, '.s.PGSQL.5432')
        self.srv.bind(path)
        os.chmod(path, 0o777)
        self.srv.listen(64)
        self.closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def conninfo(self, db, user='smpl_ws'):
        return 'host=%s dbname=%s user=%s' % (self.dir, db, user)

    def _accept(self):
        import socket
        while not self.closed:
            try:
                c, _ = self.srv.accept()
            except OSError:
                return
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                s.connect(self.target)
            except OSError:
                c.close()
                continue
            threading.Thread(target=self._up, args=(c, s), daemon=True).start()
            threading.Thread(target=self._down, args=(s, c), daemon=True).start()

    def _up(self, c, s):
        seen = False
        try:
            while True:
                data = c.recv(65536)
                if not data:
                    break
                s.sendall(data)
                if self.after in data:
                    seen = True
                if b'COMMIT\x00' in data:
                    if seen and self.cut_next.is_set():
                        self.cut_next.clear()
                        self.cuts += 1
                        time.sleep(0.1)     # the server has it
                        break               # ... and the client never hears
                    seen = False
        except OSError:
            pass
        self._close(c, s)

    def _down(self, s, c):
        try:
            while True:
                data = s.recv(65536)
                if not data:
                    break
                c.sendall(data)
        except OSError:
            pass
        self._close(c, s)

    @staticmethod
    def _close(*socks):
        import socket
        for x in socks:
            try:
                x.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            x.close()

    def close(self):
        import shutil
        self.closed = True
        self.srv.close()
        shutil.rmtree(self.dir, ignore_errors=True)


@test
def test_commit_answer_lost_while_the_commit_goes_on():
    """The arming's COMMIT reaches the server, and the connection breaks before its answer
    while the commit is still going on (a commit that waits, as for a synchronous standby;
    here a deferred trigger of the test sleeps 1 s in it): the daemon looks for the
    treatment on a new connection and cannot see it yet.  It must not record the arming
    twice: the unit arms on one treatment, and that one gets the pulses and the end."""
    db = pg().new_database()
    proxy = CutProxy(pg().socket_dir)
    try:
        conf = ('[records]\nbackend = postgresql\nconninfo = %s\nworkstation = ws1\n'
                % proxy.conninfo(db))
        with Workstation(db, 'ws1') as w:
            with open(w.config_path, 'w') as f:     # through the proxy
                f.write(conf)
            w.start()
            spath = w.ready('p-c01', 'crown')
            pg().psql("CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql"
                      " AS $$BEGIN PERFORM pg_sleep(1); RETURN NULL; END$$;"
                      " CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON"
                      " smplaser.treatments DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                      " EXECUTE FUNCTION public.slow_commit()", db=db)
            proxy.cut_next.set()
            result = []
            w.u().Arm(reply_handler=lambda: result.append('armed'),
                      error_handler=lambda e: result.append(e.get_dbus_name()), timeout=60)
            wait_until(lambda: result, 40, 'the Arm reply')
            assert proxy.cuts == 1, proxy.cuts
            pump(1.5)           # every commit in flight has ended
            t = treatments(db)
            assert result == ['armed'], (result, t)
            w.wait_state('ready')
            assert len(t) == 1, 'one arming, %d treatments recorded: %s' % (len(t), t)
            w.fire(0.4)
            w.u().Disarm()
            w.wait_state('standby')
            w.end_session(spath, '')
            w.wait_shipped()
            t = treatments(db)
            fired = w.fired_shots()
            assert len(t) == 1 and t[0][5] == 'completed' and int(t[0][7]) == len(fired), t
    finally:
        proxy.close()


@test
def test_session_commit_answer_lost_while_the_commit_goes_on():
    """As for an arming, for a session's start: its COMMIT's answer lost while the commit
    still runs (a deferred trigger of the test: 1 s).  StartSession answers once, and the
    clinic's records hold one session, the one the daemon uses."""
    db = pg().new_database()
    proxy = CutProxy(pg().socket_dir, after=b'INSERT INTO smplaser.sessions')
    try:
        conf = ('[records]\nbackend = postgresql\nconninfo = %s\nworkstation = ws1\n'
                % proxy.conninfo(db))
        with Workstation(db, 'ws1') as w:
            with open(w.config_path, 'w') as f:     # through the proxy
                f.write(conf)
            w.start()
            pg().psql("CREATE FUNCTION public.slow_commit() RETURNS trigger LANGUAGE plpgsql"
                      " AS $$BEGIN PERFORM pg_sleep(1); RETURN NULL; END$$;"
                      " CREATE CONSTRAINT TRIGGER slow_commit AFTER INSERT ON"
                      " smplaser.sessions DEFERRABLE INITIALLY DEFERRED FOR EACH ROW"
                      " EXECUTE FUNCTION public.slow_commit()", db=db)
            proxy.cut_next.set()
            result = []
            w.u().StartSession('p-c02', reply_handler=lambda p: result.append(str(p)),
                               error_handler=lambda e: result.append(e.get_dbus_name()),
                               timeout=60)
            wait_until(lambda: result, 40, 'the StartSession reply')
            assert proxy.cuts == 1, proxy.cuts
            pump(1.5)           # every commit in flight has ended
            rows = pg().rows("SELECT id, state FROM smplaser.sessions WHERE patient = 'p-c02'",
                             db)
            assert result[0].startswith(ROOT + '/session/'), (result, rows)
            assert len(rows) == 1, 'one start, %d sessions recorded: %s' % (len(rows), rows)
            assert rows[0][0] == result[0].split('/')[-1], (result, rows)
            w.end_session(result[0], '')
            w.wait_shipped()
            assert pg().value("SELECT state FROM smplaser.sessions WHERE patient = 'p-c02'",
                              db) == 'ended'
    finally:
        proxy.close()


# --- integ's store features on this backend -----------------------------------------------

@test
def test_records_copies_refused_and_no_sqlite_check():
    """The SQLite store's Backup, Export, verify and integrity check are not the clinic's:
    Backup and Export answer NotSupported naming pg_dump (nothing written into the file),
    `smplaserctl records verify` fails saying so, and the integrity check of a records.db
    that a PostgreSQL workstation does not have never faults its units: after it would
    have run, the unit still arms and its pulses reach the clinic's records."""
    import subprocess
    import tempfile
    db = pg().new_database()
    with Workstation(db, 'ws1') as a:
        a.start()
        records = dbus.Interface(a.obj(harness.ROOT), 'org.smplaser.Laser1.Records')
        with tempfile.TemporaryFile() as f:
            for call, args in ((records.Backup, ()), (records.Export, (dbus.UInt64(0), 'csv'))):
                try:
                    call(dbus.types.UnixFd(f), *args)
                    raise AssertionError('%s answered on PostgreSQL' % call)
                except dbus.DBusException as e:
                    assert e.get_dbus_name() == 'org.freedesktop.DBus.Error.NotSupported', e
                    assert 'PostgreSQL' in str(e) and 'pg_dump' in str(e), e
            f.seek(0, os.SEEK_END)
            assert f.tell() == 0, 'something was written'
        ctl = os.environ.get('SMPLASERCTL', os.path.join(harness.TOP, 'build', 'smplaserctl'))
        e = a.env()
        e['NO_COLOR'] = '1'
        p = subprocess.run([ctl, '--session', 'records', 'verify'], env=e, timeout=60,
                           stdin=subprocess.DEVNULL, capture_output=True, text=True)
        assert p.returncode != 0 and 'pg_dump' in p.stderr, (p.returncode, p.stderr)
        pump(2.0)      # the SQLite store's check would have faulted the unit by now
        assert a.state() == 'standby', a.state()
        a.treat('p-300', 'crown')
        assert len(treatments(db, "patient = 'p-300'")) == 1
        a.wait_shipped()
        assert a.recorded_shots() == a.fired_shots()
        assert not os.path.exists(os.path.join(a.state_dir, 'records.db'))


# --- the clinical record (issue 16, schema step 3) ----------------------------------------

DAY_MS = 86400 * 1000


def findings(**kw):
    """RecordFollowUp's a{sv}, typed as a client would send it (as test_clinical.py)."""
    d = {}
    for k, v in kw.items():
        if isinstance(v, bool):
            d[k] = dbus.Boolean(v)
        elif isinstance(v, int):
            d[k] = dbus.UInt32(v)
        elif isinstance(v, (list, tuple)):
            d[k] = dbus.Array(v, signature='s')
        else:
            d[k] = dbus.String(v)
    return dbus.Dictionary(d, signature='sv')


def seed_treated(db, patient, patch, days_ago, ws='ws9'):
    """A completed treatment of @days_ago, another workstation's, in a session of its own
    (the clinic's history: the rules past the 42-day cooldown are reached in seconds)."""
    armed = int(time.time() * 1000) - days_ago * DAY_MS
    pg().psql("INSERT INTO smplaser.units VALUES ('U-SEED', 'x', 'x', 0, 0, '%(ws)s')"
              " ON CONFLICT DO NOTHING;"
              "WITH s AS (INSERT INTO smplaser.sessions (workstation, patient, unit_serial,"
              " operator_uid, operator_name, start_ms, end_ms, state) VALUES ('%(ws)s', '%(p)s',"
              " 'U-SEED', 0, 'x', %(a)d - 1000, %(a)d + 60000, 'ended') RETURNING id)"
              " INSERT INTO smplaser.treatments (session_id, workstation, patient, patch,"
              " unit_serial, unit_firmware, operator_uid, operator_name, wavelength_nm,"
              " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
              " armed_rtc_s, shot_at_arm, cooldown_ms, outcome, end_ms, shot_at_end,"
              " pulse_count, pulses_recorded)"
              " SELECT id, '%(ws)s', '%(p)s', '%(patch)s', 'U-SEED', 'x', 0, 'x', 1064, 3000,"
              " 3000, 10000, 5000, 1, %(a)d, %(a)d / 1000, 0, 3628800000, 'completed',"
              " %(a)d + 30000, 5, 5, 0 FROM s"
              % dict(ws=ws, p=patient, patch=patch, a=armed), db=db)


def course(w, patient):
    return {str(p['patch']): p for p in w.manager().Course(patient)}


def select_and_arm(w, spath, patch):
    """Select @patch, arm and disarm without firing: the arming transaction allowed it."""
    w.session(spath).SelectPatch(patch)
    w.session(spath).ConfirmEyewear()
    w.u().SetParameters(GOOD_PARAMS)
    w.u().Arm()
    w.wait_state('ready')
    w.u().Disarm()
    w.wait_state('standby')


@test
def test_clinical_rules_on_the_clinics_records():
    """Issue 16's rules on the clinic's records (schema step 3), as test_clinical.py on
    SQLite: the endpoint before another patch or the end, a re-treatment only after a
    follow-up since that found pigment (and never inside the cooldown), a clear patch, a
    hold until an authorized review; each refused with its named error, the unit never
    fired for it; every record in the clinic's tables with its audit record."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '3'
        # The endpoint: due before another patch or the end of the session.
        spath = w.ready('p-410', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.fire(0.5)
        w.u().Disarm()
        w.wait_state('standby')
        assert list(w.session_prop(spath, 'EndpointsMissing')) == ['crown']
        expect_error('EndpointMissing', w.session(spath).SelectPatch, 'occipital',
                     contains=('crown',))
        expect_error('EndpointMissing', w.session(spath).End, 'done', contains=('crown',))
        w.session(spath).RecordEndpoint('crown', 'partial-whitening', 'even frost')
        assert list(w.session_prop(spath, 'EndpointsMissing')) == []
        w.end_session(spath, 'done')
        w.wait_shipped()
        rows = pg().rows("SELECT e.patch, e.endpoint, e.note, e.workstation,"
                         " e.treatment_id = t.id FROM smplaser.endpoints e"
                         " JOIN smplaser.treatments t ON t.session_id = e.session_id"
                         " WHERE e.patient = 'p-410'", db)
        assert rows == [['crown', 'partial-whitening', 'even frost', 'ws1', 't']], rows
        # The cooldown first, then a follow-up; a follow-up never shortens the cooldown.
        spath = w.u().StartSession('p-410')
        expect_error('CooldownActive', w.session(spath).SelectPatch, 'crown',
                     contains=('then a follow-up must find pigment',))
        w.manager().RecordFollowUp('p-410', 'crown', findings(pigment_remaining_pct=40))
        expect_error('CooldownActive', w.session(spath).SelectPatch, 'crown')
        w.end_session(spath, '')
        c = course(w, 'p-410')['crown']
        assert c['status'] == 'cooling-down' and c['treatment_count'] == 1, c
        assert [str(e['endpoint']) for e in c['endpoints']] == ['partial-whitening'], c
        assert [int(f['pigment_remaining_pct']) for f in c['follow_ups']] == [40], c
        # Past the cooldown: a follow-up since the last emission that found pigment.
        seed_treated(db, 'p-411', 'crown', 50)
        eligible, when, reason = w.manager().CheckPatch('p-411', 'crown')
        assert not eligible and when == 0 and 'follow-up' in reason, reason
        assert course(w, 'p-411')['crown']['status'] == 'awaiting-follow-up'
        spath = w.u().StartSession('p-411')
        expect_error('FollowUpRequired', w.session(spath).SelectPatch, 'crown')
        w.manager().RecordFollowUp('p-411', 'crown',
                                   findings(pigment_remaining_pct=30, redness_resolved=True))
        assert course(w, 'p-411')['crown']['status'] == 'eligible'
        select_and_arm(w, spath, 'crown')
        w.end_session(spath, '')
        # A clear patch: not treated again until a newer follow-up finds pigment.
        seed_treated(db, 'p-412', 'crown', 50)
        w.manager().RecordFollowUp('p-412', 'crown', findings(pigment_remaining_pct=0))
        assert course(w, 'p-412')['crown']['status'] == 'clear'
        spath = w.u().StartSession('p-412')
        expect_error('PatchClear', w.session(spath).SelectPatch, 'crown')
        w.manager().RecordFollowUp('p-412', 'crown', findings(pigment_remaining_pct=10))
        select_and_arm(w, spath, 'crown')
        w.end_session(spath, '')
        # A hold: until an authorized review; the other adverse events hold nothing.
        w.manager().RecordFollowUp('P-413', 'crown', findings(
            adverse=['other', 'follicle-damage'], note='two follicles affected'))
        w.manager().RecordFollowUp('p-413', 'occipital', findings(adverse=['hypopigmentation']))
        ok, when, why = w.manager().CheckPatch('p-413', 'crown')
        assert not ok and when == 0 and 'follicle-damage' in why and 'other' not in why, why
        assert w.manager().CheckPatch('p-413', 'occipital')[0], 'hypopigmentation held'
        c = course(w, 'p-413')['crown']
        assert c['status'] == 'on-hold' and list(c['hold_reasons']) == ['follicle-damage'], c
        fu = c['follow_ups'][-1]
        assert sorted(fu['adverse']) == ['follicle-damage', 'other'], fu
        assert list(fu['holding']) == ['follicle-damage'], fu
        spath = w.u().StartSession('p-413')
        expect_error('PatchOnHold', w.session(spath).SelectPatch, 'crown',
                     contains=('on hold since', 'follicle-damage'))
        expect_error('InvalidArgument', w.manager().ClearPatchHold, 'p-413', 'occipital', '',
                     contains=('not on hold',))
        w.manager().ClearPatchHold('p-413', 'crown', 'dermatologist: regrowth')
        select_and_arm(w, spath, 'crown')
        w.end_session(spath, '')
        c = course(w, 'p-413')['crown']
        assert len(c['reviews']) == 1 and c['reviews'][0]['note'] == 'dermatologist: regrowth'
        w.manager().RecordFollowUp('p-413', 'crown', findings(adverse=['scarring']))
        assert course(w, 'p-413')['crown']['status'] == 'on-hold'   # held again
        w.wait_shipped()
        assert w.recorded_shots() == w.fired_shots()    # p-410's, and only p-410's
        assert pg().rows("SELECT DISTINCT patient FROM smplaser.treatments WHERE"
                         " pulses_recorded > 0 AND workstation = 'ws1'", db) == [['p-410']]
        audit = [r[0] for r in pg().rows(
            "SELECT kind FROM smplaser.audit WHERE kind IN ('endpoint', 'follow-up', 'hold',"
            " 'review') ORDER BY id", db)]
        assert audit == ['endpoint'] + ['follow-up'] * 5 + ['hold', 'follow-up', 'review',
                                                             'follow-up', 'hold'], audit


@test
def test_clinical_records_are_never_deleted_or_changed():
    """The clinical tables refuse DELETE, TRUNCATE and UPDATE to everyone (triggers), and the
    daemon's role has no DELETE or TRUNCATE on them; the schema refuses a wrong holds, an
    unknown kind and a percentage above 100."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-420', 'crown')
        w.manager().RecordFollowUp('p-420', 'crown', findings(
            pigment_remaining_pct=50, adverse=['blistering'], note='n'))
        w.manager().ClearPatchHold('p-420', 'crown', 'reviewed')
        w.wait_shipped()
        changes = {'endpoints': "note = 'x'", 'follow_ups': 'pigment_remaining_pct = 0',
                   'adverse_events': "kind = 'other', holds = false",
                   'hold_reviews': "note = 'x'"}
        for table, change in changes.items():
            assert pg().value('SELECT count(*) FROM smplaser.%s' % table, db) == '1', table
            for sql, says in (('DELETE FROM smplaser.%s' % table, 'never deleted'),
                              ('TRUNCATE smplaser.%s CASCADE' % table, 'never deleted'),
                              ('UPDATE smplaser.%s SET %s' % (table, change), 'never changed')):
                p = pg().psql(sql, db=db, check=False)
                assert p.returncode != 0 and says in p.stderr, (sql, p.stderr)
            for right in ('DELETE', 'TRUNCATE'):
                assert pg().value("SELECT has_table_privilege('smpl_ws', 'smplaser.%s', '%s')"
                                  % (table, right), db) == 'f', (table, right)
        fid = pg().value('SELECT id FROM smplaser.follow_ups', db)
        for sql in ("INSERT INTO smplaser.adverse_events (follow_up_id, kind, holds)"
                    " VALUES (%s, 'scarring', false)" % fid,
                    "INSERT INTO smplaser.adverse_events (follow_up_id, kind, holds)"
                    " VALUES (%s, 'sunburn', false)" % fid,
                    "INSERT INTO smplaser.follow_ups (workstation, patient, patch, time_ms,"
                    " pigment_remaining_pct, operator_uid, operator_name)"
                    " VALUES ('ws1', 'p', 'crown', 1, 101, 0, 'x')"):
            p = pg().psql(sql, db=db, check=False)
            assert p.returncode != 0 and 'violates check constraint' in p.stderr, (sql, p.stderr)


@test
def test_two_workstations_share_the_clinical_record():
    """The clinical record is the clinic's: a hold recorded on one workstation refuses the
    other's SelectPatch and, recorded between its SelectPatch and Arm, its arming (decided
    inside the arming transaction on the server); the review on one lets the other arm; a
    follow-up on one lets the other treat a patch past its cooldown; an endpoint is
    recorded once."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b:
        a.start(wait=False)
        b.start(wait=False)
        wait_until(a._running, 20, 'ws1 to run')
        wait_until(b._running, 20, 'ws2 to run')
        # A hold on A, recorded after B selected the patch: B's Arm is refused.
        spath_b = b.ready('p-430', 'crown')
        a.manager().RecordFollowUp('p-430', 'crown', findings(adverse=['scarring']))
        expect_error('PatchOnHold', b.u().Arm, contains=('scarring',))
        assert b.state() == 'standby' and not b.fired_shots()
        ok, _, why = b.manager().CheckPatch('p-430', 'crown')
        assert not ok and 'scarring' in why, why
        assert course(b, 'p-430')['crown']['status'] == 'on-hold'
        # A's review clears it for B.
        a.manager().ClearPatchHold('p-430', 'crown', 'reviewed on ws1')
        b.u().Arm()
        b.wait_state('ready')
        b.fire(0.4)
        b.u().Disarm()
        b.wait_state('standby')
        b.session(spath_b).RecordEndpoint('crown', 'whitening', '')
        b.end_session(spath_b, 'done')
        b.wait_shipped()
        assert course(a, 'p-430')['crown']['status'] == 'cooling-down'
        # A follow-up on A lets B treat a patch past its cooldown, and not before.
        seed_treated(db, 'p-431', 'crown', 50)
        spath = b.u().StartSession('p-431')
        expect_error('FollowUpRequired', b.session(spath).SelectPatch, 'crown')
        a.manager().RecordFollowUp('p-431', 'crown', findings(pigment_remaining_pct=25))
        select_and_arm(b, spath, 'crown')
        b.end_session(spath, '')
        # A clear finding on A, recorded after B selected: B's arming is refused.
        seed_treated(db, 'p-432', 'crown', 50)
        a.manager().RecordFollowUp('p-432', 'crown', findings(pigment_remaining_pct=60))
        spath = b.ready('p-432', 'crown')
        a.manager().RecordFollowUp('p-432', 'crown', findings(pigment_remaining_pct=0))
        expect_error('PatchClear', b.u().Arm)
        b.end_session(spath, '')
        assert pg().value("SELECT count(*) FROM smplaser.treatments WHERE patient IN"
                          " ('p-430', 'p-431', 'p-432') AND workstation = 'ws2'", db) == '2'
        assert pg().value('SELECT count(*) FROM smplaser.endpoints', db) == '1'


@test
def test_clinical_writes_while_the_server_is_away():
    """With the server away, an endpoint is journaled (it is this session's own account,
    in order with its pulses and end; the session can end), and arrives once when the
    server is back; a follow-up and a review are refused (RecordsUnavailable: other
    workstations decide on them, and a review reads the clinic's holds), as is Course."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.manager().RecordFollowUp('p-440', 'occipital', findings(adverse=['infection']))
        spath = w.ready('p-440', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.fire(0.5)
        pg().stop()
        try:
            w.fire(0.3)
            w.u().Disarm()
            w.wait_state('standby')
            w.session(spath).RecordEndpoint('crown', 'no-whitening', 'server away')
            w.end_session(spath, 'done')
            expect_error('RecordsUnavailable', w.manager().RecordFollowUp, 'p-440', 'crown',
                         findings(pigment_remaining_pct=20))
            expect_error('RecordsUnavailable', w.manager().ClearPatchHold, 'p-440',
                         'occipital', 'reviewed')
            expect_error('RecordsUnavailable', w.manager().Course, 'p-440')
            pump(0.3)
            assert w.journal_waiting() > 0
        finally:
            pg().start()
        w.wait_shipped()
        rows = pg().rows("SELECT patch, endpoint, note, treatment_id FROM smplaser.endpoints",
                         db)
        t = treatments(db, "patient = 'p-440'")
        assert rows == [['crown', 'no-whitening', 'server away', t[0][0]]], (rows, t)
        assert t[0][5] == 'completed', t
        assert pg().value("SELECT state FROM smplaser.sessions WHERE patient = 'p-440'",
                          db) == 'ended'
        assert pg().value('SELECT count(*) FROM smplaser.follow_ups', db) == '1'
        assert pg().value('SELECT count(*) FROM smplaser.hold_reviews', db) == '0'
        assert course(w, 'p-440')['occipital']['status'] == 'on-hold'
        w.manager().ClearPatchHold('p-440', 'occipital', 'reviewed')
        assert course(w, 'p-440')['occipital']['status'] == 'untreated'


# --- import --------------------------------------------------------------------------

@test
def test_import_sqlite_records_twice():
    """A workstation's SQLite records imported into the clinic's, twice: the second run adds
    nothing.  Conflicts are reported (exit 3, a line each, an audit record once), never
    merged: a unit's shot already in the clinic's records for another treatment of the
    same counter epoch (both rows kept, as a reused shot number is), and a
    treatment inside another workstation's cooldown of the same patch (imported, marked,
    so the rules still count it: the patch stays refused).  The clinical record comes along
    (issue 16): endpoints with their treatments, a follow-up with its adverse event, whose
    hold then holds the patch on the clinic's records too, until a review there."""
    import subprocess
    db = pg().new_database()
    # The clinic: ws2 treated p-900's crown an hour ago.
    with Workstation(db, 'ws2') as b:
        b.start()
        b.treat('p-900', 'crown', seconds=0.3)
    # ws1's own records (SQLite): p-900's crown too, and p-901's occipital.
    import shutil
    import tempfile
    keep = tempfile.mkdtemp(prefix='smpl-import-')
    state = os.path.join(keep, 'state')
    with Env() as a:
        a.start()
        a.treat('p-900', 'crown', seconds=0.4)
        a.treat('p-901', 'occipital', seconds=0.4)
        # The clinical record (issue 16): endpoints (treat() records them) and a hold.
        a.manager().RecordFollowUp('p-901', 'occipital', dbus.Dictionary(
            {'adverse': dbus.Array(['blistering'], signature='s')}, signature='sv'))
        a.settle_records()
        local_shots = a.recorded_shots()
        a.daemon.terminate()
        assert a.daemon.wait(10) == 0
        shutil.copytree(a.state_dir, state)
    assert local_shots, local_shots
    # A clash of the shot numbers of ws1's unit (SIM00001): its shot 1 is already in the
    # clinic's records, for another treatment.
    pg().psql("INSERT INTO smplaser.units VALUES ('SIM00001', 'x', 'x', 0, 0, 'ws9');"
              "INSERT INTO smplaser.sessions (workstation, patient, unit_serial, operator_uid,"
              " operator_name, start_ms) VALUES ('ws9', 'p-999', 'SIM00001', 0, 'x', 0);"
              "INSERT INTO smplaser.treatments (session_id, workstation, patient, patch,"
              " unit_serial, unit_firmware, operator_uid, operator_name, wavelength_nm,"
              " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
              " armed_rtc_s, shot_at_arm, cooldown_ms, outcome, end_ms, pulse_count)"
              " SELECT max(id), 'ws9', 'p-999', 'crown', 'SIM00001', 'x', 0, 'x', 1064, 3000,"
              " 3000, 10000, 5000, 1, 1000, 0, 0, 3628800000, 'completed', 2000, 1"
              " FROM smplaser.sessions WHERE patient = 'p-999';"
              "INSERT INTO smplaser.pulses (treatment_id, unit_serial, host_ms, shot,"
              " measured_uj, set_uj) SELECT id, 'SIM00001', 1500, %d, 1, 1"
              " FROM smplaser.treatments WHERE patient = 'p-999'" % local_shots[0], db=db)
    conf = os.path.join(keep, 'import.conf')
    with open(conf, 'w') as f:
        f.write(config(db, 'ws1'))

    def run():
        return subprocess.run([harness.DAEMON, '--config', conf, '--state-dir', state,
                               '--import-records'], capture_output=True, text=True, timeout=120)
    before = pg().rows('SELECT (SELECT count(*) FROM smplaser.treatments),'
                       ' (SELECT count(*) FROM smplaser.pulses),'
                       ' (SELECT count(*) FROM smplaser.audit)', db)[0]
    try:
        p1 = run()
        for line in p1.stdout.splitlines():
            print('# import: ' + line)
        assert p1.returncode == 3, (p1.returncode, p1.stdout, p1.stderr)
        assert p1.stdout.count('conflict:') == 2, p1.stdout
        assert 'shot %d' % local_shots[0] in p1.stdout and 'cooldown' in p1.stdout, p1.stdout
        assert ' 2 treatments' in p1.stdout, p1.stdout
        # The clinical record: 2 endpoints, a follow-up and its adverse event; the hold named.
        assert ' 4 clinical records' in p1.stdout, p1.stdout
        assert "hold: patient p-901's occipital is on hold" in p1.stdout, p1.stdout
        e = pg().rows("SELECT e.patient, e.patch, t.origin_id IS NOT NULL, t.patch = e.patch,"
                      " e.session_id = t.session_id FROM smplaser.endpoints e"
                      " JOIN smplaser.treatments t ON t.id = e.treatment_id"
                      " WHERE e.origin = 'sqlite:ws1' ORDER BY e.id", db)
        assert e == [['p-900', 'crown', 't', 't', 't'], ['p-901', 'occipital', 't', 't', 't']], e
        assert pg().rows("SELECT f.patient, a.kind, a.holds FROM smplaser.follow_ups f JOIN"
                         " smplaser.adverse_events a ON a.follow_up_id = f.id", db) == \
            [['p-901', 'blistering', 't']]
        after1 = pg().rows('SELECT (SELECT count(*) FROM smplaser.treatments),'
                           ' (SELECT count(*) FROM smplaser.pulses),'
                           ' (SELECT count(*) FROM smplaser.audit)', db)[0]
        assert int(after1[0]) == int(before[0]) + 2, (before, after1)
        assert int(after1[1]) == int(before[1]) + len(local_shots), (before, after1)
        t = pg().rows("SELECT workstation, import_conflict, pulses_recorded FROM"
                      " smplaser.treatments WHERE origin = 'sqlite:ws1' ORDER BY id", db)
        assert [r[:2] for r in t] == [['ws1', 't'], ['ws1', 'f']], t
        n_conf = pg().value("SELECT count(*) FROM smplaser.audit WHERE reason ="
                            " 'import-conflict'", db)
        assert n_conf == '2', n_conf
        p2 = run()
        assert p2.returncode == 3 and p2.stdout.count('(known)') == 2, p2.stdout
        assert '0 units, 0 sessions, 0 treatments, 0 pulses, 0 clinical records, 0 audit' \
            ' records' in p2.stdout, p2.stdout
        after2 = pg().rows('SELECT (SELECT count(*) FROM smplaser.treatments),'
                           ' (SELECT count(*) FROM smplaser.pulses),'
                           ' (SELECT count(*) FROM smplaser.audit)', db)[0]
        assert after2 == after1, (after1, after2)
        # The imported treatments count: p-901's occipital is refused on the clinic's records.
        with Workstation(db, 'ws3') as c:
            c.start()
            eligible, _, reason = c.manager().CheckPatch('p-901', 'occipital')
            assert not eligible and 'blistering' in reason, reason     # the imported hold
            c.manager().ClearPatchHold('p-901', 'occipital', 'reviewed at the clinic')
            eligible, _, reason = c.manager().CheckPatch('p-901', 'occipital')
            assert not eligible and 'blistering' not in reason, reason  # the cooldown
            assert course(c, 'p-900')['crown']['endpoints'], 'the endpoint came along'
            assert pg().value('SELECT count(*) FROM smplaser.follow_ups', db) == '1'

            h = c.history('p-900')
            assert sorted(x['workstation'] for x in h) == ['ws1', 'ws2'], h
    finally:
        shutil.rmtree(keep, ignore_errors=True)


# --- the unit's counter: epochs (issue 11, holes 101-105 on the clinic's records) --------

def _nv_path(w):
    return os.path.join(w.state_dir, 'sim-%s.nv' % w.serial)


def _set_nv_counter(w, count):
    with open(_nv_path(w)) as f:
        nv = dict(kv.split('=') for kv in f.read().split())
    with open(_nv_path(w), 'w') as f:
        f.write('shot_count=%d rtc_offset_s=%s\n' % (count, nv['rtc_offset_s']))


def _reset_counter_to(w, counter, patient, patch):
    """The unit's counter set back to @counter while plugged in; the next Arm is refused
    (counter-went-back) and an authorized user accepts the counter (AcknowledgeFault): a
    new epoch.  Returns the ready session (patient, patch) whose Arm was refused."""
    w.simu().SetShotCounter(dbus.UInt32(counter))
    spath = w.ready(patient, patch)
    expect_error('DeviceFault', w.u().Arm, contains=('counter-went-back',))
    w.u().AcknowledgeFault()
    assert w.unit_prop('LatchedFault', w.upath) == ''
    return spath


def _arm_fire_end(w, spath, seconds):
    w.u().Arm()
    w.wait_state('ready')
    w.fire(seconds)
    w.u().Disarm()
    w.wait_state('standby')
    w.end_session(spath, 'done')


@test
def test_shot_number_repeated_after_a_reset_keeps_its_row():
    """Hole 101 on the clinic's records: after an accepted counter reset the unit fires
    shot numbers it fired before.  Each pulse keeps its row (its measured energy) in its
    own treatment, each treatment counts its own, no shot-number-reused audit, and each
    treatment records the counter epoch it was armed in (0, then 1)."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-700', 'crown', seconds=0.6)
        first = w.fired(w.serial)
        assert first, 'nothing fired'
        spath = _reset_counter_to(w, 0, 'p-701', 'crown')
        _arm_fire_end(w, spath, 0.6)
        w.wait_shipped()
        fired = w.fired(w.serial)
        second = fired[len(first):]
        assert second and set(f['shot'] for f in second) & set(f['shot'] for f in first), \
            (first, second)
        rows = pg().rows("SELECT t.patient, p.shot, p.measured_uj FROM smplaser.pulses p"
                         " JOIN smplaser.treatments t ON t.id = p.treatment_id"
                         " WHERE p.unit_serial = '%s' ORDER BY p.id" % w.serial, db)
        want = [['p-700', str(f['shot']), str(f['measured_uj'])] for f in first] + \
               [['p-701', str(f['shot']), str(f['measured_uj'])] for f in second]
        assert rows == want, (rows, want)
        t = pg().rows("SELECT patient, counter_epoch, outcome, pulse_count, pulses_recorded"
                      " FROM smplaser.treatments ORDER BY id", db)
        assert t == [['p-700', '0', 'completed', str(len(first)), str(len(first))],
                     ['p-701', '1', 'completed', str(len(second)), str(len(second))]], t
        assert pg().value("SELECT count(*) FROM smplaser.audit"
                          " WHERE reason = 'shot-number-reused'", db) == '0'


@test
def test_counter_reset_never_settles_an_earlier_treatment():
    """Hole 103 on the clinic's records: the daemon dies while armed, its pulses shipped;
    the unit comes back with its counter where it was at arming (not believed: the unit
    faults counter-went-back).  The reset accepted, no counter of the new epoch settles
    the earlier treatment: it stays unknown (pulse count unknown, its rows counted), not
    reconciled to 0 pulses by the next arming; the patch stays refused."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        spath = w.ready('p-710', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        at_arm = int(w.unit_prop('ShotCount', w.upath))
        w.simu().SetFootswitch(True)
        pump(0.6)
        w.simu().SetFootswitch(False)
        pump(0.2)
        fired = w.fired(w.serial)
        assert fired, 'nothing fired'
        w.wait_shipped()
        wait_until(lambda: pg().value("SELECT pulses_recorded FROM smplaser.treatments"
                                      " WHERE patient = 'p-710'", db) == str(len(fired)),
                   10, 'the pulses in the clinic\'s records')
        w.kill(signal.SIGKILL)
        _set_nv_counter(w, at_arm)
        w.start()
        wait_until(lambda: w.unit_prop('LatchedFault', w.upath) == 'counter-went-back', 10,
                   'the unit faulted for its counter')
        spath = w.ready('p-711', 'occipital')
        expect_error('DeviceFault', w.u().Arm, contains=('counter',))
        w.u().AcknowledgeFault()
        _arm_fire_end(w, spath, 0.4)
        w.wait_shipped()
        t = pg().rows("SELECT patient, outcome, coalesce(pulse_count::text, 'null'),"
                      " pulses_recorded FROM smplaser.treatments ORDER BY id", db)
        assert t[0] == ['p-710', 'unknown', 'null', str(len(fired))], t
        assert t[1][:2] == ['p-711', 'completed'], t
        assert pg().rows('SELECT counter_epoch FROM smplaser.treatments ORDER BY id', db) == \
            [['0'], ['1']]
        assert pg().value("SELECT count(*) FROM smplaser.audit"
                          " WHERE reason = 'counter-went-back'", db) != '0'
        assert not w.manager().CheckPatch('p-710', 'crown')[0]
        # Nothing of the earlier epoch waits for this unit's counter any more.
        w.kill(signal.SIGTERM)
        w.start()
        pump(1.0)
        assert pg().rows("SELECT outcome, coalesce(pulse_count::text, 'null')"
                         " FROM smplaser.treatments WHERE patient = 'p-710'", db) == \
            [['unknown', 'null']]


@test
def test_counter_back_again_after_a_reset_is_not_believed():
    """A second counter-back after an accepted reset, on the clinic's records: the high
    water is the new epoch's (its pulses), not the earlier epoch's that the reset
    accepted: a counter below the new epoch's shots is refused at the next Arm."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-720', 'crown', seconds=1.2)
        first = len(w.fired(w.serial))
        spath = _reset_counter_to(w, 0, 'p-721', 'crown')
        _arm_fire_end(w, spath, 0.4)
        second = len(w.fired(w.serial)) - first
        assert 0 < second < first, (first, second)
        w.wait_shipped()
        w.simu().SetShotCounter(dbus.UInt32(0))
        w.ready('p-722', 'occipital')
        expect_error('DeviceFault', w.u().Arm, contains=('counter-went-back',))
        assert w.unit_prop('LatchedFault', w.upath) == 'counter-went-back'
        assert not treatments(db, "patient = 'p-722'")


@test
def test_version_1_records_migrate_to_the_epochs():
    """A clinic's database of schema version 1 (pulses unique per unit and shot, no
    epochs) is migrated at the daemon's start, every row kept: version 2, each
    treatment's counter epoch from the resets of its unit accepted before its arming,
    the pulses with their ids, the epoch never changed afterwards."""
    import subprocess
    db = pg().new_database()
    sql = subprocess.run([harness.DAEMON, '--print-schema=smpl_ws'], capture_output=True,
                         text=True, check=True).stdout
    assert '-- schema step 2' in sql, sql[:300]
    v1 = sql.split('-- schema step 2')[0] + '\nCOMMIT;\n'
    pg().psql_file(v1, db=db, user='smpl_ws')
    assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '1'
    pg().psql("INSERT INTO smplaser.units VALUES ('U1', 'x', 'x', 0, 0, 'ws1');"
              "INSERT INTO smplaser.sessions (workstation, patient, unit_serial, operator_uid,"
              " operator_name, start_ms, state, end_ms) VALUES"
              " ('ws1', 'p-730', 'U1', 0, 'x', 1000, 'ended', 90000);"
              "INSERT INTO smplaser.treatments (session_id, workstation, patient, patch,"
              " unit_serial, unit_firmware, operator_uid, operator_name, wavelength_nm,"
              " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
              " armed_rtc_s, shot_at_arm, cooldown_ms, outcome, end_ms, shot_at_end,"
              " pulse_count, pulses_recorded)"
              " SELECT max(id), 'ws1', 'p-730', v.patch, 'U1', 'x', 0, 'x', 1064, 3000,"
              " 3000, 10000, 5000, 1, v.armed, 0, v.at_arm, 3628800000, 'completed',"
              " v.armed + 1000, v.at_arm + 2, 2, 2 FROM smplaser.sessions,"
              " (VALUES ('crown', 2000, 0), ('occipital', 6000, 10)) AS v(patch, armed, at_arm)"
              " GROUP BY v.patch, v.armed, v.at_arm ORDER BY v.armed;"
              "INSERT INTO smplaser.pulses (treatment_id, unit_serial, host_ms, shot,"
              " measured_uj, set_uj) SELECT id, 'U1', armed_ms + s, shot_at_arm + s, 1, 1"
              " FROM smplaser.treatments, generate_series(1, 2) AS s ORDER BY id, s;"
              "INSERT INTO smplaser.counter_resets (unit_serial, high_water, counter, time_ms,"
              " workstation, operator_uid, operator_name) VALUES ('U1', 2, 0, 4000, 'ws1', 0,"
              " 'x')", db=db)
    pulses = pg().rows('SELECT id, treatment_id, shot FROM smplaser.pulses ORDER BY id', db)
    assert len(pulses) == 4, pulses
    with Workstation(db, 'ws1') as w, Workstation(db, 'ws2') as w2:
        # Two workstations start together: each step runs once (the second waits
        # for the first's lock on smplaser.meta, then finds the new version).
        w.start(wait=False)
        w2.start(wait=False)
        wait_until(lambda: w._running() and w2._running(), 20, 'both daemons to run')
        assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '3'
        assert pg().rows('SELECT patch, counter_epoch FROM smplaser.treatments ORDER BY id',
                         db) == [['crown', '0'], ['occipital', '1']]
        # Step 3's tables, made by the daemon's role: its DELETE and TRUNCATE go as well.
        for table in ('endpoints', 'follow_ups', 'adverse_events', 'hold_reviews'):
            for right in ('DELETE', 'TRUNCATE'):
                assert pg().value("SELECT has_table_privilege('smpl_ws', 'smplaser.%s', '%s')"
                                  % (table, right), db) == 'f', (table, right)
        assert pg().rows('SELECT id, treatment_id, shot FROM smplaser.pulses ORDER BY id',
                         db) == pulses
        p = pg().psql('UPDATE smplaser.treatments SET counter_epoch = 5', db=db, check=False)
        assert p.returncode != 0 and 'never changed' in p.stderr, p.stderr
        # A shot number of the earlier epoch fired again: its own row (pulses per treatment).
        pg().psql("INSERT INTO smplaser.pulses (treatment_id, unit_serial, host_ms, shot,"
                  " measured_uj, set_uj) SELECT id, 'U1', 7500, 1, 1, 1 FROM"
                  " smplaser.treatments WHERE patch = 'occipital'", db=db)
        w.treat('p-731', 'crown', seconds=0.3)
        w.wait_shipped()
        assert treatments(db, "patient = 'p-731'")[0][5] == 'completed'
    with Workstation(db, 'ws3') as w:       # a later start: nothing to migrate
        w.start()
        assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '3'


@test
def test_schema_of_an_administrator_is_not_migrated_by_the_daemon():
    """A schema of version 1 that an administrator made (the daemon's role only granted
    what --print-schema prints) cannot be migrated by the daemon's role: the start is
    refused saying which steps of --print-schema to run as the owner; once the owner ran
    them, the daemon starts and treats."""
    import subprocess
    db = pg().new_database(owner='postgres', create_role=False)
    pg().psql("DO $$BEGIN CREATE ROLE smpl_granted LOGIN; EXCEPTION WHEN duplicate_object"
              " THEN NULL; END$$")
    sql = subprocess.run([harness.DAEMON, '--print-schema=smpl_granted'], capture_output=True,
                         text=True, check=True).stdout
    head, rest = sql.split('-- schema step 2')
    step2, grants = rest.split('-- the daemon\'s role')
    # The grants of version 1's time: none yet on step 3's tables.
    import re
    grants_v1 = re.sub(r'GRANT INSERT ON smplaser\.endpoints[^;]*;\n', '', grants)
    assert grants_v1 != grants
    pg().psql_file(head + grants_v1, db=db)
    assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '1'
    with Workstation(db, 'ws1', user='smpl_granted') as w:
        rc, out = w.run_to_exit()
        assert rc != 0 and 'may not migrate' in out and 'schema step' in out, out
        assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '1'
        pg().psql_file('BEGIN;\n-- schema step 2' + step2 + 'COMMIT;\n', db=db)
        # Step 3's tables are new: without the role's section again, it may not write them.
        assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '3'
        rc, out = w.run_to_exit()
        assert rc != 0 and 'not write' in out and 'print-schema' in out, out
        pg().psql_file('BEGIN;\n-- the daemon\'s role' + grants, db=db)
        w.start()
        assert pg().value('SELECT schema_version FROM smplaser.meta', db) == '3'
        w.treat('p-735', 'crown', seconds=0.3)
        w.wait_shipped()
        assert treatments(db, "patient = 'p-735'")[0][5] == 'completed'


@test
def test_counter_reset_ends_an_open_treatment_unknown():
    """A treatment still open in the clinic's records when a counter reset is accepted
    (made by hand here: the daemon ends it unknown through its journal first) was armed
    on the counter left behind: the reset's transaction ends it unknown (RECONCILE
    counter-reset), so the unit is not blocked and no counter of the new epoch settles
    it."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-780', 'crown', seconds=0.6)
        fired = w.fired(w.serial)
        w.wait_shipped()
        w.simu().SetShotCounter(dbus.UInt32(0))
        spath = w.ready('p-781', 'occipital')
        expect_error('DeviceFault', w.u().Arm, contains=('counter-went-back',))
        pg().psql("SET session_replication_role = replica;"
                  " UPDATE smplaser.treatments SET outcome = 'open', end_ms = NULL,"
                  " shot_at_end = NULL, pulse_count = NULL WHERE patient = 'p-780'", db=db)
        w.u().AcknowledgeFault()
        _arm_fire_end(w, spath, 0.3)
        w.wait_shipped()
        t = pg().rows("SELECT outcome, coalesce(pulse_count::text, 'null'), pulses_recorded"
                      " FROM smplaser.treatments WHERE patient = 'p-780'", db)
        assert t == [['unknown', 'null', str(len(fired))]], t
        assert pg().value("SELECT count(*) FROM smplaser.audit WHERE kind = 'reconcile'"
                          " AND reason = 'counter-reset'", db) == '1'
        assert treatments(db, "patient = 'p-781'")[0][5] == 'completed'


@test
def test_import_carries_the_counter_epochs():
    """A workstation's SQLite records whose unit's counter was reset (an accepted
    counter-went-back, shot numbers fired again) are imported whole: every pulse row in
    its own treatment, each treatment's counter epoch, no conflict."""
    import shutil
    import subprocess
    import tempfile
    db = pg().new_database()
    keep = tempfile.mkdtemp(prefix='smpl-import-')
    state = os.path.join(keep, 'state')
    try:
        with Env() as a:
            a.start()
            a.treat('p-740', 'crown', seconds=0.5)
            first = len(a.fired())
            a.sim().SetShotCounter(dbus.UInt32(0))
            spath = a.ready_session('p-741', 'crown')
            expect_error('DeviceFault', a.unit().Arm, contains=('counter-went-back',))
            a.unit().AcknowledgeFault()
            a.arm_to_ready()
            assert a.fire(0.5) > 0
            a.unit().Disarm()
            a.wait_unit_state('standby')
            a.end_session(spath)     # the endpoint first (issue 16)
            a.settle_records()
            fired = a.fired()
            local = a.query('SELECT t.patient, p.shot FROM pulses p JOIN treatments t'
                            ' ON t.id = p.treatment_id ORDER BY p.id')
            a.daemon.terminate()
            assert a.daemon.wait(10) == 0
            shutil.copytree(a.state_dir, state)
        assert len(local) == len(fired) > first, (local, fired, first)
        conf = os.path.join(keep, 'import.conf')
        with open(conf, 'w') as f:
            f.write(config(db, 'ws1'))
        p = subprocess.run([harness.DAEMON, '--config', conf, '--state-dir', state,
                            '--import-records'], capture_output=True, text=True, timeout=120)
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        assert 'conflict' not in p.stdout.replace('0 conflicts', ''), p.stdout
        rows = pg().rows('SELECT t.patient, p.shot FROM smplaser.pulses p'
                         ' JOIN smplaser.treatments t ON t.id = p.treatment_id ORDER BY p.id', db)
        assert rows == [[r['patient'], str(r['shot'])] for r in local], (rows, local)
        assert pg().rows('SELECT patient, counter_epoch, pulses_recorded FROM'
                         ' smplaser.treatments ORDER BY id', db) == \
            [['p-740', '0', str(first)], ['p-741', '1', str(len(fired) - first)]]
    finally:
        shutil.rmtree(keep, ignore_errors=True)


@test
def test_counter_jump_while_armed_counts_what_it_reported():
    """Hole 102 on the clinic's records: the unit's counter jumps forward while it is armed
    and emitting.  The unit faults counter-jumped; the treatment keeps the counter's end
    (shot_at_end) but counts the pulses the unit reported, each with its row, not the 150
    its counter claims (store_treatment_finish.count_reported, shipped in the journal)."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        spath = w.ready('p-750', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.simu().SetFootswitch(True)
        pump(0.45)
        shot = int(w.unit_prop('ShotCount', w.upath))
        w.simu().SetShotCounter(dbus.UInt32(shot + 150))
        pump(0.45)
        w.simu().SetFootswitch(False)
        wait_until(lambda: w.unit_prop('LatchedFault', w.upath) == 'counter-jumped', 5,
                   'the unit faulted counter-jumped')
        w.wait_state('standby')
        w.end_session(spath, 'done')
        w.wait_shipped()
        fired = w.fired(w.serial)
        t = pg().rows("SELECT outcome, pulse_count, pulses_recorded, shot_at_end"
                      " FROM smplaser.treatments WHERE patient = 'p-750'", db)
        assert len(t) == 1 and t[0][:3] == ['fault', str(len(fired)), str(len(fired))], \
            (t, fired)
        assert int(t[0][3]) >= shot + 150, t


@test
def test_leapt_counter_never_settles_a_treatment():
    """The daemon dies while armed (its pulses shipped); the unit comes back with its
    counter 5000 past its arming, more than the treatment could fire while armed (a leap
    while nobody watched).  The open treatment is settled from its recorded pulses, not
    from that counter (RECONCILE audit counter-jumped)."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.ready('p-760', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        at_arm = int(w.unit_prop('ShotCount', w.upath))
        w.simu().SetFootswitch(True)
        pump(0.5)
        w.simu().SetFootswitch(False)
        pump(0.2)
        fired = w.fired(w.serial)
        assert fired, 'nothing fired'
        w.wait_shipped()
        wait_until(lambda: pg().value("SELECT pulses_recorded FROM smplaser.treatments"
                                      " WHERE patient = 'p-760'", db) == str(len(fired)),
                   10, 'the pulses in the clinic\'s records')
        w.kill(signal.SIGKILL)
        _set_nv_counter(w, at_arm + 5000)
        w.start()
        wait_until(lambda: pg().value("SELECT outcome FROM smplaser.treatments"
                                      " WHERE patient = 'p-760'", db) != 'open', 10,
                   'the treatment settled')
        t = pg().rows("SELECT outcome, pulse_count, pulses_recorded FROM smplaser.treatments"
                      " WHERE patient = 'p-760'", db)
        assert t == [['reconciled', str(len(fired)), str(len(fired))]], (t, fired)
        assert pg().value("SELECT count(*) FROM smplaser.audit WHERE kind = 'reconcile'"
                          " AND reason = 'counter-jumped'", db) == '1'


@test
def test_counter_reset_settles_an_unread_end_from_the_pulses():
    """A treatment closed with its end counter unread (the daemon stopped before it read
    it), then the unit back with its counter set back, the reset accepted: the reset's
    transaction settles that end from the treatment's recorded pulses (RECONCILE
    counter-reset), since no counter of the new epoch may; not 0 pulses from the next
    arming's counter."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-770', 'crown', seconds=0.6)
        fired = w.fired(w.serial)
        assert fired, 'nothing fired'
        w.wait_shipped()
        w.kill(signal.SIGTERM)
        # Its end counter unread, as if the daemon had stopped before reading it.
        pg().psql("SET session_replication_role = replica;"
                  " UPDATE smplaser.treatments SET shot_at_end = NULL, pulse_count = NULL"
                  " WHERE patient = 'p-770'", db=db)
        _set_nv_counter(w, 0)
        w.start()
        wait_until(lambda: w.unit_prop('LatchedFault', w.upath) == 'counter-went-back', 10,
                   'the unit faulted for its counter')
        spath = w.ready('p-771', 'occipital')
        w.u().AcknowledgeFault()
        _arm_fire_end(w, spath, 0.3)
        w.wait_shipped()
        t = pg().rows("SELECT outcome, pulse_count, shot_at_end, pulses_recorded"
                      " FROM smplaser.treatments WHERE patient = 'p-770'", db)
        n = str(len(fired))
        assert t == [['completed', n, n, n]], (t, fired)
        assert pg().value("SELECT count(*) FROM smplaser.audit WHERE kind = 'reconcile'"
                          " AND reason = 'counter-reset'", db) == '1'


@test
def test_shot_number_reused_without_reset_keeps_its_row():
    """A shot number another treatment of the same unit and counter epoch holds (the unit
    reused it without an accepted reset; made by hand here, a treatment of the same unit
    recorded while it is armed): the pulse keeps its row in its own treatment and counts
    there, and the audit trail says so (shot-number-reused)."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        spath = w.ready('p-795', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        pg().psql("INSERT INTO smplaser.treatments (session_id, workstation, patient, patch,"
                  " unit_serial, unit_firmware, operator_uid, operator_name, wavelength_nm,"
                  " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
                  " armed_rtc_s, shot_at_arm, cooldown_ms, outcome, end_ms, shot_at_end,"
                  " pulse_count, pulses_recorded)"
                  " SELECT session_id, 'ws9', 'p-796', 'crown', unit_serial, 'x', 0, 'x', 1064,"
                  " 3000, 3000, 10000, 5000, 1, 1000, 0, 0, 3628800000, 'completed', 2000, 20,"
                  " 20, 20 FROM smplaser.treatments WHERE patient = 'p-795';"
                  "INSERT INTO smplaser.pulses (treatment_id, unit_serial, host_ms, shot,"
                  " measured_uj, set_uj) SELECT t.id, t.unit_serial, 1500, s, 1, 1"
                  " FROM smplaser.treatments t, generate_series(1, 20) s"
                  " WHERE t.patient = 'p-796'", db=db)
        w.fire(0.5)
        w.u().Disarm()
        w.wait_state('standby')
        w.end_session(spath, 'done')
        w.wait_shipped()
        fired = w.fired_shots()
        assert fired and max(fired) <= 20, fired
        rows = pg().rows("SELECT p.shot FROM smplaser.pulses p JOIN smplaser.treatments t"
                         " ON t.id = p.treatment_id WHERE t.patient = 'p-795' ORDER BY p.id", db)
        assert [int(r[0]) for r in rows] == fired, (rows, fired)
        t = pg().rows("SELECT outcome, pulse_count, pulses_recorded FROM smplaser.treatments"
                      " WHERE patient = 'p-795'", db)
        assert t == [['completed', str(len(fired)), str(len(fired))]], t
        assert pg().value("SELECT count(*) FROM smplaser.audit"
                          " WHERE reason = 'shot-number-reused'", db) == str(len(fired))



@test
def test_stuck_counter_keeps_the_second_measurement():
    """A unit whose shot counter sticks for one pulse (Simulator SetHostile
    stuck-counter; tests/attack/test_attack4.py on SQLite): two pulses with one shot
    number.  The second is not a second row (the shot is the key) but its measurement
    is in the clinic's audit trail (shot-number-repeated); the unit faults."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        spath = w.ready('p-797', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.simu().SetFootswitch(True)
        wait_until(lambda: len(w.fired(w.serial)) >= 2, 3, 'pulses')
        w.simu().SetHostile('stuck-counter', dbus.UInt32(1))
        wait_until(lambda: len(set(w.fired_shots())) < len(w.fired_shots()), 3,
                   'a pulse fired with the counter stuck')
        pump(0.5)
        w.simu().SetFootswitch(False)
        w.wait_shipped()
        fired = w.fired(w.serial)
        shots = [f['shot'] for f in fired]
        dup = [f for i, f in enumerate(fired) if i and shots[i] == shots[i - 1]]
        assert dup, shots
        assert w.recorded_shots() == sorted(set(shots)), (w.recorded_shots(), shots)
        detail = pg().value("SELECT string_agg(detail, ' | ') FROM smplaser.audit"
                            " WHERE reason = 'shot-number-repeated'", db) or ''
        assert 'shot %d (%d uJ measured' % (dup[0]['shot'], dup[0]['measured_uj']) in detail, (
            detail, fired)
        assert str(w.unit_prop('LatchedFault', w.upath)) == 'counter-went-back'
        w.u().AcknowledgeFault()
        w.end_session(spath, 'done')

# --- a counter ahead of the clinic's records at arming (records-missing) -------------

# The shots an unsettled treatment may own beyond its last recorded pulse
# (STORE_MISSING_WINDOW_S = 3 s at its rate, and 2): at GOOD_PARAMS' 5 Hz.
WINDOW = (int(GOOD_PARAMS['rate_mhz']) * 3 + 999) // 1000 + 2


def _as_a_crash_left_it(db, patient):
    """The treatment as a crash leaves it: ended unknown, its end counter unread."""
    pg().psql("SET session_replication_role = replica;"
              " UPDATE smplaser.treatments SET outcome = 'unknown', shot_at_end = NULL,"
              " pulse_count = NULL WHERE patient = '%s'" % patient, db=db)


@test
def test_counter_ahead_while_disarmed_is_refused_at_arming():
    """The unit's counter leaps while it is plugged in and disarmed (it fired with no host
    arming it; or the clinic's database was restored from an older backup): the next Arm
    is refused on the clinic's records as on SQLite, DeviceFault "records-missing: ...;
    not arming" (the store's -ENOLINK), the unit faults records-missing and fires nothing
    more, and nothing of that arming is in the records.  An authorized acknowledge accepts
    the counter (a new counter epoch, audited) and the unit arms from it."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-800', 'crown', seconds=0.6)
        fired = w.fired_shots()
        assert fired, 'nothing fired'
        w.wait_shipped()
        shot = int(w.unit_prop('ShotCount', w.upath))
        assert shot == max(fired), (shot, fired)
        spath = w.ready('p-801', 'occipital')
        w.simu().SetShotCounter(dbus.UInt32(shot + 500))
        pump(0.2)
        expect_error('DeviceFault', w.u().Arm,
                     contains=('records-missing: unit %s' % w.serial, 'at %d' % (shot + 500),
                               'shot %d' % shot, '500 shots', 'not arming'))
        assert w.unit_prop('LatchedFault', w.upath) == 'records-missing'
        assert w.state() == 'standby', w.state()
        pump(0.5)
        assert w.fired_shots() == fired, 'the unit fired after the refusal'
        assert int(w.unit_prop('ShotCount', w.upath)) == shot + 500
        assert not treatments(db, "patient = 'p-801'")
        w.u().AcknowledgeFault()
        assert w.unit_prop('LatchedFault', w.upath) == ''
        assert pg().rows("SELECT high_water, counter, workstation FROM smplaser.counter_resets",
                         db) == [[str(shot), str(shot + 500), 'ws1']]
        assert pg().value("SELECT count(*) FROM smplaser.audit WHERE reason ="
                          " 'records-missing'", db) != '0'
        _arm_fire_end(w, spath, 0.4)
        w.wait_shipped()
        t = pg().rows("SELECT outcome, counter_epoch, shot_at_arm FROM smplaser.treatments"
                      " WHERE patient = 'p-801'", db)
        assert t == [['completed', '1', str(shot + 500)]], t


def _treat_on(w, upath, patient, patch, seconds=0.4):
    """A whole treatment with pulses on the workstation's unit at @upath."""
    spath = w.ready_session_on(upath, patient, patch)
    w.unit(upath).Arm()
    w.wait_unit_state('ready', 6, upath)
    w.sim(upath).SetFootswitch(True)
    pump(seconds)
    w.sim(upath).SetFootswitch(False)
    pump(0.2)
    w.unit(upath).Disarm()
    w.wait_unit_state('standby', 5, upath)
    w.end_session(spath, 'done')


@test
def test_two_units_refused_each_acknowledge_accepts_its_own():
    """Two units of one workstation leap ahead of the clinic's records and both armings
    are refused records-missing.  Each unit's acknowledge accepts its own counter: the
    first unit arms after its acknowledge although the second was refused after it.
    (Before: the refused arming was remembered in one slot, the second's; the first
    unit's acknowledge accepted nothing, cleared its fault, and its next Arm was refused
    again.)"""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start(sim=2)
        units = [unit_path('ws1', n) for n in (1, 2)]
        sessions = []
        for n, (upath, serial) in enumerate(units):
            _treat_on(w, upath, 'p-84%d' % n, 'crown')
        w.wait_shipped()
        for n, (upath, serial) in enumerate(units):
            shot = int(w.unit_prop('ShotCount', upath))
            sessions.append(w.ready_session_on(upath, 'p-85%d' % n, 'occipital'))
            w.sim(upath).SetShotCounter(dbus.UInt32(shot + 300))
            pump(0.2)
            expect_error('DeviceFault', w.unit(upath).Arm,
                         contains=('records-missing: unit %s' % serial, 'not arming'))
            assert w.unit_prop('LatchedFault', upath) == 'records-missing'
        for n, (upath, serial) in enumerate(units):
            w.unit(upath).AcknowledgeFault()
            assert w.unit_prop('LatchedFault', upath) == ''
            w.unit(upath).Arm()
            w.wait_unit_state('ready', 6, upath)
            w.unit(upath).Disarm()
            w.wait_unit_state('standby', 5, upath)
            w.end_session(sessions[n], 'done')
        resets = pg().rows("SELECT unit_serial FROM smplaser.counter_resets ORDER BY id", db)
        assert resets == [[units[0][1]], [units[1][1]]], resets


@test
def test_unsettled_treatment_owns_its_window_at_arming():
    """A treatment ended unknown by a crash, its end counter unread, owns the shots the
    unit can fire before it stops by itself: the counter up to WINDOW shots beyond its
    last recorded pulse arms (no false records-missing); one more shot is refused."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-810', 'crown', seconds=0.6)
        fired = w.fired_shots()
        assert fired, 'nothing fired'
        w.wait_shipped()
        _as_a_crash_left_it(db, 'p-810')
        w.simu().SetShotCounter(dbus.UInt32(max(fired) + WINDOW))
        spath = w.ready('p-811', 'occipital')
        _arm_fire_end(w, spath, 0.4)
        w.wait_shipped()
        assert treatments(db, "patient = 'p-811'")[0][5] == 'completed'
        last = max(w.recorded_shots())
        assert last == max(w.fired_shots()), (w.recorded_shots(), w.fired_shots())
        _as_a_crash_left_it(db, 'p-811')
        w.simu().SetShotCounter(dbus.UInt32(last + WINDOW + 1))
        w.ready('p-812', 'mid-scalp')
        expect_error('DeviceFault', w.u().Arm, contains=('records-missing', 'not arming'))
        assert not treatments(db, "patient = 'p-812'")


@test
def test_unit_back_from_another_workstation_arms():
    """The unit was treated here, then on another workstation (its shots in the clinic's
    records under that workstation), then came back: its counter is ahead of this
    workstation's records of it, not of the clinic's; it arms."""
    db = pg().new_database()
    with Workstation(db, 'ws2') as b:
        b.start()
        b.treat('p-820', 'crown', seconds=0.6)
        b.wait_shipped()
        c1 = int(b.unit_prop('ShotCount', b.upath))
        c2 = c1 + 40
        pg().psql(
            "INSERT INTO smplaser.sessions (id, workstation, patient, unit_serial,"
            " operator_uid, operator_name, start_ms, end_ms, state)"
            " VALUES (900, 'ws1', 'p-821', '{u}', 0, 'x', 1000, 2000, 'ended');"
            "INSERT INTO smplaser.treatments (session_id, workstation, patient, patch,"
            " unit_serial, unit_firmware, operator_uid, operator_name, wavelength_nm,"
            " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
            " armed_rtc_s, shot_at_arm, cooldown_ms, outcome, end_ms, shot_at_end,"
            " pulse_count, pulses_recorded)"
            " VALUES (900, 'ws1', 'p-821', 'crown', '{u}', 'x', 0, 'x', 1064, 3000, 3000,"
            " 10000, 5000, 1, 1000, 0, {c1}, 3628800000, 'completed', 2000, {c2}, 40, 40);"
            "INSERT INTO smplaser.pulses (treatment_id, unit_serial, host_ms, shot,"
            " measured_uj, set_uj) SELECT t.id, t.unit_serial, 1500, s, 1, 1"
            " FROM smplaser.treatments t, generate_series({c1} + 1, {c2}) s"
            " WHERE t.patient = 'p-821'".format(u=b.serial, c1=c1, c2=c2), db=db)
        b.simu().SetShotCounter(dbus.UInt32(c2))
        spath = b.ready('p-822', 'occipital')
        _arm_fire_end(b, spath, 0.3)
        b.wait_shipped()
        t = pg().rows("SELECT outcome, shot_at_arm FROM smplaser.treatments"
                      " WHERE patient = 'p-822'", db)
        assert t == [['completed', str(c2)]], t


@test
def test_journal_waiting_is_no_records_missing():
    """The server stops while the unit fires: its pulses and its end wait in this
    workstation's journal, so the clinic's records end below the unit's counter.  An
    Arm meanwhile is RecordsUnavailable (not records-missing); once the server is back
    the next Arm ships the journal first and arms."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.ready('p-830', 'crown')
        w.u().Arm()
        w.wait_state('ready')
        w.fire(0.4)
        pg().stop()
        try:
            w.fire(1.2)
            w.u().Disarm()
            w.wait_state('standby')
            pump(0.5)
            assert w.journal_waiting() > 0
            expect_error('RecordsUnavailable', w.u().Arm)
            assert w.unit_prop('LatchedFault', w.upath) == ''
        finally:
            pg().start()
        # At once: the daemon tries the server again at most once a second.
        deadline = time.monotonic() + 10
        while True:
            try:
                w.u().Arm()
                break
            except dbus.DBusException as e:
                if not e.get_dbus_name().endswith('.RecordsUnavailable') or \
                        time.monotonic() > deadline:
                    raise
                pump(0.1)
        w.wait_state('ready')
        w.u().Disarm()
        w.wait_state('standby')
        assert w.unit_prop('LatchedFault', w.upath) == ''
        w.wait_shipped()
        fired = w.fired_shots()
        assert w.recorded_shots() == fired, (w.recorded_shots(), fired)


@test
def test_new_epoch_arms_from_the_accepted_counter():
    """After an accepted counter reset the bound is the new epoch's: the unit arms from
    the accepted counter, and a leap past the new epoch's records is refused."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as w:
        w.start()
        w.treat('p-840', 'crown', seconds=0.6)
        w.wait_shipped()
        spath = _reset_counter_to(w, 0, 'p-841', 'crown')
        _arm_fire_end(w, spath, 0.4)
        w.wait_shipped()
        shot = int(w.unit_prop('ShotCount', w.upath))
        w.simu().SetShotCounter(dbus.UInt32(shot + 100))
        w.ready('p-842', 'crown')
        expect_error('DeviceFault', w.u().Arm, contains=('records-missing', 'not arming'))
        assert not treatments(db, "patient = 'p-842'")


# --- the test's own server: never left behind ---------------------------------------

# --- races on the clinical rules: two or three workstations at once --------------------------
#
# Each race is made deterministic by a gate of the test's own: a trigger on one of the
# clinic's tables takes an advisory lock (shared) that a psql session of the test holds, so
# the daemon's transaction stops there, inside, with what it has read and locked so far; the
# test then starts the other workstation's call, waits until that call has either answered or
# is itself waiting for a lock (pg_locks), and only then opens the gate.

GATE_ADVERSE, GATE_TREATMENT, GATE_REVIEW, GATE_FOLLOW_UP = 7701, 7702, 7703, 7704


def install_gates(db):
    """The gates' triggers: an adverse event 'infection' or 'follicle-damage', every
    treatment, every review, and a follow-up whose note is 'gated' wait while their gate is
    closed (and pass at once when it is open)."""
    pg().psql("CREATE FUNCTION public.gate() RETURNS trigger LANGUAGE plpgsql AS"
              " $$BEGIN PERFORM pg_advisory_xact_lock_shared(TG_ARGV[0]::bigint);"
              " RETURN NEW; END$$;"
              " CREATE TRIGGER gate BEFORE INSERT ON smplaser.adverse_events FOR EACH ROW"
              " WHEN (NEW.kind IN ('infection', 'follicle-damage'))"
              " EXECUTE FUNCTION public.gate(%d);"
              " CREATE TRIGGER gate BEFORE INSERT ON smplaser.treatments FOR EACH ROW"
              " EXECUTE FUNCTION public.gate(%d);"
              " CREATE TRIGGER gate BEFORE INSERT ON smplaser.hold_reviews FOR EACH ROW"
              " EXECUTE FUNCTION public.gate(%d);"
              " CREATE TRIGGER gate BEFORE INSERT ON smplaser.follow_ups FOR EACH ROW"
              " WHEN (NEW.note = 'gated') EXECUTE FUNCTION public.gate(%d)"
              % (GATE_ADVERSE, GATE_TREATMENT, GATE_REVIEW, GATE_FOLLOW_UP), db=db)


class Gate:
    """Closed while it exists: a psql session holding advisory lock @key exclusively."""

    def __init__(self, db, key):
        import subprocess
        self.db, self.key = db, key
        self.p = subprocess.Popen(['psql', '-X', '-q', '-A', '-t', '-v', 'ON_ERROR_STOP=1',
                                   '-h', pg().socket_dir, '-U', 'postgres', '-d', db],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.p.stdin.write("SELECT pg_advisory_lock(%d); SELECT 'closed';\n" % key)
        self.p.stdin.flush()
        while True:
            line = self.p.stdout.readline()
            assert line, 'the gate could not be closed'
            if line.strip() == 'closed':
                break

    def open(self):
        if self.p:
            self.p.stdin.write('SELECT pg_advisory_unlock(%d);\n\\q\n' % self.key)
            self.p.stdin.close()
            self.p.wait(10)
            self.p.stdout.close()
            self.p = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.open()
        return False


def lock_waiters(db):
    """The backends of @db waiting for an advisory lock (a gate or a patch's lock)."""
    return int(pg().value("SELECT count(*) FROM pg_locks l JOIN pg_database d ON"
                          " d.oid = l.database WHERE l.locktype = 'advisory' AND NOT l.granted"
                          " AND d.datname = '%s'" % db, 'postgres'))


class Call:
    """A D-Bus call launched without waiting: .answer is 'ok' or the error's short name."""

    def __init__(self, method, *args):
        self.answer = None
        self.message = ''
        method(*args, reply_handler=self._ok, error_handler=self._err, timeout=60)

    def _ok(self, *reply):
        self.answer = 'ok'

    def _err(self, e):
        self.answer = e.get_dbus_name().split('.')[-1]
        self.message = e.get_dbus_message()


def in_flight(db, call, waiters, what):
    """Wait until @call has answered or @waiters backends wait for an advisory lock."""
    wait_until(lambda: call.answer is not None or lock_waiters(db) >= waiters, 20, what)


def answered(*calls):
    wait_until(lambda: all(c.answer is not None for c in calls), 30, 'the answers')
    return [c.answer for c in calls]


def treated_during_a_hold(db, patients="'%'"):
    """The clinic's records read as an auditor would: treatments of a patch armed after a
    holding adverse event of the patch was found, with no review between that clears it.
    Each (patient, treatment id, follow-up id)."""
    return pg().rows(
        "SELECT t.patient, t.id, f.id FROM smplaser.treatments t"
        " JOIN smplaser.follow_ups f ON f.patient_key = t.patient_key AND f.patch = t.patch"
        " JOIN smplaser.adverse_events a ON a.follow_up_id = f.id AND a.holds"
        " WHERE t.patient_key LIKE %s AND t.armed_ms > f.time_ms AND NOT EXISTS (SELECT 1 FROM smplaser.hold_reviews r"
        "  WHERE r.patient_key = f.patient_key AND r.patch = f.patch"
        "   AND r.cleared_through >= f.id AND r.time_ms <= t.armed_ms)"
        " ORDER BY t.id" % patients, db)


def fire_if_ready(w, seconds=0.3):
    """Press the footswitch whatever the daemon said: the unit's fired log is the truth."""
    w.fire(seconds)


@test
def test_race_hold_against_an_arming():
    """An adverse event that holds a patch, recorded on workstation A, against workstation
    B arming that patch, in both orders, forced by gates inside the transactions:
    - A's follow-up is inside its transaction (its events written, not committed) when B
      arms: B's arming waits for it and is refused (PatchOnHold); B's unit fires nothing;
    - B's arming is inside its transaction (its rules read, its treatment written, not
      committed) when A records the hold: A waits for it; B arms (it decided first), and
      the hold applies to B's next arming (refused) and to no pulse before;
    - A's hold answered before B calls Arm: refused;
    - without gates, both launched together (in turn the one first), ten times: whichever
      wins, B's next arming is refused.
    Judged by the units' fired logs and by the clinic's tables: no treatment armed after
    a holding event was found, unless a review cleared it first."""
    db = pg().new_database()
    rounds = max(1, int(os.environ.get('SMPL_PG_RACE_ROUNDS', '100')) // 10)
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b:
        a.start()
        b.start()
        install_gates(db)
        for i in range(2):
            # The hold in flight: B must wait for it and see it.
            patient = 'hold-a%d' % i
            sb = b.ready(patient, 'crown')
            n = len(b.fired_shots())
            with Gate(db, GATE_ADVERSE) as gate:
                fu = Call(a.manager().RecordFollowUp, patient, 'crown',
                          findings(adverse=['infection']))
                in_flight(db, fu, 1, "A's follow-up at the gate")
                assert fu.answer is None, fu.message
                arm = Call(b.u().Arm)
                in_flight(db, arm, 2, "B's arming waiting or answered")
                gate.open()
                assert answered(fu, arm) == ['ok', 'PatchOnHold'], (fu.answer, arm.answer,
                                                                   arm.message)
            assert 'infection' in arm.message, arm.message
            fire_if_ready(b)
            assert len(b.fired_shots()) == n, 'fired while on hold'
            b.end_session(sb, 'refused')
            # The arming in flight: A waits; B armed first; the hold is for the next arming.
            patient = 'hold-b%d' % i
            sb = b.ready(patient, 'crown')
            with Gate(db, GATE_TREATMENT) as gate:
                arm = Call(b.u().Arm)
                in_flight(db, arm, 1, "B's arming at the gate")
                assert arm.answer is None, arm.message
                fu = Call(a.manager().RecordFollowUp, patient, 'crown',
                          findings(adverse=['scarring']))
                in_flight(db, fu, 2, "A's follow-up waiting or answered")
                gate.open()
                assert answered(arm, fu) == ['ok', 'ok'], (arm.message, fu.message)
            b.wait_state('ready')
            before = len(b.fired_shots())
            fire_if_ready(b)
            assert len(b.fired_shots()) > before
            b.u().Disarm()
            b.wait_state('standby')
            expect_error('PatchOnHold', b.u().Arm, contains=('scarring',))
            n = len(b.fired_shots())
            fire_if_ready(b)
            assert len(b.fired_shots()) == n, 'fired while on hold'
            b.end_session(sb, 'done')
        # The hold answered first: refused.
        sb = b.ready('hold-c', 'crown')
        a.manager().RecordFollowUp('hold-c', 'crown', findings(adverse=['blistering']))
        expect_error('PatchOnHold', b.u().Arm, contains=('blistering',))
        b.end_session(sb, 'refused')
        # Free-running: both launched at once, no gate.
        outcomes = {}
        for i in range(rounds):
            patient = 'hold-r%02d' % i
            sb = b.ready(patient, 'crown')
            if i % 2:
                arm = Call(b.u().Arm)
            fu = Call(a.manager().RecordFollowUp, patient, 'crown',
                      findings(adverse=['hair-loss']))
            if not i % 2:
                arm = Call(b.u().Arm)
            res = tuple(answered(fu, arm))
            assert res in (('ok', 'ok'), ('ok', 'PatchOnHold')), (res, arm.message)
            outcomes[res[1]] = outcomes.get(res[1], 0) + 1
            if res[1] == 'ok':
                b.wait_state('ready')
                b.u().Disarm()
                b.wait_state('standby')
                expect_error('PatchOnHold', b.u().Arm)
            b.end_session(sb, '')
        b.wait_shipped()
        # The gated rounds' records (the free-running ones: see docs/reliability.md).
        bad = treated_during_a_hold(db, "'hold-_%'")
        assert not bad, 'treated during a hold: %s' % bad
        held = pg().value("SELECT count(DISTINCT patient_key) FROM smplaser.follow_ups", db)
        assert held == str(5 + rounds), held
        assert b.recorded_shots() == b.fired_shots()
        print('# free-running rounds: %s' % outcomes)


@test
def test_race_two_workstations_fire_one_patch():
    """Two workstations arm one patient's patch at once, both transactions stopped by a
    gate after reading the rules and writing their treatment: exactly one arms, the other
    is refused (CooldownActive); both technicians press the footswitch: exactly one unit
    fires (its fired log), and the clinic has exactly one treatment of the patch, with
    pulses.  Two rounds, each workstation first once."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b:
        a.start()
        b.start()
        install_gates(db)
        wins = {'ws1': 0, 'ws2': 0}
        for i in range(2):
            patient = 'twice-%d' % i
            sa, sb = a.ready(patient, 'crown'), b.ready(patient, 'crown')
            shots = {w.ws: len(w.fired_shots()) for w in (a, b)}
            with Gate(db, GATE_TREATMENT) as gate:
                first, second = (a, b) if i % 2 == 0 else (b, a)
                arm1 = Call(first.u().Arm)
                in_flight(db, arm1, 1, 'the first arming at the gate')
                arm2 = Call(second.u().Arm)
                in_flight(db, arm2, 2, 'the second arming at the gate')
                gate.open()
                res = {first.ws: None, second.ws: None}
                answered(arm1, arm2)
                res[first.ws], res[second.ws] = arm1.answer, arm2.answer
            armed = [ws for ws, r in res.items() if r == 'ok']
            assert len(armed) == 1, 'round %d: %s' % (i, res)
            loser = [ws for ws in res if ws not in armed][0]
            assert res[loser] == 'CooldownActive', (res, arm1.message, arm2.message)
            wins[armed[0]] += 1
            winner = a if armed[0] == 'ws1' else b
            winner.wait_state('ready')
            for w in (a, b):
                fire_if_ready(w)
            fired = {w.ws: len(w.fired_shots()) - shots[w.ws] for w in (a, b)}
            assert fired[loser] == 0 and fired[armed[0]] > 0, fired
            winner.u().Disarm()
            winner.wait_state('standby')
            for w, s in ((a, sa), (b, sb)):
                w.end_session(s, '')
        for w in (a, b):
            w.wait_shipped()
        rows = pg().rows("SELECT patient, count(*), sum(pulses_recorded) FROM"
                         " smplaser.treatments WHERE patient LIKE 'twice-%%'"
                         " GROUP BY patient ORDER BY patient", db)
        assert len(rows) == 2 and all(r[1] == '1' and int(r[2]) > 0 for r in rows), rows
        assert sorted(a.recorded_shots() + b.recorded_shots()) == \
            sorted(a.fired_shots() + b.fired_shots())
        print('# ws1 armed %d, ws2 armed %d' % (wins['ws1'], wins['ws2']))


def review_detail(db, patient):
    return pg().value("SELECT detail FROM smplaser.audit WHERE kind = 'review' AND"
                      " reason = '%s' ORDER BY id DESC LIMIT 1" % patient, db)


@test
def test_race_review_against_a_new_adverse_event():
    """A review (ClearPatchHold) against new adverse events of the same patch, on three
    workstations, forced by gates:
    - A's second event (infection) is inside its transaction when B records a third
      (scarring) and C the review: B and C wait for A, in their order, and the review
      clears only what it saw: every holding event it clears is named in its audit record
      (without the patch's lock B commits first, and C's review would clear A's infection
      unseen);
    - C's review is inside its transaction when A records a new event: A waits; the new
      event is not cleared, the patch stays on hold."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b, \
            Workstation(db, 'ws3') as c:
        for w in (a, b, c):
            w.start(wait=False)
        for w in (a, b, c):
            wait_until(w._running, 20, '%s to run' % w.ws)
        install_gates(db)
        a.manager().RecordFollowUp('rev-1', 'crown', findings(adverse=['blistering']))
        with Gate(db, GATE_ADVERSE) as gate:
            f2 = Call(a.manager().RecordFollowUp, 'rev-1', 'crown',
                      findings(adverse=['infection']))
            in_flight(db, f2, 1, "A's infection at the gate")
            f3 = Call(b.manager().RecordFollowUp, 'rev-1', 'crown',
                      findings(adverse=['scarring']))
            in_flight(db, f3, 2, "B's scarring waiting or answered")
            review = Call(c.manager().ClearPatchHold, 'rev-1', 'crown', 'reviewed')
            in_flight(db, review, 3, "C's review waiting or answered")
            gate.open()
            assert answered(f2, f3, review) == ['ok', 'ok', 'ok'], review.message
        through = int(pg().value("SELECT cleared_through FROM smplaser.hold_reviews"
                                 " WHERE patient = 'rev-1'", db))
        cleared = pg().rows("SELECT DISTINCT a.kind FROM smplaser.adverse_events a JOIN"
                            " smplaser.follow_ups f ON f.id = a.follow_up_id WHERE a.holds"
                            " AND f.patient = 'rev-1' AND f.id <= %d ORDER BY 1" % through, db)
        detail = review_detail(db, 'rev-1')
        unseen = [k for (k,) in cleared if k not in detail]
        assert not unseen, 'the review cleared %s unseen: %s' % (unseen, detail)
        # The review inside its transaction; a new event meanwhile stays a hold.
        a.manager().RecordFollowUp('rev-2', 'crown', findings(adverse=['blistering']))
        with Gate(db, GATE_REVIEW) as gate:
            review = Call(c.manager().ClearPatchHold, 'rev-2', 'crown', 'reviewed')
            in_flight(db, review, 1, "C's review at the gate")
            f2 = Call(a.manager().RecordFollowUp, 'rev-2', 'crown',
                      findings(adverse=['follicle-damage']))
            in_flight(db, f2, 2, "A's event waiting or answered")
            gate.open()
            assert answered(review, f2) == ['ok', 'ok'], (review.message, f2.message)
        detail = review_detail(db, 'rev-2')
        assert 'blistering' in detail and 'follicle-damage' not in detail, detail
        for w in (a, b, c):
            ok, _, why = w.manager().CheckPatch('rev-2', 'crown')
            assert not ok and 'follicle-damage' in why and 'blistering' not in why, why


@test
def test_race_follow_up_against_an_arming():
    """A follow-up recorded on A against B arming the patch it decides (past the cooldown,
    a follow-up required), forced by gates:
    - A's follow-up finding no pigment is inside its transaction when B arms: B waits and is
      refused (PatchClear), its unit fires nothing;
    - B's arming is inside its transaction when A records a follow-up finding pigment: B
      arms on the earlier follow-up and treats; A's follow-up, stamped before B's
      treatment emitted, is not the follow-up of that treatment: the patch then waits for
      the cooldown *and* a new follow-up (CheckPatch says so)."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b:
        a.start()
        b.start()
        install_gates(db)
        for p in ('fu-1', 'fu-2'):
            seed_treated(db, p, 'crown', 50)
            a.manager().RecordFollowUp(p, 'crown', findings(pigment_remaining_pct=30))
        sb = b.ready('fu-1', 'crown')
        with Gate(db, GATE_FOLLOW_UP) as gate:
            fu = Call(a.manager().RecordFollowUp, 'fu-1', 'crown',
                      findings(pigment_remaining_pct=0, note='gated'))
            in_flight(db, fu, 1, "A's follow-up at the gate")
            arm = Call(b.u().Arm)
            in_flight(db, arm, 2, "B's arming waiting or answered")
            gate.open()
            assert answered(fu, arm) == ['ok', 'PatchClear'], (arm.answer, arm.message)
        fire_if_ready(b)
        assert not b.fired_shots(), b.fired_shots()
        b.end_session(sb, 'refused')
        sb = b.ready('fu-2', 'crown')
        with Gate(db, GATE_TREATMENT) as gate:
            arm = Call(b.u().Arm)
            in_flight(db, arm, 1, "B's arming at the gate")
            fu = Call(a.manager().RecordFollowUp, 'fu-2', 'crown',
                      findings(pigment_remaining_pct=20))
            in_flight(db, fu, 2, "A's follow-up waiting or answered")
            gate.open()
            assert answered(arm, fu) == ['ok', 'ok'], (arm.message, fu.message)
        b.wait_state('ready')
        fire_if_ready(b)
        assert b.fired_shots()
        b.u().Disarm()
        b.wait_state('standby')
        b.end_session(sb, 'done')
        b.wait_shipped()
        last = pg().rows("SELECT f.time_ms < t.emission_ms FROM smplaser.follow_ups f,"
                         " smplaser.treatments t WHERE f.patient = 'fu-2' AND"
                         " t.patient = 'fu-2' AND t.workstation = 'ws2'"
                         " ORDER BY f.id DESC LIMIT 1", db)
        assert last == [['t']], last
        for w in (a, b):
            ok, _, why = w.manager().CheckPatch('fu-2', 'crown')
            assert not ok and 'then a follow-up must find pigment' in why, why
        assert course(a, 'fu-2')['crown']['status'] == 'cooling-down'


@test
def test_race_hold_against_an_arming_whose_connection_broke():
    """B's arming holds the patch's lock (shared) and stops at the gate inside its
    transaction; A's follow-up with a holding adverse event waits for that lock; then B's
    connection to the server is cut (pg_terminate_backend): its lock goes with it, A's
    follow-up takes the patch and stops at its own gate, uncommitted, and B's arming runs
    again on a new connection.  That run must take the patch's lock again and wait for A's
    follow-up (refused PatchOnHold, nothing fired), not decide without it (before: armed,
    and the unit fired on a patch on hold)."""
    db = pg().new_database()
    with Workstation(db, 'ws1') as a, Workstation(db, 'ws2') as b:
        a.start()
        b.start()
        install_gates(db)
        sb = b.ready('hold-cut', 'crown')
        gate_t, gate_a = Gate(db, GATE_TREATMENT), Gate(db, GATE_ADVERSE)
        try:
            arm = Call(b.u().Arm)
            in_flight(db, arm, 1, "B's arming at the treatment gate")
            assert arm.answer is None, arm.message
            fu = Call(a.manager().RecordFollowUp, 'hold-cut', 'crown',
                      findings(adverse=['infection']))
            in_flight(db, fu, 2, "A's follow-up waiting for the patch")
            assert fu.answer is None, fu.message
            cut = pg().value("SELECT count(pg_terminate_backend(pid)) FROM pg_locks"
                             " WHERE locktype = 'advisory' AND NOT granted"
                             " AND objid = %d" % GATE_TREATMENT, db)
            assert cut == '1', cut
            # A at its adverse gate; B at the treatment gate again (without the patch's
            # lock) or waiting for that lock behind A.
            in_flight(db, arm, 2, "A at its gate and B back")
            gate_t.open()
            time.sleep(0.5)
            gate_a.open()
            res = answered(fu, arm)
        finally:
            gate_t.open()
            gate_a.open()
        assert res == ['ok', 'PatchOnHold'], (res, arm.message)
        fire_if_ready(b)
        assert not b.fired_shots(), 'fired on a patch on hold: %s' % b.fired_shots()
        b.end_session(sb, 'refused')
        assert not treated_during_a_hold(db, "'hold-cut'")


def _pid_alive(pid):
    try:
        with open('/proc/%d/stat' % pid) as f:
            return f.read().split(') ')[-1][0] != 'Z'
    except FileNotFoundError:
        return False


@test
def test_the_server_goes_with_the_suite():
    """The suite's PostgreSQL never outlives it: closed while hung (SIGSTOP), and when the
    process that started it dies by SIGKILL (the server hung) or SIGTERM, the server
    stops and its directory goes within seconds."""
    import subprocess
    here = os.path.dirname(os.path.abspath(__file__))
    s = PgServer()
    master = s.pids()[0]
    s.hang()
    s.close()
    assert not _pid_alive(master), 'a hung server outlived close()'
    assert not os.path.exists(s.dir), s.dir
    for sig, hang in ((signal.SIGKILL, True), (signal.SIGTERM, False)):
        code = ('import sys, time; sys.path.insert(0, %r); from pgserver import PgServer;'
                ' s = PgServer(); %s print(s.dir, s.pids()[0], flush=True); time.sleep(600)'
                % (here, 's.hang();' if hang else ''))
        p = subprocess.Popen(['/usr/bin/python3', '-c', code], stdout=subprocess.PIPE,
                             text=True)
        try:
            line = p.stdout.readline().split()
            assert len(line) == 2, line
            d, master = line[0], int(line[1])
            p.send_signal(sig)
            p.wait(10)
        finally:
            p.kill()
            p.wait()
            p.stdout.close()
        wait_until(lambda: not _pid_alive(master) and not os.path.exists(d), 20,
                   'the server of a process killed by %s (hung: %s) gone' % (sig.name, hang))


def main():
    try:
        return harness.main()
    finally:
        if PG:
            PG.close()


if __name__ == '__main__':
    sys.exit(main())
