#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Calibration (S1: "calibration is valid"), end to end through the bus.

The simulated unit's calibration is switched with Simulator.SetCalibration (and
"smplaserctl sim calibration"); the unit then reports SMPL_SF_CALIBRATED or not.
Checked as a client sees it: Arm refused with CalibrationExpired, the daemon
disarming a unit that is arming, READY or emitting when its calibration expires,
every pulse recorded, the audit trail, and arming again once it is valid.

Usage: tests/integration/test_calibration.py [test_name...]   (TAP on stdout)
"""
import os
import sqlite3
import subprocess
import sys

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ERR, GOOD_PARAMS, TOP, Env, expect_error, main, pump,  # noqa: E402
                     test, wait_until)

CTL = os.environ.get('SMPLASERCTL', os.path.join(TOP, 'build', 'smplaserctl'))

# At 10 Hz a unit still firing after the disarm shows it within a second.
FAST_PARAMS = dbus.Dictionary(dict(GOOD_PARAMS, rate_mhz=dbus.UInt32(10000)), signature='sv')

# The unit reports a change within its report period (8 ms) and the daemon
# kicks its loop at once; this leaves room on a loaded, sanitized host.
REPORT_SETTLE_S = 0.2


def audit_rows(env, kind):
    """(operator_uid, reason, detail) of the audit records of @kind, in order."""
    env.settle_records()
    db = sqlite3.connect('file:%s/records.db?mode=ro' % env.state_dir, uri=True)
    try:
        return db.execute('SELECT operator_uid, reason, detail FROM audit WHERE kind = ? '
                          'ORDER BY id', (kind,)).fetchall()
    finally:
        db.close()


def expire_calibration(env):
    env.sim().SetCalibration(False)
    pump(REPORT_SETTLE_S)


def restore_calibration(env):
    env.sim().SetCalibration(True)
    pump(REPORT_SETTLE_S)


def assert_disarmed_for_calibration(env, patient, spath):
    """After the daemon's disarm: STANDBY, no further pulse, the treatment closed
    with every pulse recorded, the disarm audited with its reason.  Returns the
    treatment's pulses."""
    env.wait_unit_state('standby', 2)
    shots = int(env.unit_prop('ShotCount'))
    pump(1.0)                                   # ten periods at 10 Hz
    assert int(env.unit_prop('ShotCount')) == shots, 'a pulse after the disarm'
    assert env.unit_prop('State') == 'standby', env.unit_prop('State')
    h = env.history(patient)
    assert len(h) == 1, h
    t = h[0]
    assert t['outcome'] == 'interrupted', t
    assert t['pulses'] == t['pulses_recorded'] == shots, (shots, t)
    assert env.session_prop(spath, 'PulseCount') == shots
    disarms = audit_rows(env, 'disarm')
    assert disarms, 'no disarm in the audit trail'
    uid, reason, detail = disarms[-1]
    assert reason == 'calibration-expired', disarms
    assert 'calibration' in (detail or ''), disarms
    assert uid is None, 'the daemon disarmed, not a user: %r' % (disarms,)
    return shots


@test
def test_expired_in_standby_refuses_arm():
    """Session, patch, eyewear and parameters all set, calibration expired: Arm is refused
    with CalibrationExpired, nothing arms, no treatment opens, the refusal is audited."""
    with Env() as env:
        env.start()
        env.ready_session('p-cal1', 'crown')
        expire_calibration(env)
        msg = expect_error('CalibrationExpired', env.unit().Arm, contains=('calibration',))
        pump(0.3)
        assert env.unit_prop('State') == 'standby', env.unit_prop('State')
        assert env.history('p-cal1') == [], 'a refused arm opened a treatment'
        # The footswitch on the refused unit fires nothing.
        env.sim().SetFootswitch(True)
        pump(0.5)
        env.sim().SetFootswitch(False)
        assert int(env.unit_prop('ShotCount')) == 0
        refused = audit_rows(env, 'refused')
        assert (os.getuid(), 'CalibrationExpired', msg) in refused, refused
        assert audit_rows(env, 'arm') == [], 'an arm was audited'


@test
def test_valid_again_arms():
    """Calibration expired, then valid again: Arm succeeds and the unit fires."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-cal2', 'crown')
        expire_calibration(env)
        expect_error('CalibrationExpired', env.unit().Arm)
        restore_calibration(env)
        env.arm_to_ready()
        assert env.fire(0.6) >= 1
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')
        h = env.history('p-cal2')
        assert len(h) == 1 and h[0]['outcome'] == 'completed' and h[0]['pulses'] >= 1, h


@test
def test_expires_while_arming_disarms():
    """Calibration expiring during the emission delay (ARMING): disarmed, READY never
    reached; valid again, the same patch arms (nothing was emitted)."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-cal3', 'crown')
        env.unit().Arm()
        env.wait_unit_state('arming', 1)
        expire_calibration(env)
        assert_disarmed_for_calibration(env, 'p-cal3', spath)
        pump(2.0)                                   # past the emission delay
        assert env.unit_prop('State') == 'standby', 'READY after the disarm'
        restore_calibration(env)
        env.arm_to_ready()
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')


@test
def test_expires_while_ready_disarms():
    """Calibration expiring while READY: the daemon disarms, the footswitch then fires
    nothing; valid again, the unit arms again."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-cal4', 'crown', params=FAST_PARAMS)
        env.arm_to_ready()
        expire_calibration(env)
        assert_disarmed_for_calibration(env, 'p-cal4', spath)
        env.sim().SetFootswitch(True)
        pump(0.5)
        env.sim().SetFootswitch(False)
        assert int(env.unit_prop('ShotCount')) == 0, 'pulses after the disarm'
        expect_error('CalibrationExpired', env.unit().Arm)
        restore_calibration(env)
        env.arm_to_ready()                          # no emission: the patch is eligible
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')


@test
def test_expires_while_emitting_disarms():
    """Calibration expiring with the footswitch held (EMITTING at 10 Hz): the daemon
    disarms, no pulse follows, every pulse is recorded; valid again, the session
    resumes the patch."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-cal5', 'crown', params=FAST_PARAMS)
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: int(env.unit_prop('ShotCount')) >= 3, 3, 'pulses')
        expire_calibration(env)
        try:
            shots = assert_disarmed_for_calibration(env, 'p-cal5', spath)
        finally:
            env.sim().SetFootswitch(False)
        assert shots >= 3, shots
        expect_error('CalibrationExpired', env.unit().Arm)
        restore_calibration(env)
        env.arm_to_ready()                          # the same session resumes the patch
        assert env.fire(0.5) >= 1
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')
        h = env.history('p-cal5')
        assert len(h) == 2 and all(t['pulses'] == t['pulses_recorded'] for t in h), h
        assert sum(t['pulses'] for t in h) == int(env.unit_prop('ShotCount')), h


@test
def test_set_calibration_on_unplugged_unit():
    """SetCalibration on an unplugged unit: Disconnected, no crash; the daemon lives on."""
    with Env() as env:
        env.start()
        env.sim().Unplug()
        env.wait_unit_gone()
        expect_error('Disconnected', env.sim().SetCalibration, False)
        env.sim().Replug()
        env.wait_unit_state('standby', 3)


def ctl(env, *args):
    e = env.env()
    e.pop('NO_COLOR', None)
    return subprocess.run([CTL, '--session'] + list(args), env=e, capture_output=True,
                          text=True, timeout=30, stdin=subprocess.DEVNULL)


@test
def test_smplaserctl_calibration_and_arm():
    """smplaserctl sim calibration expired, then arm: exit 4 with the daemon's message;
    valid again: arm exits 0; a bad argument exits 2 and changes nothing."""
    with Env() as env:
        env.start()
        for args in (['params', 'set', 'wavelength_nm=1064', 'fluence_mj_cm2=3000',
                      'spot_um=3000', 'pulse_ps=10000', 'rate_mhz=5000'],
                     ['session', 'start', 'p-cal6'], ['session', 'patch', 'crown'],
                     ['session', 'eyewear']):
            p = ctl(env, *args)
            assert p.returncode == 0, (args, p.stdout, p.stderr)
        p = ctl(env, 'sim', 'calibration', 'expired')
        assert p.returncode == 0 and 'expired' in p.stdout, (p.returncode, p.stdout, p.stderr)
        pump(REPORT_SETTLE_S)
        p = ctl(env, 'arm')
        assert p.returncode == 4, (p.returncode, p.stdout, p.stderr)
        # The daemon's own words, as the audit trail kept them.
        daemon_msg = [d for _, r, d in audit_rows(env, 'refused') if r == 'CalibrationExpired']
        assert daemon_msg and daemon_msg[-1] in p.stderr, (daemon_msg, p.stderr)
        p = ctl(env, '--json', 'arm')
        assert p.returncode == 4 and ERR + 'CalibrationExpired' in p.stdout, p.stdout
        assert env.unit_prop('State') == 'standby'
        for bad in (['sim', 'calibration', 'maybe'], ['sim', 'calibration'],
                    ['sim', 'calibration', 'valid', 'now']):
            p = ctl(env, *bad)
            assert p.returncode == 2, (bad, p.returncode, p.stderr)
            assert 'calibration' in p.stderr and 'valid' in p.stderr, (bad, p.stderr)
        pump(REPORT_SETTLE_S)
        assert ctl(env, 'arm').returncode == 4, 'a bad argument changed the calibration'
        p = ctl(env, 'sim', 'calibration', 'valid')
        assert p.returncode == 0 and 'valid' in p.stdout, (p.stdout, p.stderr)
        pump(REPORT_SETTLE_S)
        p = ctl(env, 'arm')
        assert p.returncode == 0, (p.returncode, p.stdout, p.stderr)
        env.wait_unit_state('ready', 6)
        assert ctl(env, 'disarm').returncode == 0
        env.wait_unit_state('standby')
        assert ctl(env, 'session', 'end').returncode == 0


if __name__ == '__main__':
    sys.exit(main())
