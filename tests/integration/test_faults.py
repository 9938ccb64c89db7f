#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Fault tests of smplaserd (docs/reliability.md): the records database's disk
full or read-only at start; the config missing or unreadable; and in every state
(session open, arming, ready, emitting): unplug, SIGKILL, SIGSTOP/SIGCONT, the
client vanishing; the unit's RTC jumping while armed.  Same harness as
test_daemon.py: a private bus, smplaserd --session --sim.

The disk-full and read-only tests mount a small tmpfs as the state directory
and need root (CAP_SYS_ADMIN); without it they are skipped, and say so.

Usage: tests/integration/test_faults.py [test_name...]   (TAP on stdout)
"""
import os
import signal
import subprocess
import sys
import time

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ERR, GOOD_PARAMS, Env, expect_error, main, pump, test, wait_until)  # noqa: E402


class Tmpfs:
    """A small tmpfs mounted at @path (created), unmounted at exit."""

    def __init__(self, path, size_kib):
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%dk,mode=0700' % size_kib,
                            'smpl-faults', path], capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.why = r.stderr.strip()

    def remount(self, mode):
        """Read-only or read-write again.  (Refused with EBUSY while a process has a
        file open for writing there: so only between two runs of the daemon.)"""
        subprocess.run(['mount', '-o', 'remount,' + mode, self.path], check=True)

    def fill(self):
        """Write a file until the disk is full; returns its path."""
        filler = os.path.join(self.path, 'filler')
        fd = os.open(filler, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            while os.write(fd, b'\0' * 4096) > 0:
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        return filler

    def close(self):
        if self.mounted:
            subprocess.run(['umount', '-l', self.path], capture_output=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


def try_treatment(env, patient, patch):
    """Start a session and try to arm and fire.  Returns (session path or None,
    armed, pulses the unit counted); any refusal is allowed, but must be one
    of the daemon's own errors, and a refused Arm must leave the unit disarmed."""
    try:
        spath = env.ready_session(patient, patch)
    except dbus.DBusException as e:
        assert e.get_dbus_name().startswith(ERR), e
        return None, False, 0
    try:
        env.arm_to_ready()
    except dbus.DBusException as e:
        assert e.get_dbus_name().startswith(ERR), e
        pump(0.2)
        assert env.unit_prop('State') == 'standby', env.unit_prop('State')
        return spath, False, 0
    pulses = env.fire(0.5)
    try:
        env.unit().Disarm()
    except dbus.DBusException:
        pass
    env.wait_unit_state('standby')
    return spath, True, pulses


def end_session(env, spath):
    if spath:
        try:
            env.end_session(spath, 'done')
        except dbus.DBusException as e:
            assert e.get_dbus_name().startswith(ERR), e


def recorded(env, patient):
    """{patch: (pulses, pulses_recorded, outcome)} from the daemon's History."""
    return {str(t['patch']): (int(t['pulses']), int(t['pulses_recorded']), str(t['outcome']))
            for t in env.history(patient)}


@test
def test_disk_full_never_arms_unrecorded_and_loses_nothing():
    """The state directory's disk full (a 16 MiB tmpfs, filled up): the daemon stays up;
    Arm is refused (the treatment cannot be committed); a disk filling while emitting
    disarms; refused StartSessions do not leave the unit blocked; once space is back
    every pulse the unit counted is in the records and the unit is usable."""
    with Env() as env:
        with Tmpfs(env.state_dir, 16384) as fs:
            if not fs.mounted:
                print('# cannot mount a tmpfs (%s): not tested here' % fs.why)
                return 'skip'
            env.start()
            env.treat('p-full', 'crown', 0.4)          # a record before the disk fills

            # 1. Full before Arm: nothing may emit without a committed treatment.
            spath = env.ready_session('p-full', 'mid-scalp')
            filler = fs.fill()
            shots = int(env.unit_prop('ShotCount'))
            try:
                env.unit().Arm()
                armed = True
            except dbus.DBusException as e:
                assert e.get_dbus_name() == ERR + 'DeviceFault', e
                armed = False
            pump(0.3)
            if armed:       # SQLite found room in its WAL: then the record must exist
                assert 'mid-scalp' in recorded(env, 'p-full'), 'armed without a record'
                env.unit().Disarm()
                env.wait_unit_state('standby')
            assert env.unit_prop('State') == 'standby', env.unit_prop('State')
            assert int(env.unit_prop('ShotCount')) == shots
            print('# full before Arm: %s' % ('armed (room in the WAL)' if armed else 'refused'))
            end_session(env, spath)

            # 2. Sessions refused while full, again and again.
            refused = 0
            for patch in ('left-temporal', 'right-temporal', 'occipital'):
                spath, armed, pulses = try_treatment(env, 'p-full', patch)
                assert not armed, 'armed on a full disk (%s, %d pulses)' % (patch, pulses)
                refused += spath is None
                end_session(env, spath)
            assert refused > 0, 'no StartSession was refused on a full disk'

            # 3. The disk fills while emitting: disarmed, pulses kept for later.
            os.unlink(filler)
            spath = env.ready_session('p-full', 'left-parietal')
            env.arm_to_ready()
            env.sim().SetFootswitch(True)
            wait_until(lambda: int(env.unit_prop('ShotCount')) > shots, 3, 'pulses')
            filler = fs.fill()
            wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 6,
                       'disarm when pulses cannot be committed')
            env.sim().SetFootswitch(False)
            fired = int(env.unit_prop('ShotCount')) - shots
            assert env.daemon.poll() is None, 'the daemon died on a full disk'

            # 4. Space is back: the records catch up, the unit is usable again.
            os.unlink(filler)
            end_session(env, spath)
            wait_until(lambda: recorded(env, 'p-full').get('left-parietal', (0, -1))[1]
                       == fired, 5, 'the %d pulses committed' % fired)
            wait_until(lambda: recorded(env, 'p-full')['left-parietal'][2] != 'open', 5,
                       'the treatment closed')
            pulses, rec, outcome = recorded(env, 'p-full')['left-parietal']
            assert pulses == fired, (pulses, rec, outcome, fired)
            print('# filled while emitting: %d pulses, all recorded, %s' % (fired, outcome))
            spath, armed, pulses = try_treatment(env, 'p-full2', 'crown')
            assert armed and pulses > 0, 'not usable after the disk had room again'
            end_session(env, spath)
            assert recorded(env, 'p-full2')['crown'][1] == pulses


@test
def test_disk_full_then_stopped_loses_nothing():
    """Issue 11.4: the disk fills while emitting, then the daemon stops (SIGTERM), or is
    killed (SIGKILL), before space returns.  The pulses the store could not take and the
    audit backlog were kept in the spill file (allocated at start, before the disk
    filled): started again with room, the daemon puts them into the records.  Judged by
    the unit's fired log: every pulse it fired is in the records, once."""
    for how in (signal.SIGTERM, signal.SIGKILL):
        with Env() as env:
            with Tmpfs(env.state_dir, 16384) as fs:
                if not fs.mounted:
                    print('# cannot mount a tmpfs (%s): not tested here' % fs.why)
                    return 'skip'
                env.start()
                assert os.path.getsize(os.path.join(env.state_dir, 'spill')) >= 4 << 20
                spath = env.ready_session('p-spill', 'crown')
                env.arm_to_ready()
                env.sim().HoldReports(True)     # the pulses' reports come after the fill
                env.sim().SetFootswitch(True)
                pump(0.6)
                env.sim().SetFootswitch(False)
                filler = fs.fill()
                env.sim().HoldReports(False)
                wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 6,
                           'disarm when pulses cannot be committed')
                pump(1.5)                       # a failed retry or two
                fired = [p['shot'] for p in env.fired()]
                assert fired, 'nothing fired'
                assert len(env.recorded_shots()) < len(fired), 'the disk was not full'
                env.kill(how)
                if how == signal.SIGTERM:
                    assert env.daemon.returncode == 0, env.daemon.returncode
                os.unlink(filler)
                env.start()
                wait_until(lambda: env.recorded_shots() == fired, 5,
                           'the spilled pulses in the records (fired %s, recorded %s)' % (
                               fired, env.recorded_shots()))
                audit = env.query("SELECT * FROM audit WHERE kind IN ('disarm', 'fault')"
                                  " AND reason = 'fault-latched'")
                assert audit, 'the disarm for the failing store is not in the audit trail'
                assert len(audit) == len({(a['time_ms'], a['detail']) for a in audit}), audit
                print('# %s while full: %d pulses fired, all recorded after the restart' % (
                    signal.Signals(how).name, len(fired)))
                del spath


@test
def test_starts_again_on_a_disk_that_filled_while_it_was_stopped():
    """A clean stop, then the disk fills (another program, a log), then the daemon starts:
    it starts (its records readable, the unit visible), and it refuses to arm; once space
    is back it arms and records.  (It failed to start with "disk I/O error": the clean
    stop had deleted the -wal and -shm, and SQLite could not create the -shm again on
    the full disk.)"""
    with Env() as env:
        with Tmpfs(env.state_dir, 16384) as fs:
            if not fs.mounted:
                print('# cannot mount a tmpfs (%s): not tested here' % fs.why)
                return 'skip'
            env.start()
            env.treat('p-refill', 'crown', 0.3)
            env.kill(signal.SIGTERM)
            assert env.daemon.returncode == 0, env.daemon.returncode
            env.daemon = None
            filler = fs.fill()
            env.start()
            assert env.manager_prop('State') == 'running'
            assert [str(t['patch']) for t in env.history('p-refill')] == ['crown']
            shots = int(env.unit_prop('ShotCount'))
            try:        # the session's own record may not fit either
                env.ready_session('p-refill2', 'mid-scalp')
            except dbus.DBusException as e:
                assert e.get_dbus_name() == ERR + 'DeviceFault', e
            expect_error('DeviceFault', env.unit().Arm)
            pump(0.3)
            assert env.unit_prop('State') in ('standby', 'fault'), env.unit_prop('State')
            assert int(env.unit_prop('ShotCount')) == shots
            os.unlink(filler)
            env.kill(signal.SIGTERM)
            env.daemon = None
            env.start()
            env.treat('p-refill2', 'mid-scalp', 0.3)
            assert 'mid-scalp' in recorded(env, 'p-refill2')


@test
def test_state_dir_read_only_at_start():
    """A read-only state directory whose database cannot be written at start: the daemon
    refuses to start (it cannot keep records) and says why, or it starts and refuses to
    arm; it never arms without a record."""
    with Env() as env:
        with Tmpfs(env.state_dir, 8192) as fs:
            if not fs.mounted:
                print('# cannot mount a tmpfs (%s): not tested here' % fs.why)
                return 'skip'
            env.start()
            env.kill(signal.SIGTERM)
            env.daemon = None
            fs.remount('ro')
            env.start(wait=False)
            end = time.monotonic() + 10
            running = False
            while time.monotonic() < end and env.daemon.poll() is None:
                try:
                    running = env.manager_prop('State') == 'running'
                except dbus.DBusException:
                    pass
                if running:
                    break
                time.sleep(0.1)
            if not running:
                assert env.daemon.poll() not in (None, 0), 'neither started nor refused'
                log = env.log()
                assert 'records' in log or 'read-only' in log.lower(), log[-2000:]
                print('# refused to start: ' + log.strip().splitlines()[-1][:200])
                env.daemon = None
            else:
                env.ready_session('p-ro2', 'crown')
                expect_error('DeviceFault', env.unit().Arm)
                pump(0.3)
                assert env.unit_prop('State') == 'standby'
                print('# started read-only, arming refused')
            fs.remount('rw')


@test
def test_config_missing_starts_on_defaults():
    """No config file: the daemon starts on the built-in defaults (42-day cooldown) and
    says so in its log."""
    with Env() as env:
        os.unlink(env.config_path)
        env.start()
        log = env.log()
        assert env.config_path in log and 'default' in log.lower(), log[-2000:]
        env.treat('p-nocfg', 'crown', 0.3)
        eligible, _, reason = env.manager().CheckPatch('p-nocfg', 'crown')
        assert not eligible and '42' in reason, reason


@test
def test_config_unreadable_refused():
    """A config that exists but cannot be read (a directory in its place): refused at
    start, the daemon does not take the bus name."""
    with Env() as env:
        os.unlink(env.config_path)
        os.mkdir(env.config_path)
        rc, out = env.run_to_exit()
        assert rc != 0, 'started with an unreadable config:\n' + out
        assert env.config_path in out, out
        try:
            env.bus.get_name_owner('org.smplaser.Laser1')
            raise AssertionError('the bus name was taken')
        except dbus.DBusException:
            pass


# --- a fault in every state ----------------------------------------------------

STATES = ('session', 'arming', 'ready', 'emitting')
PATCH_OF = {'session': 'crown', 'arming': 'mid-scalp', 'ready': 'occipital',
            'emitting': 'frontal-hairline'}


def bring_to(env, state, patient, bus=None):
    """A session on unit 1 in @state: 'session' (open, ready to arm, not armed),
    'arming' (Arm sent, emission delay running), 'ready', 'emitting' (footswitch
    held, pulses counted).  Returns the session path."""
    spath = env.ready_session(patient, PATCH_OF[state], bus=bus)
    if state == 'session':
        return spath
    env.unit(bus=bus).Arm()
    if state == 'arming':
        wait_until(lambda: env.unit_prop('State') == 'arming', 1, 'arming')
        return spath
    env.wait_unit_state('ready', 6)
    if state == 'emitting':
        shots = int(env.unit_prop('ShotCount'))
        env.sim().SetFootswitch(True)
        wait_until(lambda: int(env.unit_prop('ShotCount')) >= shots + 2, 3, 'pulses')
    return spath


def check_records_closed(env, patient, shots_before):
    """No treatment left open or unknown, and every pulse the unit counted is in a
    treatment's count.  Every pulse is recorded one by one, but for a pulse whose report
    was lost with the unit: a reconciled treatment counts it from the unit's counter
    (see test_unplug_in_every_state).  Returns the unit's pulses."""
    shots = int(env.unit_prop('ShotCount')) - shots_before
    history = env.history(patient)
    assert all(str(t['outcome']) not in ('open', 'unknown') for t in history), history
    total = sum(int(t['pulses']) for t in history)
    assert total == shots, (total, shots, history)
    for t in history:
        lost = int(t['pulses']) - int(t['pulses_recorded'])
        assert lost == 0 or (str(t['outcome']) == 'reconciled' and 0 < lost <= 1), t
        if lost:
            print('# %s: %d pulse report(s) lost with the unit, counted by reconciliation'
                  % (patient, lost))
    return shots


@test
def test_unplug_in_every_state():
    """Unplug with a session open, while arming, ready and emitting: as with a real unit
    the unit's object goes away (InterfacesRemoved) with its session, the treatment is
    closed with every pulse reported, and after a replug the unit is back at the same
    path in standby, unarmed, and fires nothing more.

    A pulse emitted just before the unplug whose report had not reached the daemon yet
    is counted by the unit: the treatment, closed as unknown with the counter unread, is
    reconciled from the counter when the unit comes back, so the unit's count and the
    records agree exactly."""
    with Env() as env:
        env.start()
        for state in STATES:
            patient = 'p-unplug-' + state
            before = int(env.unit_prop('ShotCount'))
            spath = bring_to(env, state, patient)
            env.sim().Unplug()
            env.wait_unit_gone()
            env.sim().Replug()
            env.wait_unit_state('standby', 3)
            env.sim().SetFootswitch(False)
            pump(0.5)
            assert env.unit_prop('State') == 'standby', (state, env.unit_prop('State'))
            pulses = check_records_closed(env, patient, before)
            print('# unplug while %s: %d pulses, all in the records' % (state, pulses))
            if state in ('session', 'arming'):
                assert pulses == 0, (state, pulses)
            # As with a real unit, the session went with it.
            try:
                env.session(spath).End('unplugged')
                raise AssertionError('the session outlived its unit (%s)' % state)
            except dbus.DBusException as e:
                assert e.get_dbus_name() == 'org.freedesktop.DBus.Error.UnknownObject', e


@test
def test_pulse_report_lost_with_the_cable_is_reconciled():
    """The unit fires a pulse whose report never reaches the host, then the cable goes:
    the treatment is unknown while the unit is away (it counts as emitted), and when
    the unit comes back its shot counter reconciles it, the lost pulse included."""
    with Env() as env:
        env.start()
        before = int(env.unit_prop('ShotCount'))
        env.ready_session('p-lost', 'crown')
        env.arm_to_ready()
        env.sim().DropNextReply('pulse-report')
        env.sim().SetFootswitch(True)
        wait_until(lambda: int(env.unit_prop('ShotCount')) >= before + 3, 3, 'pulses')
        env.sim().SetFootswitch(False)
        env.sim().Unplug()
        env.wait_unit_gone()
        (t,) = env.history('p-lost')
        assert str(t['outcome']) == 'unknown', dict(t)
        assert not env.manager().CheckPatch('p-lost', 'crown')[0], 'unknown must count'
        recorded = int(t['pulses_recorded'])
        env.sim().Replug()
        env.wait_unit_state('standby', 3)
        fired = int(env.unit_prop('ShotCount')) - before
        (t,) = env.history('p-lost')
        assert str(t['outcome']) == 'reconciled', dict(t)
        assert int(t['pulses']) == fired and recorded == fired - 1, (fired, recorded, dict(t))
        assert not env.manager().CheckPatch('p-lost', 'crown')[0], 'it emitted'
        print('# %d pulses fired, %d reported, the treatment counts %d' %
              (fired, recorded, int(t['pulses'])))


@test
def test_sigkill_in_every_state():
    """kill -9 with a session open, while arming, ready and emitting, then restart: the
    unit is in standby, no treatment or session stays open, every pulse counted is
    recorded, and a patch that emitted is in its cooldown."""
    with Env() as env:
        env.start()
        for state in STATES:
            patient = 'p-kill-' + state
            before = int(env.unit_prop('ShotCount'))
            bring_to(env, state, patient)
            env.kill(signal.SIGKILL)
            env.start()
            env.sim().SetFootswitch(False)
            assert env.unit_prop('State') == 'standby', (state, env.unit_prop('State'))
            assert env.unit_prop('Session') == '/', env.unit_prop('Session')
            # The kill may land between a pulse and its commit: reconciliation from
            # the unit's counter accounts for it (pulses), even if not in pulse rows.
            shots = int(env.unit_prop('ShotCount'))
            history = env.history(patient)
            assert all(str(t['outcome']) != 'open' for t in history), history
            assert sum(int(t['pulses']) for t in history) == shots - before, (history, shots)
            emitted = shots > before
            eligible, _, reason = env.manager().CheckPatch(patient, PATCH_OF[state])
            assert eligible != emitted, (state, emitted, reason)
            print('# SIGKILL while %s: %d pulses, reconciled' % (state, shots - before))


@test
def test_sigstop_in_every_state():
    """SIGSTOP for 2 s (4 heartbeat periods) with a session open, while arming, ready and
    emitting, then SIGCONT: the unit is not left armed on stale heartbeats (the simulated
    unit's watchdog or the daemon disarms it), every pulse counted is recorded, and the
    daemon answers.  (--sim: the unit is inside the stopped process, so this shows the
    recovery after the stop; the unit's own watchdog against a stopped or dead host is
    shown with the gadget in tests/vm/guest/11-unit.sh and 41-daemon-libusb.sh.)"""
    with Env() as env:
        env.start()
        for state in STATES:
            patient = 'p-stop-' + state
            before = int(env.unit_prop('ShotCount'))
            spath = bring_to(env, state, patient)
            env.daemon.send_signal(signal.SIGSTOP)
            time.sleep(2.0)
            env.daemon.send_signal(signal.SIGCONT)
            if state == 'session':
                pump(0.5)
                assert env.unit_prop('State') == 'standby', env.unit_prop('State')
            else:
                wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 3,
                           'disarm after SIGCONT (state %s)' % env.unit_prop('State'))
            env.sim().SetFootswitch(False)
            after = env.unit_prop('State')
            wait_until(lambda: all(str(t['outcome']) != 'open'
                                   for t in env.history(patient)), 3, 'treatment closed')
            pulses = check_records_closed(env, patient, before)
            print('# SIGSTOP while %s: then %s, %d pulses, all recorded' % (state, after, pulses))
            if after == 'fault':
                env.sim().ClearFaultCause()
                env.unit().AcknowledgeFault()
                env.wait_unit_state('standby')
            try:
                try:
                    env.record_endpoints(spath)   # issue 16: before End
                except dbus.DBusException:
                    pass
                env.session(spath).End('stopped')
            except dbus.DBusException as e:
                assert e.get_dbus_name().startswith(ERR), e


@test
def test_client_vanishing_in_every_state():
    """The client that opened the session disconnects with the session open, while
    arming, ready and emitting: the unit disarms (or stays disarmed), the treatment is
    closed with every pulse, and another client can start a session afterwards."""
    import dbus.bus
    with Env() as env:
        env.start()
        for state in STATES:
            patient = 'p-gone-' + state
            before = int(env.unit_prop('ShotCount'))
            client = dbus.bus.BusConnection(env.address)
            bring_to(env, state, patient, bus=client)
            client.close()
            wait_until(lambda: env.unit_prop('State') == 'standby', 3,
                       'standby after the client left (%s)' % env.unit_prop('State'))
            env.sim().SetFootswitch(False)
            wait_until(lambda: env.unit_prop('Session') == '/', 3, 'the session closed')
            pulses = check_records_closed(env, patient, before)
            print('# client gone while %s: %d pulses, all recorded' % (state, pulses))
        spath = env.unit().StartSession('p-gone-after')
        env.end_session(spath, 'fine')


@test
def test_rtc_skew_while_ready_blocks_the_next_arm():
    """The unit's RTC jumps an hour while READY (beyond rtc_max_skew_s, 300 s).  S8 blocks
    arming: the treatment under way may finish (the daemon reads the RTC at probe and at
    Arm, not from status reports), but the next Arm is refused with ClockUnreliable and
    nothing is recorded for it; with the RTC right again, arming works."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-rtc', 'crown')
        env.arm_to_ready()
        env.sim().SetRtcSkew(dbus.Int64(3600))
        pump(1.0)
        print('# RTC skewed while ready: unit %s' % env.unit_prop('State'))
        if env.unit_prop('State') != 'standby':
            env.unit().Disarm()
            env.wait_unit_state('standby')
        env.end_session(spath, 'done')
        # Under that clock no eligibility is answered (it could say "eligible")
        # and nothing arms.
        spath = env.unit().StartSession('p-rtc')
        expect_error('ClockUnreliable', env.session(spath).SelectPatch, 'occipital',
                     contains=("off the unit's RTC",))
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(GOOD_PARAMS)
        expect_error('ClockUnreliable', env.unit().Arm)
        pump(0.3)
        assert env.unit_prop('State') == 'standby', env.unit_prop('State')
        assert 'occipital' not in recorded(env, 'p-rtc'), recorded(env, 'p-rtc')
        env.sim().SetRtcSkew(dbus.Int64(0))
        env.session(spath).SelectPatch('occipital')
        wait_until(lambda: _arms(env), 3, 'arming with the RTC right again')
        env.unit().Disarm()
        env.wait_unit_state('standby')


def _arms(env):
    try:
        env.unit().Arm()
        return True
    except dbus.DBusException as e:
        assert e.get_dbus_name() == ERR + 'ClockUnreliable', e
        return False


if __name__ == '__main__':
    sys.exit(main())
