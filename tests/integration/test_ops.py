#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Issue 15 (a clinic's IT runs it): what the daemon tells the journal and the records.

- Denials are de-duplicated per uid and action in the journal as in the audit
  trail: a local peer calling in a loop cannot push smplaserd into journald's
  rate limit (which would also drop the arm, fault and acknowledge lines).
- [backends] sim = true on the system bus is refused at start with file:line;
  --sim on the system bus needs its own --state-dir (simulated treatments never
  go into the clinical records).
- The safety-relevant settings in force are logged and audited at start.

smplaserd on a private bus (harness.py); on a "system" bus with python-dbusmock's
polkitd for the denials.  The daemon logs to stderr outside systemd, the same
lines it sends to the journal (the fields are tested in tests/unit/test_log.c
and in the full-boot test).

Usage: tests/integration/test_ops.py [test_name...]   (TAP on stdout)
"""
import os
import re
import socket
import sqlite3
import subprocess
import sys
import threading
import time

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import ERR, Env, expect_error, main, pump, test, wait_until  # noqa: E402

POLKIT = 'org.freedesktop.PolicyKit1'


def start_polkit_mock(env, allowed):
    p = subprocess.Popen(['/usr/bin/python3', '-m', 'dbusmock', '--system', '--template',
                          'polkitd'], env=env.env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    env.helpers.append(p)
    wait_until(lambda: env.bus.name_has_owner(POLKIT), 10, 'polkitd mock')
    mock = dbus.Interface(env.bus.get_object(POLKIT, '/org/freedesktop/PolicyKit1/Authority'),
                          'org.freedesktop.DBus.Mock')
    mock.SetAllowed(allowed)
    return mock


def audit(env, where):
    db = sqlite3.connect('file:%s/records.db?mode=ro' % env.state_dir, uri=True)
    rows = db.execute('SELECT kind, reason, detail FROM audit WHERE ' + where).fetchall()
    db.close()
    return rows


def denied(fn, *args):
    try:
        fn(*args)
    except dbus.DBusException as e:
        assert e.get_dbus_name() == ERR + 'NotAuthorized', e
        return e.get_dbus_message()
    raise AssertionError('%s was allowed' % fn)


@test
def test_denials_journaled_once_per_uid_and_action():
    """40 denied calls of one uid for two actions: every caller gets NotAuthorized, the
    journal (here the daemon's stderr) and the audit trail get one line per action."""
    with Env(bus_type='system') as env:
        start_polkit_mock(env, [])
        env.start()
        for _ in range(20):
            assert 'org.smplaser.treat' in denied(env.unit().StartSession, 'p-100')
            assert 'org.smplaser.records' in denied(env.manager().History, 'p-100')
        pump(0.2)
        log = env.log()
        for action in ('org.smplaser.treat', 'org.smplaser.records'):
            lines = [line for line in log.splitlines()
                     if 'Not authorized: action %s' % action in line]
            assert len(lines) == 1, '%d journal lines for %s:\n%s' % (
                len(lines), action, '\n'.join(lines[:5]))
            rows = [r for r in audit(env, "kind = 'refused' AND reason = 'NotAuthorized'")
                    if action in r[2]]
            assert len(rows) == 1, rows


@test
def test_sim_config_refused_on_system_bus():
    """[backends] sim = true on the system bus: smplaserd does not start, and says
    file:line and why; the bus name is not taken, no records are written."""
    text = '[backends]\nkmod = false\n\nsim = true\n'
    with Env(config=text, bus_type='system') as env:
        rc, out = env.run_to_exit()
        assert rc != 0, 'started with sim = true on the system bus:\n' + out
        assert '%s:4: [backends] sim = true is refused on the system bus' % env.config_path \
            in out, out
        assert 'clinical records' in out, out
        assert not env.bus.name_has_owner('org.smplaser.Laser1'), 'the bus name was taken'
        assert not os.path.exists(os.path.join(env.state_dir, 'records.db')), \
            'a records database was made'
    # The same file on a session bus (the demo, the tests) is fine.
    with Env(config=text, bus_type='session') as env:
        env.start()
        assert env.manager_prop('State') == 'running'


@test
def test_sim_option_on_system_bus_needs_its_own_state_dir():
    """smplaserd --sim on the system bus without --state-dir (the clinic's records, also
    through systemd's $STATE_DIRECTORY) is refused; with its own --state-dir it runs."""
    with Env(bus_type='system') as env:
        e = env.env()
        e['STATE_DIRECTORY'] = env.state_dir
        p = subprocess.run([harness.DAEMON, '--config', env.config_path, '--sim'], env=e,
                           capture_output=True, text=True, timeout=20)
        out = p.stdout + p.stderr
        assert p.returncode != 0, out
        assert '--sim on the system bus needs its own --state-dir' in out, out
        assert not os.path.exists(os.path.join(env.state_dir, 'records.db')), out
        env.start()     # the harness gives --state-dir
        assert env.manager_prop('State') == 'running'


@test
def test_config_in_force_logged_and_audited():
    """At start the settings in force are in the journal and in the audit trail."""
    text = '[rules]\ncooldown_days = 49\n[safety]\nenergy_tolerance_pct = 15\n'
    with Env(config=text) as env:
        env.start()
        log = env.log()
        line = [x for x in log.splitlines() if 'configuration in force' in x]
        assert len(line) == 1, log
        for want in (env.config_path + ': loaded', 'cooldown_days=49', 'energy_tolerance_pct=15',
                     'heartbeat_ms=500', 'allow_root=true', 'sim=false', 'polkit_timeout_s=20',
                     'pulses_per_patch=3000', 'fluence_mj_cm2=1000-10000'):
            assert want in line[0], (want, line[0])
        wait_until(lambda: audit(env, "kind = 'config-load'"), 5, 'the config-load record')
        rows = audit(env, "kind = 'config-load'")
        assert len(rows) == 1, rows
        _, reason, detail = rows[0]
        assert reason == 'start', rows
        for want in ('smplaserd ', 'cooldown_days=49', 'energy_tolerance_pct=15',
                     env.config_path + ': loaded'):
            assert want in detail, (want, detail)


def message_ids():
    """{name: id} of daemon/log.h's SMPL_MID_* constants."""
    with open(os.path.join(harness.TOP, 'daemon', 'log.h')) as f:
        return dict(re.findall(r'#define SMPL_MID_(\w+)\s+"([0-9a-f]{32})"', f.read()))


def journal_fields(datagram):
    """journald's native protocol: KEY=value lines (or KEY\\n<le64 size>value)."""
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b'\n', i)
        line = datagram[i:nl]
        if b'=' in line:
            k, v = line.split(b'=', 1)
            i = nl + 1
        else:
            k = line
            size = int.from_bytes(datagram[nl + 1:nl + 9], 'little')
            v = datagram[nl + 9:nl + 9 + size]
            i = nl + 9 + size + 1
        fields[k.decode()] = v.decode(errors='replace')
    return fields


class FakeJournal:
    """A journal socket the daemon sends to (its own mount namespace with /run on tmpfs),
    drained by a thread into self.records."""

    def __init__(self, env):
        jdir = os.path.join(env.tmp, 'journal')
        os.mkdir(jdir)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(os.path.join(jdir, 'socket'))
        self.sock.settimeout(0.1)
        self.records = []
        self.stop = False
        self.thread = threading.Thread(target=self._drain, daemon=True)
        self.thread.start()
        args_fn = env.daemon_args
        env.daemon_args = lambda sim=1: [
            'unshare', '-m', '--propagation', 'private', 'sh', '-c',
            'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
            'mount --bind "$0" /run/systemd/journal && exec "$@"', jdir] + args_fn(sim)

    def _drain(self):
        while not self.stop:
            try:
                self.records.append(journal_fields(self.sock.recv(65536)))
            except socket.timeout:
                pass

    def close(self):
        time.sleep(0.3)
        self.stop = True
        self.thread.join()
        self.sock.close()

    def events(self, event):
        return [r for r in self.records if r.get('SMPL_EVENT') == event]


@test
def test_journal_fields_and_message_ids():
    """Arm, disarm, a safety refusal, a fault, its acknowledgement and a clock anomaly
    reach the journal with their MESSAGE_ID (daemon/log.h, explained in
    data/smplaser.catalog) and, where a user acted, SMPL_OPERATOR_UID=; no entry has an
    empty field."""
    if os.getuid() != 0:
        return 'skip'
    ids = message_ids()
    me = str(os.getuid())
    with Env() as env:
        journal = FakeJournal(env)
        try:
            env.start()
            env.treat('p-200', 'crown', 0.3)                       # arm, disarm
            spath = env.unit().StartSession('p-200')
            expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown')
            env.session(spath).End('')
            env.sim().InjectFault('overtemp')                      # fault
            env.wait_unit_state('fault')
            env.sim().ClearFaultCause()
            env.unit().AcknowledgeFault()                          # acknowledge
            env.wait_unit_state('standby')
            env.sim().SetRtcSkew(dbus.Int64(3600))                 # clock anomaly
            spath = env.unit().StartSession('p-202')
            expect_error('ClockUnreliable', env.session(spath).SelectPatch, 'occipital')
            wait_until(lambda: journal.events('clock'), 10, 'a clock entry')
            env.sim().SetRtcSkew(dbus.Int64(0))
            env.session(spath).SelectPatch('occipital')
            env.session(spath).ConfirmEyewear()
            env.unit().SetParameters(harness.GOOD_PARAMS)
            env.arm_to_ready()
            env.unit().Disarm()
            env.session(spath).End('')
            wait_until(lambda: len(journal.events('clock')) >= 2, 10, 'the clock right again')
        finally:
            journal.close()
        recs = journal.records
        assert recs, 'nothing reached the journal socket'
        for r in recs:
            empty = [k for k, v in r.items() if v == '']
            assert not empty, 'empty fields %s in %r' % (empty, r)
        for event, mid, by_operator in (('arm', 'ARM', True), ('disarm', 'DISARM', True),
                                        ('refused', 'REFUSED', True), ('fault', 'FAULT', False),
                                        ('acknowledge', 'ACKNOWLEDGE', True),
                                        ('config', 'CONFIG', False)):
            got = journal.events(event)
            assert got, 'no %s entry in %r' % (event, [x.get('SMPL_EVENT') for x in recs])
            for r in got:
                assert r.get('MESSAGE_ID') == ids[mid], (event, r)
                if by_operator:
                    assert r.get('SMPL_OPERATOR_UID') == me, (event, r)
        clock = journal.events('clock')
        assert clock[0]['MESSAGE_ID'] == ids['CLOCK_BAD'] and clock[0]['PRIORITY'] == '4', clock
        assert clock[-1]['MESSAGE_ID'] == ids['CLOCK_OK'], clock
        probed = journal.events('probed')
        assert probed and 'SMPL_SESSION' not in probed[0] and 'MESSAGE_ID' not in probed[0], \
            probed


@test
def test_not_authorized_journal_entry():
    """A denial's journal entry: MESSAGE_ID, SMPL_OPERATOR_UID= of the caller."""
    if os.getuid() != 0:
        return 'skip'
    ids = message_ids()
    with Env(bus_type='system') as env:
        journal = FakeJournal(env)
        try:
            start_polkit_mock(env, [])
            env.start()
            for _ in range(5):
                denied(env.unit().StartSession, 'p-201')
        finally:
            journal.close()
        got = journal.events('not-authorized')
        assert len(got) == 1, got
        assert got[0]['MESSAGE_ID'] == ids['NOT_AUTHORIZED'], got
        assert got[0]['SMPL_OPERATOR_UID'] == str(os.getuid()), got


if __name__ == '__main__':
    sys.exit(main())
