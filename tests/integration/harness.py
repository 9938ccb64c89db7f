# SPDX-License-Identifier: MIT
"""Integration test harness for smplaserd.

Each test gets its own private dbus-daemon (its own config, socket and temp
directory), its own state directory and its own smplaserd started with
--session (or on a private "system" bus for the polkit tests) and --sim.
Tests talk to it as a client would, with python3-dbus.

Output is TAP: "ok N - name" / "not ok N - name", diagnostics as "# ...".
Run with Debian's /usr/bin/python3 (python3-dbus, python3-gi, python3-dbusmock).

Environment:
  SMPLASERD=path     the daemon to test (default: build/san/smplaserd when it is
                     at least as new as build/smplaserd, else build/smplaserd)
  SMPL_IT_VERBOSE=1  print the daemon's log after every test, not only failures
  SMPL_IT_SEED=n     the seed of the randomized tests
Arguments: test function names to run only those.
"""
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
import xml.etree.ElementTree as ET

import dbus
import dbus.mainloop.glib
from gi.repository import GLib

dbus.mainloop.glib.DBusGMainLoop(set_as_default=True)

TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
def _daemon_binary():
    """$SMPLASERD, else the sanitized build when it is at least as new as the plain one."""
    if os.environ.get('SMPLASERD'):
        return os.environ['SMPLASERD']
    plain = os.path.join(TOP, 'build', 'smplaserd')
    san = os.path.join(TOP, 'build', 'san', 'smplaserd')
    try:
        if os.path.getmtime(san) >= os.path.getmtime(plain):
            return san
    except OSError:
        pass
    return plain


DAEMON = _daemon_binary()


def _private_copy(path):
    """A copy of the daemon for this run: "make" rebuilding build/ meanwhile (another
    engineer, another suite) must not pull the binary from under the tests."""
    import atexit
    import tempfile as _tempfile
    for _ in range(20):
        fd, copy = _tempfile.mkstemp(prefix='smplaserd-')
        os.close(fd)
        try:
            shutil.copy2(path, copy)
            os.chmod(copy, 0o755)
            if subprocess.run([copy, '--version'], capture_output=True,
                              timeout=30).returncode == 0:
                atexit.register(os.unlink, copy)
                return copy
        except (OSError, subprocess.SubprocessError):
            pass
        os.unlink(copy)
        time.sleep(1)
    return path
XML = os.path.join(TOP, 'data', 'org.smplaser.Laser1.xml')

BUS_NAME = 'org.smplaser.Laser1'
ROOT = '/org/smplaser/Laser1'
UNIT1 = ROOT + '/unit/SIM00001'
MANAGER = 'org.smplaser.Laser1.Manager'
UNIT = 'org.smplaser.Laser1.Unit'
SESSION = 'org.smplaser.Laser1.Session'
SIMULATOR = 'org.smplaser.Laser1.Simulator'
PROPS = 'org.freedesktop.DBus.Properties'
ERR = 'org.smplaser.Laser1.Error.'

# Inside the clinical protocol and the simulated unit's limits.
GOOD_PARAMS = dbus.Dictionary({
    'wavelength_nm': dbus.UInt32(1064),
    'fluence_mj_cm2': dbus.UInt32(3000),
    'spot_um': dbus.UInt32(3000),
    'pulse_ps': dbus.UInt32(10000),
    'rate_mhz': dbus.UInt32(5000),
}, signature='sv')

BUS_CONFIG = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>{type}</type>
  <listen>unix:path={socket}</listen>
  <auth>EXTERNAL</auth>
  <limit name="max_replies_per_connection">2048</limit>
  <policy context="default">
    <allow user="*"/>
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
"""


def pump(seconds=0.0):
    """Run the GLib main loop for @seconds (signals are delivered)."""
    ctx = GLib.MainContext.default()
    end = time.monotonic() + seconds
    while True:
        while ctx.pending():
            ctx.iteration(False)
        if time.monotonic() >= end:
            return
        time.sleep(0.01)


def wait_until(cond, timeout=5.0, what='condition'):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        pump()
        value = cond()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError('timed out after %.1fs waiting for %s' % (timeout, what))


def expect_error(name, fn, *args, contains=()):
    """Call fn(*args); it must fail with org.smplaser.Laser1.Error.<name>."""
    try:
        fn(*args)
    except dbus.DBusException as e:
        got = e.get_dbus_name()
        msg = e.get_dbus_message() or ''
        if got != ERR + name:
            raise AssertionError('expected %s, got %s: %s' % (ERR + name, got, msg))
        for c in contains:
            if c not in msg:
                raise AssertionError('%s message %r does not mention %r' % (name, msg, c))
        return msg
    raise AssertionError('expected %s, the call succeeded' % (ERR + name))


class Env:
    """A private bus, a state directory and (once started) smplaserd."""

    def __init__(self, config='', bus_type='session'):
        self.tmp = tempfile.mkdtemp(prefix='smpl-it-')
        os.chmod(self.tmp, 0o755)
        self.bus_type = bus_type
        self.state_dir = os.path.join(self.tmp, 'state')
        self.config_path = os.path.join(self.tmp, 'smplaserd.conf')
        with open(self.config_path, 'w') as f:
            f.write(config)
        self.socket = os.path.join(self.tmp, 'bus')
        conf = os.path.join(self.tmp, 'bus.conf')
        with open(conf, 'w') as f:
            f.write(BUS_CONFIG.format(type=bus_type, socket=self.socket))
        self.bus_proc = subprocess.Popen(
            ['dbus-daemon', '--config-file=' + conf, '--nofork', '--print-address=1'],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
        self.address = self.bus_proc.stdout.readline().strip()
        if not self.address:
            raise RuntimeError('dbus-daemon did not start')
        self.daemon = None
        self.daemon_log = os.path.join(self.tmp, 'smplaserd.log')
        self.helpers = []
        self.bus = dbus.bus.BusConnection(self.address)

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb):
        if exc_type is not None or os.environ.get('SMPL_IT_VERBOSE'):
            for line in self.log().splitlines()[-60:]:
                print('# log: ' + line)
        rc = self.close()
        if exc_type is None:
            self.check_clean_exit(rc)
        return False

    def check_clean_exit(self, rc):
        """smplaserd stopped by SIGTERM exits 0, without sanitizer reports."""
        log = self.log()
        for bad in ('AddressSanitizer', 'LeakSanitizer', 'runtime error:'):
            if bad in log:
                raise AssertionError('sanitizer report in the daemon log:\n' + log[-3000:])
        if rc not in (None, 0):
            raise AssertionError('smplaserd exited with %s after SIGTERM:\n%s' % (rc, log[-2000:]))

    def env(self):
        e = dict(os.environ)
        e.pop('INVOCATION_ID', None)
        e.pop('NOTIFY_SOCKET', None)
        e['DBUS_SESSION_BUS_ADDRESS'] = self.address
        e['DBUS_SYSTEM_BUS_ADDRESS'] = self.address
        return e

    def daemon_args(self, sim=1):
        args = [DAEMON, '--config', self.config_path, '--state-dir', self.state_dir,
                '--sim=%d' % sim]
        if self.bus_type == 'session':
            args.append('--session')
        return args

    def start(self, sim=1, wait=True):
        log = open(self.daemon_log, 'a')
        self.daemon = subprocess.Popen(self.daemon_args(sim), env=self.env(),
                                       stdout=log, stderr=subprocess.STDOUT)
        log.close()
        if wait:
            wait_until(self._running, 10, 'smplaserd to run')
        return self.daemon

    def _running(self):
        if self.daemon.poll() is not None:
            raise AssertionError('smplaserd exited with %s:\n%s' %
                                 (self.daemon.returncode, self.log()))
        try:
            return self.manager_prop('State') == 'running'
        except dbus.DBusException:
            return False

    def run_to_exit(self, timeout=10):
        """Start smplaserd expecting it to refuse to start; returns (rc, output)."""
        p = subprocess.run(self.daemon_args(), env=self.env(), capture_output=True,
                           text=True, timeout=timeout)
        return p.returncode, p.stdout + p.stderr

    def kill(self, sig=signal.SIGKILL):
        self.daemon.send_signal(sig)
        self.daemon.wait(10)

    def log(self):
        try:
            with open(self.daemon_log) as f:
                return f.read()
        except OSError:
            return ''

    def close(self):
        for p in self.helpers:
            if p.poll() is None:
                p.terminate()
                p.wait(5)
        rc = None
        if self.daemon and self.daemon.poll() is None:
            self.daemon.terminate()
            try:
                rc = self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
                self.daemon.wait()
                rc = 'a hang (killed)'
        elif self.daemon and self.daemon.returncode != -signal.SIGKILL:
            rc = self.daemon.returncode
        for bus in [self.bus] + getattr(self, 'extra_buses', []):
            try:
                bus.close()
            except Exception:
                pass
        self.bus_proc.terminate()
        self.bus_proc.wait(5)
        shutil.rmtree(self.tmp, ignore_errors=True)
        return rc

    # --- client helpers -----------------------------------------------------

    def obj(self, path, bus=None):
        return (bus or self.bus).get_object(BUS_NAME, path, introspect=False)

    def iface(self, path, name, bus=None):
        return dbus.Interface(self.obj(path, bus), name)

    def manager(self, bus=None):
        return self.iface(ROOT, MANAGER, bus)

    def unit(self, path=UNIT1, bus=None):
        return self.iface(path, UNIT, bus)

    def sim(self, path=UNIT1, bus=None):
        return self.iface(path, SIMULATOR, bus)

    def session(self, path, bus=None):
        return self.iface(path, SESSION, bus)

    def prop(self, path, iface, name, bus=None):
        return self.iface(path, PROPS, bus).Get(iface, name)

    def manager_prop(self, name):
        return self.prop(ROOT, MANAGER, name)

    def unit_prop(self, name, path=UNIT1):
        return self.prop(path, UNIT, name)

    def session_prop(self, spath, name):
        return self.prop(spath, SESSION, name)

    def wait_unit_state(self, state, timeout=5.0, path=UNIT1):
        """Until the unit says @state (a unit plugged in again may not be back yet)."""
        def now():
            try:
                return str(self.unit_prop('State', path))
            except dbus.DBusException as e:
                return e.get_dbus_name()
        wait_until(lambda: now() == state, timeout, 'unit state %s' % state)

    def unit_published(self, path=UNIT1):
        """Does the unit's object have its Unit interface (as ObjectManager says)?"""
        objs = self.iface(ROOT, 'org.freedesktop.DBus.ObjectManager').GetManagedObjects()
        return UNIT in objs.get(dbus.ObjectPath(path), {})

    def wait_unit_gone(self, timeout=3.0, path=UNIT1):
        """A unit unplugged: its Unit interface goes away, as a real unit's does."""
        wait_until(lambda: not self.unit_published(path), timeout, 'the unit to go away')
        try:
            self.unit(path).Arm()
        except dbus.DBusException as e:
            assert e.get_dbus_name() in ('org.freedesktop.DBus.Error.UnknownObject',
                                         'org.freedesktop.DBus.Error.UnknownInterface',
                                         'org.freedesktop.DBus.Error.UnknownMethod'), e
        else:
            raise AssertionError('Arm on an unplugged unit succeeded')

    def history(self, patient):
        return list(self.manager().History(patient))

    def ready_session(self, patient='p-001', patch='crown', bus=None, params=None):
        """A session with patch, eyewear and parameters: everything but Arm."""
        spath = self.unit(bus=bus).StartSession(patient)
        self.session(spath, bus).SelectPatch(patch)
        self.session(spath, bus).ConfirmEyewear()
        self.unit(bus=bus).SetParameters(params or GOOD_PARAMS)
        return spath

    def ready_session_on(self, unit, patient, patch, bus=None, params=None):
        """ready_session() on the unit at path @unit."""
        spath = self.unit(unit, bus).StartSession(patient)
        self.session(spath, bus).SelectPatch(patch)
        self.session(spath, bus).ConfirmEyewear()
        self.unit(unit, bus).SetParameters(params or GOOD_PARAMS)
        return spath

    def arm_to_ready(self, bus=None):
        self.unit(bus=bus).Arm()
        self.wait_unit_state('ready', 6)

    def fire(self, seconds):
        """Hold the footswitch for @seconds; returns the pulses the unit counted."""
        before = int(self.unit_prop('ShotCount'))
        self.sim().SetFootswitch(True)
        pump(seconds)
        self.sim().SetFootswitch(False)
        pump(0.2)
        return int(self.unit_prop('ShotCount')) - before

    # --- the truth outside the daemon, and its records ----------------------

    def fired(self, serial='SIM00001'):
        """The shots the simulated unit fired, from its fired log (what it did,
        whatever the daemon recorded): a list of dicts shot, measured_uj, set_uj,
        wall_ms."""
        path = os.path.join(self.state_dir, 'sim-%s.fired' % serial)
        try:
            with open(path) as f:
                return [{k: int(v) for k, v in (kv.split('=') for kv in line.split())}
                        for line in f if line.strip()]
        except FileNotFoundError:
            return []

    def settle_records(self):
        """Until the daemon's records hold what happened so far: History reads its
        own writes (the daemon writes them in the background)."""
        try:
            self.manager().History('p-settle')
        except dbus.DBusException:
            pump(0.3)           # not allowed to ask: the writer's pace

    def records(self):
        """A read-only connection to the daemon's records (sqlite3), once they hold
        what happened so far."""
        import sqlite3
        if self.daemon and self.daemon.poll() is None:
            self.settle_records()
        db = sqlite3.connect('file:%s?mode=ro' % os.path.join(self.state_dir, 'records.db'),
                             uri=True, timeout=5)
        db.row_factory = sqlite3.Row
        return db

    def query(self, sql, *args):
        db = self.records()
        try:
            return [dict(r) for r in db.execute(sql, args)]
        finally:
            db.close()

    def recorded_shots(self, serial='SIM00001'):
        """Shot numbers of the unit's pulses in the records, in order (repeats kept)."""
        return [r['shot'] for r in self.query(
            'SELECT shot FROM pulses WHERE unit_serial = ? ORDER BY shot', serial)]

    def second_client(self):
        """Another connection to the same bus: a second client, not the owner."""
        bus = dbus.bus.BusConnection(self.address)
        self.extra_buses = getattr(self, 'extra_buses', []) + [bus]
        return bus

    def record_endpoints(self, spath, endpoint='whitening', bus=None):
        """The endpoint of every patch of the session whose treatment emitted
        without one (issue 16: the session selects another patch or ends only then)."""
        for patch in self.session_prop(spath, 'EndpointsMissing'):
            self.session(spath, bus).RecordEndpoint(patch, endpoint, '')

    def end_session(self, spath, notes='done', bus=None):
        """End a session as a technician does: the endpoints first."""
        self.record_endpoints(spath, bus=bus)
        self.session(spath, bus).End(notes)

    def treat(self, patient='p-001', patch='crown', seconds=0.6):
        """A whole treatment with pulses; returns (session path, pulses)."""
        spath = self.ready_session(patient, patch)
        self.arm_to_ready()
        pulses = self.fire(seconds)
        self.unit().Disarm()
        self.wait_unit_state('standby')
        self.end_session(spath)
        return spath, pulses


def interfaces_of(xml_text, prefix='org.smplaser.'):
    """{interface: {kind/name: description}} for our interfaces only."""
    out = {}
    for iface in ET.fromstring(xml_text).iter('interface'):
        name = iface.get('name')
        if not name.startswith(prefix):
            continue
        members = {}
        for m in iface:
            if m.tag == 'annotation':
                continue
            key = '%s %s' % (m.tag, m.get('name'))
            if m.tag == 'property':
                ann = sorted((a.get('name'), a.get('value')) for a in m.iter('annotation')
                             if a.get('name') == 'org.freedesktop.DBus.Property.EmitsChangedSignal')
                members[key] = (m.get('type'), m.get('access'), tuple(ann))
            else:
                members[key] = tuple((a.get('name'), a.get('type'),
                                      a.get('direction', 'in' if m.tag == 'method' else None))
                                     for a in m.findall('arg'))
        out[name] = members
    return out


# --- the records' hash chain (daemon/store-chain.h, docs/records-chain.md) ------
# An implementation of the documented encoding independent of the daemon's: a
# connection that writes audit or treatment rows needs the SQL functions the
# chain's triggers call, and the tests check that both agree.

CHAIN_TAG = 'smplaser-chain-1'
CHAIN_COLUMNS = {
    'audit': ['time_ms', 'kind', 'operator_uid', 'operator_name', 'unit_serial',
              'session_id', 'reason', 'detail'],
    'treatments': ['session_id', 'patient', 'patch', 'unit_serial', 'unit_firmware',
                   'operator_uid', 'operator_name', 'wavelength_nm', 'fluence_mj_cm2',
                   'spot_um', 'pulse_ps', 'rate_mhz', 'set_energy_uj', 'armed_ms',
                   'armed_rtc_s', 'end_ms', 'end_rtc_s', 'shot_at_arm', 'shot_at_end',
                   'pulse_count', 'pulses_recorded', 'energy_min_uj', 'energy_max_uj',
                   'energy_sum_uj', 'last_pulse_ms', 'outcome', 'emitting_ms'],
    # the clinical record (issue 16, schema step 8): each row once
    'endpoints': ['session_id', 'treatment_id', 'patient', 'patch', 'endpoint', 'note',
                  'time_ms', 'operator_uid', 'operator_name'],
    'follow_ups': ['patient', 'patch', 'time_ms', 'redness_resolved',
                   'pigment_remaining_pct', 'note', 'operator_uid', 'operator_name'],
    'adverse_events': ['follow_up_id', 'kind', 'holds'],
    'hold_reviews': ['patient', 'patch', 'time_ms', 'cleared_through', 'note',
                     'operator_uid', 'operator_name'],
}
CHAIN_MASKED_WHILE_OPEN = {'pulses_recorded', 'energy_min_uj', 'energy_max_uj',
                           'energy_sum_uj', 'last_pulse_ms'}


def _chain_enc(v):
    import struct
    if v is None:
        return b'\x00'
    if isinstance(v, int):
        return b'\x01' + struct.pack('>q', v)
    if isinstance(v, str):
        v = v.encode()
        return b'\x02' + struct.pack('>I', len(v)) + v
    if isinstance(v, bytes):
        return b'\x03' + struct.pack('>I', len(v)) + v
    raise ValueError('not chainable: %r' % (v,))


def chain_digest(table, row_id, *values):
    import hashlib
    cols = CHAIN_COLUMNS[table]
    assert len(values) == len(cols), (table, len(values))
    if table == 'treatments' and values[cols.index('outcome')] == 'open':
        values = [None if c in CHAIN_MASKED_WHILE_OPEN else v for c, v in zip(cols, values)]
    data = _chain_enc(CHAIN_TAG) + _chain_enc(table) + _chain_enc(row_id)
    return hashlib.sha256(data + b''.join(_chain_enc(v) for v in values)).digest()


def chain_link(prev, seq, digest):
    import hashlib
    import struct
    return hashlib.sha256(bytes(prev) + struct.pack('>q', seq) + bytes(digest)).digest()


def chain_functions(db):
    """Registers smpl_chain_digest() and smpl_chain_link() on a sqlite3 connection."""
    db.create_function('smpl_chain_digest', -1, chain_digest, deterministic=True)
    db.create_function('smpl_chain_link', 3, chain_link, deterministic=True)
    return db


# --- TAP runner ------------------------------------------------------------

TESTS = []


def main_with_preload(libraries):
    """main() for a suite that preloads @libraries (a list of (path, how to get it))
    into the daemon: LD_PRELOAD cannot work into an ASan binary, so the suite runs
    the plain build, and each library must exist; else one "not ok" says why."""
    problem = None
    for path, how in libraries:
        if not os.path.exists(path):
            problem = '%s is missing (%s)' % (path, how)
    libs = subprocess.run(['ldd', DAEMON], capture_output=True, text=True).stdout
    if not problem and 'libasan' in libs:
        problem = '%s is built with ASan: run the plain build/smplaserd' % DAEMON
    if problem:
        print('1..1')
        print('not ok 1 - %s' % problem)
        return 1
    return main()


def test(fn):
    TESTS.append(fn)
    return fn


def main():
    only = sys.argv[1:]
    selected = [t for t in TESTS if not only or t.__name__ in only]
    global DAEMON
    if not os.access(DAEMON, os.X_OK):
        print('1..1')
        print('not ok 1 - %s is not built' % DAEMON)
        return 1
    print('1..%d' % len(selected))
    print('# daemon: %s' % DAEMON)
    DAEMON = _private_copy(DAEMON)
    sys.stdout.flush()
    failed = 0
    for i, t in enumerate(selected, 1):
        name = t.__name__[len('test_'):] if t.__name__.startswith('test_') else t.__name__
        doc = (t.__doc__ or '').strip().splitlines()
        start = time.monotonic()
        try:
            r = t()
            if r == 'skip':
                print('ok %d - %s # SKIP' % (i, name))
            else:
                print('ok %d - %s (%.1fs)' % (i, name, time.monotonic() - start))
        except Exception:
            failed += 1
            print('not ok %d - %s' % (i, name))
            if doc:
                print('# ' + doc[0])
            for line in traceback.format_exc().splitlines():
                print('# ' + line)
        sys.stdout.flush()
    return 1 if failed else 0
