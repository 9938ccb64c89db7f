#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Records a site can trust and restore (issue 15.11-15.13), as an operator and an
attacker would meet them: smplaserctl records backup / verify / export against
smplaserd --session --sim on a private bus (tests/integration/harness.py).

- A backup made while a unit fires, restored after more treatments: the unit's
  counter is ahead of the copy, it faults records-missing, arming is refused
  until an acknowledge, and the patch of the copy's last session stays in its
  cooldown.  The truth is the simulated unit's fired log, not the records.
- The sqlite3 shell edits the records: refused with the triggers in place,
  named by "records verify" with them dropped; the chain head logged at start
  tells an older or rewritten copy.
- Exports in CSV and JSON, parsed; a large database exported by a daemon and a
  smplaserctl that each live under a memory limit, while a unit stays armed and
  firing during a backup of it (the loop is never stalled by a copy).
- The chain head in the journal at start and at the next UTC midnight (a faked
  wall clock, as tests/integration/test_clock.py does).

The memory-limit and clock tests run the plain build/smplaserd (neither
RLIMIT_AS nor LD_PRELOAD go with ASan); the others the harness's daemon.
Prints TAP.
"""
import csv
import io
import json
import os
import re
import resource
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import dbus

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import (GOOD_PARAMS, Env, expect_error, main, pump, test,  # noqa: E402
                     wait_until)

CTL = os.environ.get('SMPLASERCTL', os.path.join(TOP, 'build', 'smplaserctl'))
PLAIN_DAEMON = os.path.join(TOP, 'build', 'smplaserd')
LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
PASSTHROUGH = os.path.join(TOP, 'build', 'tests', 'timerfd-passthrough.so')
DAY_MS = 86400 * 1000
FAST_PARAMS = dbus.Dictionary(dict(GOOD_PARAMS, rate_mhz=dbus.UInt32(10000)), signature='sv')


def ctl(env, *args, rc=0, timeout=120, preexec_fn=None, stdout=None):
    """smplaserctl --session ...; its exit code must be @rc (None: any)."""
    e = env.env()
    e['NO_COLOR'] = '1'
    p = subprocess.run([CTL, '--session'] + list(args), env=e, timeout=timeout,
                       stdin=subprocess.DEVNULL, stdout=stdout or subprocess.PIPE,
                       stderr=subprocess.PIPE, preexec_fn=preexec_fn)
    out = p.stdout.decode(errors='replace') if p.stdout is not None else ''
    err = p.stderr.decode(errors='replace')
    if rc is not None and p.returncode != rc:
        raise AssertionError('smplaserctl %s: exit %d, expected %d\n--- stdout\n%s'
                             '--- stderr\n%s' % (' '.join(args), p.returncode, rc,
                                                 out[-3000:], err[-3000:]))
    return p.returncode, out, err


def fired_shots(env, serial='SIM00001'):
    return [p['shot'] for p in env.fired(serial)]


def hold(env, seconds):
    """Footswitch held @seconds; the shots the unit fired."""
    before = len(fired_shots(env))
    env.sim().SetFootswitch(True)
    pump(seconds)
    env.sim().SetFootswitch(False)
    pump(0.3)
    return len(fired_shots(env)) - before


def treat(env, patient, patch, seconds, params=FAST_PARAMS):
    spath = env.ready_session(patient, patch, params=params)
    env.arm_to_ready()
    shots = hold(env, seconds)
    env.unit().Disarm()
    env.wait_unit_state('standby')
    env.end_session(spath, '')
    return shots


def logged_heads(env):
    """(seq, hash, why) of each "records chain head" line of the daemon's log."""
    return re.findall(r'records chain head (\d+):([0-9a-f]{64}) \((\w+)\)', env.log())


def restore(env, copy):
    """The README's restore: smplaserd stopped, the copy in place of records.db."""
    env.kill(signal.SIGTERM)
    for suffix in ('', '-wal', '-shm'):
        path = os.path.join(env.state_dir, 'records.db' + suffix)
        if os.path.exists(path):
            os.rename(path, path + '.replaced')
    shutil.copyfile(copy, os.path.join(env.state_dir, 'records.db'))
    os.chmod(os.path.join(env.state_dir, 'records.db'), 0o600)


class PlainEnv(Env):
    """Env running the plain (not sanitized) daemon, with extra environment."""

    extra = {}

    def daemon_args(self, sim=1):
        args = super().daemon_args(sim)
        args[0] = PLAIN_DAEMON
        return args

    def env(self):
        return dict(super().env(), **self.extra)


# --- 15.11: backups, and a restored older copy ---------------------------------

@test
def test_backup_while_firing_then_an_older_copy_restored():
    """A backup made while the unit fires is consistent and verifies.  Restored after
    the treatment went on and another patient was treated, the copy is older than the
    unit's counter: the unit faults records-missing, arming is refused until an
    authorized acknowledge, and the patch of the copy's last session stays in its
    cooldown from now; the unit fired nothing while refused."""
    with Env() as env:
        env.start()
        copy = os.path.join(env.tmp, 'backup.db')
        spath = env.ready_session('p-bk1', 'crown', params=FAST_PARAMS)
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: len(fired_shots(env)) >= 3, 3, 'the first shots')
        _, out, _ = ctl(env, 'records', 'backup', copy)
        assert 'Verified' in out, out
        pump(1.0)                                  # the treatment goes on
        env.sim().SetFootswitch(False)
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')
        at_backup = sqlite3.connect('file:%s?mode=ro' % copy, uri=True).execute(
            'SELECT coalesce(max(shot), 0) FROM pulses').fetchone()[0]
        assert at_backup >= 3, at_backup
        # Another patient on the same unit: 4 s at 10 Hz, well beyond the open
        # treatment's own last moments (store-restore.c).
        assert treat(env, 'p-bk2', 'occipital', 4.0) >= 30
        counter = int(env.unit_prop('ShotCount'))
        assert counter == len(fired_shots(env)), (counter, len(fired_shots(env)))

        restore(env, copy)
        env.start()
        wait_until(lambda: env.unit_prop('LatchedFault') == 'records-missing', 5,
                   'the unit to fault records-missing')
        assert 'records-missing' in env.log() and 'restored from an older backup' in env.log()
        fired = len(fired_shots(env))
        eligible, _, why = env.manager().CheckPatch('p-bk1', 'crown')
        assert not eligible, 'a patch the copy saw treated is free: %s' % why
        spath = env.unit().StartSession('p-bk1')
        expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown')
        env.session(spath).SelectPatch('mid-scalp')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(FAST_PARAMS)
        expect_error('DeviceFault', env.unit().Arm, contains=('records-missing',))
        env.sim().SetFootswitch(True)
        pump(0.5)
        env.sim().SetFootswitch(False)
        assert len(fired_shots(env)) == fired, 'the unit fired while refused'
        # Across a restart too: nobody acknowledged it.
        env.kill(signal.SIGTERM)
        env.start()
        wait_until(lambda: env.unit_prop('LatchedFault') == 'records-missing', 5,
                   'the fault again after a restart')
        env.unit().AcknowledgeFault()
        assert env.unit_prop('LatchedFault') == ''
        spath = env.ready_session('p-bk1', 'mid-scalp', params=FAST_PARAMS)
        env.arm_to_ready()
        assert hold(env, 0.3) > 0
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')
        eligible, next_usec, _ = env.manager().CheckPatch('p-bk1', 'crown')
        assert not eligible
        assert next_usec / 1000 > (time.time() + 41 * 86400) * 1000, \
            'the missing shots do not count from now'
        rows = env.query("SELECT * FROM unit_counters WHERE kind = 'missing'")
        assert len(rows) == 1 and rows[0]['ack_ms'], rows
        assert rows[0]['shot_from'] == at_backup and rows[0]['shot_to'] == counter, \
            (rows, at_backup, counter)
        audit = env.query("SELECT kind, reason FROM audit WHERE reason = 'records-missing'"
                          " OR kind = 'ack-fault'")
        assert ('fault', 'records-missing') in [(a['kind'], a['reason']) for a in audit], audit
        assert ('ack-fault', 'records-missing') in [(a['kind'], a['reason']) for a in audit]
        # The other patient's treatment is not in the copy: nothing can know it
        # (README, "Backups and restoring").
        print('# p-bk2 occipital after the restore: %s' %
              (env.manager().CheckPatch('p-bk2', 'occipital')[2],))
        ctl(env, 'records', 'verify')


@test
def test_backup_never_overwrites_and_is_audited():
    """records backup refuses an existing file; Backup refuses a descriptor that is not
    an empty file open for reading and writing; a backup is in the audit trail."""
    with Env() as env:
        env.start()
        existing = os.path.join(env.tmp, 'existing.db')
        with open(existing, 'w') as f:
            f.write('keep me')
        _, _, err = ctl(env, 'records', 'backup', existing, rc=1)
        assert 'never overwrites' in err, err
        assert open(existing).read() == 'keep me'
        records = dbus.Interface(env.obj(harness.ROOT), 'org.smplaser.Laser1.Records')
        with open(existing, 'rb') as f:
            expect_error('InvalidArgument', records.Backup, dbus.types.UnixFd(f),
                         contains=('backup',))
        good = os.path.join(env.tmp, 'good.db')
        _, out, _ = ctl(env, '--json', 'records', 'backup', good)
        j = json.loads(out)
        assert j['verified'] and j['backup']['bytes'] == os.path.getsize(good), j
        env.settle_records()
        rows = env.query("SELECT reason, detail FROM audit WHERE kind = 'records'")
        assert [r['reason'] for r in rows] == ['backup', 'backup'], rows
        assert rows[0]['detail'].startswith('failed:') and 'chain head' in rows[1]['detail']


def small_mount(path, size, ro=False):
    """A tmpfs of @size at @path (read-only with @ro); False when this host cannot
    mount (not root, no CAP_SYS_ADMIN)."""
    os.makedirs(path, exist_ok=True)
    opts = 'size=%s,mode=0777' % size + (',ro' if ro else '')
    return subprocess.run(['mount', '-t', 'tmpfs', '-o', opts, 'tmpfs', path],
                          capture_output=True).returncode == 0


@test
def test_backup_to_a_full_disk_or_an_unwritable_path():
    """A backup into a file system that fills up, one that is read-only, or a directory
    that does not exist: smplaserctl says why (no space / read-only / no such
    directory), leaves no partial file, exits 1; the daemon answers on, the failure is
    audited, the unit stays armed and firing meanwhile and every shot it fired is in
    the records, which still verify."""
    if os.geteuid() != 0:
        print('# SKIP: mounting a small file system needs root')
        return 'skip'
    with Env() as env:
        full = os.path.join(env.tmp, 'full')
        ro = os.path.join(env.tmp, 'ro')
        if not small_mount(full, '32k'):
            print('# SKIP: this host cannot mount a tmpfs')
            return 'skip'
        try:
            assert small_mount(ro, '64k', ro=True)
            env.start()
            treat(env, 'p-full', 'crown', 3.0)       # records twice the file system
            env.settle_records()
            pages = env.query('PRAGMA page_count')[0]['page_count']
            assert pages * 4096 > 64 * 1024, pages
            spath = env.ready_session('p-full2', 'occipital', params=FAST_PARAMS)
            env.arm_to_ready()
            env.sim().SetFootswitch(True)
            wait_until(lambda: len(fired_shots(env)) >= 3, 3, 'the first shots')
            for path, why in ((os.path.join(full, 'b.db'), 'no space left'),
                              (os.path.join(ro, 'b.db'), 'Read-only file system'),
                              (os.path.join(env.tmp, 'nowhere', 'b.db'),
                               'No such file or directory')):
                _, out, err = ctl(env, 'records', 'backup', path, rc=1)
                assert why in err, (path, err)
                print('# %s' % err.strip())
                assert not os.path.exists(path), '%s left behind' % path
                assert str(env.unit_prop('State')) in ('ready', 'emitting')
            env.sim().SetFootswitch(False)
            env.unit().Disarm()
            env.wait_unit_state('standby')
            env.end_session(spath, '')
            assert os.listdir(full) == []
            env.settle_records()
            fired = fired_shots(env)
            assert fired and env.recorded_shots() == fired, 'pulses lost'
            rows = env.query("SELECT detail FROM audit WHERE kind = 'records'")
            assert len(rows) == 1 and 'no space left' in rows[0]['detail'], rows
            _, out, _ = ctl(env, 'records', 'verify')
            # The same backup where there is room.
            ctl(env, 'records', 'backup', os.path.join(env.tmp, 'ok.db'))
        finally:
            for path in (full, ro):
                subprocess.run(['umount', '-l', path], capture_output=True)


@test
def test_backup_never_fills_the_records_own_file_system():
    """A backup into the file system of the records themselves (here a 16 MiB tmpfs,
    less than the 32 MiB a backup must leave free there) is refused before anything is
    written: the records never lose the room they need while a unit fires; the unit
    stays armed and every shot it fired is recorded."""
    if os.geteuid() != 0:
        print('# SKIP: mounting a small file system needs root')
        return 'skip'
    with Env() as env:
        if not small_mount(env.state_dir, '16m'):
            print('# SKIP: this host cannot mount a tmpfs')
            return 'skip'
        try:
            env.start()
            spath = env.ready_session('p-room', 'crown', params=FAST_PARAMS)
            env.arm_to_ready()
            env.sim().SetFootswitch(True)
            wait_until(lambda: len(fired_shots(env)) >= 3, 3, 'the first shots')
            path = os.path.join(env.state_dir, 'backup.db')
            _, _, err = ctl(env, 'records', 'backup', path, rc=1)
            print('# %s' % err.strip())
            assert 'records\' file system' in err and 'another disk' in err, err
            assert not os.path.exists(path)
            assert str(env.unit_prop('State')) in ('ready', 'emitting')
            env.sim().SetFootswitch(False)
            env.unit().Disarm()
            env.wait_unit_state('standby')
            env.end_session(spath, '')
            env.settle_records()
            fired = fired_shots(env)
            assert fired and env.recorded_shots() == fired, 'pulses lost'
            ctl(env, 'records', 'backup', os.path.join(env.tmp, 'elsewhere.db'))
        finally:
            subprocess.run(['umount', '-l', env.state_dir], capture_output=True)


@test
def test_backup_and_export_are_guarded_by_the_records_action():
    """On a system bus, Backup and Export ask polkit for org.smplaser.records and
    no other action: refused (NotAuthorized, nothing written) while every other
    action is allowed; done with only that one allowed."""
    with Env(bus_type='system') as env:
        p = subprocess.Popen(['/usr/bin/python3', '-m', 'dbusmock', '--system', '--template',
                              'polkitd'], env=env.env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        env.helpers.append(p)
        wait_until(lambda: env.bus.name_has_owner('org.freedesktop.PolicyKit1'), 10,
                   'polkitd mock')
        mock = dbus.Interface(env.bus.get_object('org.freedesktop.PolicyKit1',
                                                 '/org/freedesktop/PolicyKit1/Authority'),
                              'org.freedesktop.DBus.Mock')
        mock.SetAllowed(['org.smplaser.treat', 'org.smplaser.configure',
                         'org.smplaser.acknowledge'])
        env.start()
        records = dbus.Interface(env.obj(harness.ROOT), 'org.smplaser.Laser1.Records')
        path = os.path.join(env.tmp, 'copy')
        with open(path, 'w+b') as f:
            expect_error('NotAuthorized', records.Backup, dbus.types.UnixFd(f))
            expect_error('NotAuthorized', records.Export, dbus.types.UnixFd(f),
                         dbus.UInt64(0), 'csv')
        assert os.path.getsize(path) == 0
        mock.SetAllowed(['org.smplaser.records'])
        with open(path, 'w+b') as f:
            info = records.Backup(dbus.types.UnixFd(f), timeout=60)
        assert info['bytes'] == os.path.getsize(path) > 0, info
        os.unlink(path)
        with open(path, 'w+b') as f:
            info = records.Export(dbus.types.UnixFd(f), dbus.UInt64(0), 'json', timeout=60)
        assert json.load(open(path))['audit'], info


# --- 15.12: tamper evidence -------------------------------------------------------

def sqlite3_shell(path, sql):
    p = subprocess.run(['sqlite3', path, sql], capture_output=True, text=True, timeout=30)
    return p.returncode, p.stdout + p.stderr


@test
def test_edits_with_the_sqlite3_shell_are_named():
    """The sqlite3 shell cannot change a record with the triggers in place; with them
    dropped, records verify names the row (live, and in a copy); a copy older than
    the head logged at start, or rewritten, does not pass --head."""
    with Env() as env:
        env.start()
        treat(env, 'p-tm1', 'crown', 0.5)
        treat(env, 'p-tm2', 'crown', 0.5)
        env.kill(signal.SIGTERM)
        db = os.path.join(env.state_dir, 'records.db')
        old = os.path.join(env.tmp, 'old.db')
        rc, out = sqlite3_shell(db, "UPDATE audit SET detail = 'x' WHERE id = 3")
        assert rc != 0 and 'never changed' in out, out
        rc, out = sqlite3_shell(db, 'UPDATE treatments SET end_ms = 0 WHERE id = 1')
        assert rc != 0 and 'smpl_chain_digest' in out, out
        rc, out = sqlite3_shell(db, 'DELETE FROM audit WHERE id = 3')
        assert rc != 0 and 'never deleted' in out, out
        env.start()
        heads = logged_heads(env)
        assert len(heads) == 2 and heads[-1][2] == 'start', heads
        ctl(env, 'records', 'backup', old)
        ctl(env, 'records', 'verify', old, '--head', '%s:%s' % heads[-1][:2])

        # Forty days off the first treatment, the guards dropped: the patch would look
        # eligible again, and the chain says so.
        env.kill(signal.SIGTERM)
        rc, out = sqlite3_shell(db, 'DROP TRIGGER treatments_closed;'
                                'DROP TRIGGER treatments_chain_update;'
                                'UPDATE treatments SET armed_ms = armed_ms - 40 * 86400000,'
                                ' end_ms = end_ms - 40 * 86400000,'
                                ' last_pulse_ms = last_pulse_ms - 40 * 86400000 WHERE id = 1')
        assert rc == 0, out
        env.start()
        rc, out, _ = ctl(env, 'records', 'verify', rc=1)
        assert 'NOT VERIFIED' in out and 'treatments row 1 was changed' in out, out
        _, out, _ = ctl(env, '--json', 'records', 'verify', rc=1)
        j = json.loads(out)
        assert not j['verified'] and 'treatments row 1' in j['problems'][0]['text'], j

        # The copy made before: intact, but older than the head logged now.
        heads = logged_heads(env)
        rc, out, _ = ctl(env, 'records', 'verify', old, '--head', '%s:%s' % heads[-1][:2],
                         rc=None)
        assert rc == 1 and 'before the head' in out, out
        # An audit row deleted in the copy, its chain entry too: a gap.
        rc, out = sqlite3_shell(old, 'DROP TRIGGER audit_keep; DROP TRIGGER record_chain_keep;'
                                "DELETE FROM audit WHERE id = 5;"
                                "DELETE FROM record_chain WHERE tbl = 'audit' AND row_id = 5")
        assert rc == 0, out
        _, out, _ = ctl(env, 'records', 'verify', old, rc=1)
        assert 'are missing (deleted)' in out, out
        # A pulse deleted: not chained one by one, found against its treatment's summary.
        rc, out = sqlite3_shell(old, 'DROP TRIGGER pulses_keep; DELETE FROM pulses WHERE id ='
                                ' (SELECT max(id) FROM pulses WHERE treatment_id = 2)')
        assert rc == 0, out
        _, out, _ = ctl(env, 'records', 'verify', old, rc=1)
        assert 'the pulses of treatment 2 do not match its chained summary' in out, out
        # Not a database, or not ours: said so.
        _, _, err = ctl(env, 'records', 'verify', env.config_path, rc=1)
        assert 'cannot open' in err or 'not smplaser' in err, err


# --- 15.13: exports -------------------------------------------------------------------

@test
def test_export_csv_and_json_since_a_date():
    """Treatments with their pulse summary and the audit records since a date, in CSV
    and in JSON; the pulse counts are the unit's (its fired log)."""
    with Env() as env:
        env.start()
        n1 = treat(env, 'p-ex1', 'crown', 0.6)
        n2 = treat(env, 'p-ex2', 'occipital', 0.4)
        today = time.strftime('%Y-%m-%d', time.gmtime())
        tomorrow = time.strftime('%Y-%m-%d', time.gmtime(time.time() + 86400))
        _, out, _ = ctl(env, 'records', 'export', '--since', today)
        rows = list(csv.DictReader(io.StringIO(out)))
        treatments = [r for r in rows if r['record'] == 'treatment']
        audit = [r for r in rows if r['record'] == 'audit']
        # pulses: the unit's counter, once read after the disarm (else empty, settled
        # from a later read); pulses_recorded: each pulse as reported.
        assert [(t['patient'], t['patch'], int(t['pulses_recorded'])) for t in treatments] == \
            [('p-ex1', 'crown', n1), ('p-ex2', 'occipital', n2)], treatments
        assert all(t['pulses'] in ('', t['pulses_recorded']) for t in treatments), treatments
        assert all(t['outcome'] == 'completed' and t['armed_utc'].startswith(today)
                   for t in treatments), treatments
        assert int(treatments[0]['energy_min_uj']) <= int(treatments[0]['energy_mean_uj']) \
            <= int(treatments[0]['energy_max_uj'])
        kinds = [a['kind'] for a in audit]
        assert kinds.count('arm') == 2 and kinds.count('disarm') == 2, kinds
        _, out, _ = ctl(env, '--json', 'records', 'export', '--since', today + 'T00:00')
        j = json.loads(out)
        assert [(t['patient'], t['pulses_recorded']) for t in j['treatments']] == \
            [('p-ex1', n1), ('p-ex2', n2)], j['treatments']
        assert [a['id'] for a in j['audit'][:len(audit)]] == [int(a['id']) for a in audit]
        assert all(a['kind'] == 'records' for a in j['audit'][len(audit):]), j['audit']
        assert j['export']['chain_head']['seq'] > 0, j['export']
        _, out, _ = ctl(env, 'records', 'export', '--since', tomorrow)
        assert out.count('\n') == 1 and out.startswith('record,id,'), out
        ctl(env, 'records', 'export', rc=2)
        ctl(env, 'records', 'export', '--since', 'yesterday', rc=2)
        ctl(env, '--json', 'records', 'export', '--csv', '--since', today, rc=2)
        env.settle_records()
        assert env.query("SELECT * FROM audit WHERE kind = 'records' AND reason = 'export'")


def make_large_records(env, megabytes):
    """Bulk audit rows and treatments written behind a stopped daemon (chained by the
    harness's implementation of the encoding)."""
    env.kill(signal.SIGTERM)
    db = harness.chain_functions(sqlite3.connect(os.path.join(env.state_dir, 'records.db')))
    detail = 'x' * 1000
    n = megabytes * 1000 * 1000 // 1500
    t0 = int(time.time() * 1000) - DAY_MS
    db.execute('BEGIN')
    db.execute("INSERT INTO sessions (id, patient, unit_serial, operator_uid, operator_name,"
               " start_ms, end_ms, state) VALUES (900, 'p-bulk', 'SIM00001', 0, 'root', ?1,"
               " ?1, 'ended')", (t0,))
    db.executemany("INSERT INTO audit (time_ms, kind, reason, detail) VALUES"
                   " (?, 'parameters', 'bulk', ?)", ((t0 + i, detail) for i in range(n)))
    db.executemany("INSERT INTO treatments (session_id, patient, patch, unit_serial,"
                   " unit_firmware, operator_uid, operator_name, wavelength_nm,"
                   " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
                   " armed_rtc_s, end_ms, shot_at_arm, shot_at_end, pulse_count, outcome)"
                   " VALUES (900, 'p-bulk', 'occipital', 'SIM00001', '1.0.0', 0, 'root', 1064,"
                   " 3000, 3000, 10000, 5000, 212058, ?1, ?1 / 1000, ?1, 0, 0, 0,"
                   " 'completed')", ((t0 + i,) for i in range(n // 10)))
    db.commit()
    db.close()
    return n, n // 10


def vm_kb(pid, field):
    with open('/proc/%d/status' % pid) as f:
        return int(re.search(r'^%s:\s+(\d+) kB' % field, f.read(), re.M).group(1))


@test
def test_large_records_export_and_backup_in_bounded_memory():
    """150 MB of records exported by a daemon limited to its address space at rest +
    96 MiB and a smplaserctl limited to 96 MiB, both streaming; then backed up while
    the unit is armed and firing: it stays armed (nothing stalls the loop) and every
    shot it fired is recorded."""
    with PlainEnv() as env:
        env.start()
        n_audit, n_treat = make_large_records(env, 150)
        size = os.path.getsize(os.path.join(env.state_dir, 'records.db'))
        assert size > 140e6, size
        env.start()
        pid = env.daemon.pid
        limit = (vm_kb(pid, 'VmSize') + 96 * 1024) * 1024
        resource.prlimit(pid, resource.RLIMIT_AS, (limit, limit))
        ctl_limit = 96 * 1024 * 1024

        def limited():
            resource.setrlimit(resource.RLIMIT_AS, (ctl_limit, ctl_limit))

        t = time.monotonic()
        with tempfile.TemporaryFile(dir=env.tmp) as out:
            _, _, err = ctl(env, '--json', 'records', 'export', '--since', '2000-01-01',
                            preexec_fn=limited, stdout=out, timeout=300)
            exported = out.tell()
            out.seek(0)
            head = out.read(200).decode()
            out.seek(-200, 2)
            tail = out.read().decode()
        print('# JSON export: %d bytes of %d-byte records in %.1f s; daemon peak RSS %d kB' %
              (exported, size, time.monotonic() - t, vm_kb(pid, 'VmHWM')))
        assert exported > n_audit * 1000, (exported, n_audit)
        assert head.startswith('{"export":') and tail.endswith('\n]}\n'), (head, tail)
        assert vm_kb(pid, 'VmHWM') < 64 * 1024, 'the export grew the daemon to %d kB' % \
            vm_kb(pid, 'VmHWM')

        # A backup of it all while the unit is armed and the footswitch held.
        copy = os.path.join(env.tmp, 'large.db')
        spath = env.ready_session('p-big', 'crown', params=FAST_PARAMS)
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        e = env.env()
        backup = subprocess.Popen([CTL, '--session', 'records', 'backup', copy], env=e,
                                  stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  stdin=subprocess.DEVNULL, preexec_fn=limited)
        states = set()
        while backup.poll() is None:
            states.add(str(env.unit_prop('State')))
            pump(0.05)
        env.sim().SetFootswitch(False)
        out, err = backup.communicate()
        assert backup.returncode == 0 and b'Verified' in out, (out, err)
        assert states <= {'ready', 'emitting'}, 'the unit left READY during the backup: %s' % \
            states
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')
        env.settle_records()
        fired = fired_shots(env)
        assert fired and env.recorded_shots() == fired, 'pulses lost during the backup'
        assert os.path.getsize(copy) >= size * 0.9


# --- 15.12: the chain head in the journal at start and daily --------------------------

@test
def test_chain_head_logged_at_start_and_at_midnight():
    """smplaserd logs the chain head when it starts and when the UTC day changes
    (its wall clock faked to start 3 s before midnight)."""
    now = time.time()
    to_midnight = 86400 - now % 86400
    PlainEnv.extra = {
        'LD_PRELOAD': PASSTHROUGH + ':' + LIBFAKETIME,
        'FAKETIME': '%+ds' % int(to_midnight - 3),
        'FAKETIME_DONT_FAKE_MONOTONIC': '1',
    }
    try:
        with PlainEnv() as env:
            env.start()
            wait_until(lambda: len(logged_heads(env)) == 1, 3, 'the head at start')
            assert logged_heads(env)[0][2] == 'start'
            wait_until(lambda: len(logged_heads(env)) == 2, 8, 'the head at midnight')
            assert logged_heads(env)[1][2] == 'daily', logged_heads(env)
            pump(2)
            assert len(logged_heads(env)) == 2, 'more than once a day: %s' % logged_heads(env)
    finally:
        PlainEnv.extra = {}


if __name__ == '__main__':
    sys.exit(main())
