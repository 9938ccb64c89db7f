#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The host clock jumping back and forward under a running smplaserd (DESIGN S8).

The real daemon runs with its wall clock faked by libfaketime (Debian package
libfaketime): CLOCK_REALTIME, time() and gettimeofday() are shifted by the
offset written to a file, which the test rewrites while the daemon runs
(FAKETIME_TIMESTAMP_FILE with FAKETIME_NO_CACHE=1).  CLOCK_MONOTONIC stays real
(FAKETIME_DONT_FAKE_MONOTONIC=1), and timerfd_settime/gettime go to the kernel
unchanged through build/tests/timerfd-passthrough.so, preloaded ahead of
libfaketime (which would otherwise shift sd-event's CLOCK_MONOTONIC timers by
the offset and stall the daemon's loop: see timerfd-passthrough.c).

The simulated unit's RTC does not jump: the model sets it from time() once,
when the daemon starts (the offset is then +0), and advances it with
CLOCK_MONOTONIC (sim/model.c rtc_at), like a battery-backed RTC that kept the
true time while the host's clock was set wrong.

LD_PRELOAD does not work with an ASan binary: this suite runs the plain
build/smplaserd ("make all"), not build/san/smplaserd.

Usage: tests/integration/test_clock.py [test_name...]   (TAP on stdout)
"""
import calendar
import os
import re
import signal
import sqlite3
import sys
import time

import dbus

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_DIR = os.path.abspath(os.path.join(HERE, '..', '..'))
os.environ.setdefault('SMPLASERD', os.path.join(TOP_DIR, 'build', 'smplaserd'))

sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import Env, expect_error, pump, test, wait_until  # noqa: E402

LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
PASSTHROUGH = os.path.join(TOP_DIR, 'build', 'tests', 'timerfd-passthrough.so')

# The daemon's periodic clock check runs every heartbeat_ms / 2 (250 ms by
# default: daemon/unit.c on_heartbeat); a disarm must come within a few of them.
CHECK_PERIOD_S = 0.25
DISARM_BOUND_S = 2.0

DAY_S = 86400

# At 10 Hz a pulse after the disarm shows within half a second.
FAST_PARAMS = dbus.Dictionary(dict(harness.GOOD_PARAMS, rate_mhz=dbus.UInt32(10000)),
                              signature='sv')


class ClockEnv(Env):
    """Env whose smplaserd reads a wall clock shifted by set_offset()."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.offset_file = os.path.join(self.tmp, 'faketime')
        self.set_offset(0)

    def set_offset(self, seconds):
        """Shift the daemon's wall clock to the true time + @seconds, at once."""
        new = self.offset_file + '.new'
        with open(new, 'w') as f:
            f.write('%+d\n' % seconds)
        os.rename(new, self.offset_file)       # never a half-written file

    def env(self):
        e = super().env()
        e['LD_PRELOAD'] = PASSTHROUGH + ':' + LIBFAKETIME
        e['FAKETIME_TIMESTAMP_FILE'] = self.offset_file
        e['FAKETIME_NO_CACHE'] = '1'
        e['FAKETIME_DONT_FAKE_MONOTONIC'] = '1'
        return e

    def db(self):
        self.settle_records()
        return sqlite3.connect('file:%s/records.db?mode=ro' % self.state_dir, uri=True)

    def rows(self, sql, args=()):
        db = self.db()
        try:
            return db.execute(sql, args).fetchall()
        finally:
            db.close()

    def treatments(self):
        return self.rows('SELECT * FROM treatments ORDER BY id')

    def audit(self, kind):
        """(operator_uid, reason, detail) of the audit records of @kind, in order."""
        return self.rows('SELECT operator_uid, reason, detail FROM audit WHERE kind = ? '
                         'ORDER BY id', (kind,))

    def newest_record_ms(self):
        """The newest time in the records, whatever their kind."""
        return self.rows(
            'SELECT max(t) FROM ('
            ' SELECT max(last_seen_ms) AS t FROM units'
            ' UNION ALL SELECT max(max(start_ms, coalesce(end_ms, start_ms))) FROM sessions'
            ' UNION ALL SELECT max(max(armed_ms, coalesce(end_ms, armed_ms),'
            '   coalesce(last_pulse_ms, armed_ms))) FROM treatments'
            ' UNION ALL SELECT max(time_ms) FROM audit)')[0][0]

    def newest_arming_ms(self):
        """The newest arming: what witnesses the clock (store_newest_record_ms)."""
        return self.rows('SELECT max(armed_ms) FROM treatments')[0][0]

    def record_counts(self):
        return {t: self.rows('SELECT count(*) FROM %s' % t)[0][0]
                for t in ('units', 'sessions', 'treatments', 'pulses', 'audit')}

    def shots(self):
        return int(self.unit_prop('ShotCount'))


def time_to_standby(env, bound=DISARM_BOUND_S):
    """Seconds until the unit leaves READY for STANDBY (polled every ~5 ms)."""
    start = time.monotonic()
    while time.monotonic() - start < bound:
        pump()
        if env.unit_prop('State') == 'standby':
            return time.monotonic() - start
        time.sleep(0.005)
    raise AssertionError('still %s %.1f s after the clock jump' %
                         (env.unit_prop('State'), bound))


def assert_no_pulse(env, seconds=0.5):
    """The footswitch held for @seconds: the unit counts no pulse, stays in STANDBY."""
    before = env.shots()
    env.sim().SetFootswitch(True)
    pump(seconds)
    env.sim().SetFootswitch(False)
    pump(0.1)
    assert env.shots() == before, 'the unit fired: %d pulses' % (env.shots() - before)
    assert env.unit_prop('State') == 'standby', env.unit_prop('State')


def utc(epoch_s):
    return time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime(epoch_s))


def clocks_named(message):
    """(host clock, unit RTC) in seconds since the epoch, from a clock-rtc-skew message:
    "host clock (2026-11-26 03:11:52 UTC) is 7200 s off the unit's RTC (2026-...)"."""
    found = re.findall(r'\((\d{4}-\d\d-\d\d \d\d:\d\d:\d\d) UTC\)', message)
    assert len(found) == 2, message
    return [calendar.timegm(time.strptime(t, '%Y-%m-%d %H:%M:%S')) for t in found]


@test
def test_forward_jump_while_ready_disarms():
    """+2 h while READY: disarmed by the periodic check, audited with the clock reason,
    Arm refused (ClockUnreliable), no pulse.  Back at the true time Arm is allowed again:
    the records written during the jump do not witness the clock, only armings do (a
    jump would otherwise lock arming out until the true time caught up with them)."""
    with ClockEnv() as env:
        env.start()
        env.ready_session('p-c01', 'crown')
        env.arm_to_ready()
        env.set_offset(2 * 3600)
        took = time_to_standby(env)
        print('# forward jump +2 h while READY: disarmed after %.0f ms '
              '(periodic check every %.0f ms)' % (took * 1000, CHECK_PERIOD_S * 1000))
        disarms = env.audit('disarm')
        assert disarms, 'no disarm in the audit trail'
        uid, reason, detail = disarms[-1]
        assert reason == 'clock-rtc-skew', disarms
        assert uid is None, 'the daemon disarmed, not a user: %r' % (disarms,)
        # The message names both clocks: the faked host clock (+2 h) and the
        # unit's RTC, which kept the true time.
        host, rtc = clocks_named(detail)
        assert abs(rtc - time.time()) < 10, 'the RTC jumped too: %s' % detail
        assert abs(host - time.time() - 7200) < 10, detail
        h = env.history('p-c01')
        assert len(h) == 1 and h[0]['outcome'] == 'interrupted' and h[0]['pulses'] == 0, h

        refused_before = len(env.audit('refused'))
        expect_error('ClockUnreliable', env.unit().Arm, contains=("off the unit's RTC",))
        refused = env.audit('refused')
        assert len(refused) == refused_before + 1 and refused[-1][1] == 'ClockUnreliable', \
            refused
        assert_no_pulse(env)

        anomalies = env.audit('clock-anomaly')
        assert anomalies and anomalies[-1][1] == 'clock-rtc-skew', anomalies

        # Back to the true time: the disarm and the refusal were recorded at
        # +2 h, but only the arming (before the jump) witnesses the clock.
        assert env.newest_record_ms() > (time.time() + 7000) * 1000, 'nothing stamped +2 h'
        assert env.newest_arming_ms() < time.time() * 1000, 'an arming stamped +2 h'
        env.set_offset(0)
        wait_until(lambda: env.audit('clock-anomaly')[-1][1] == 'clock-ok', 2,
                   'the clock-ok record')
        env.arm_to_ready()
        assert env.fire(0.6) > 0, 'armed but no pulse'
        env.unit().Disarm()
        env.wait_unit_state('standby')
        assert len(env.history('p-c01')) == 2, env.history('p-c01')


@test
def test_jump_undone_before_any_record_arms_again():
    """+2 h for a second in STANDBY, nothing recorded meanwhile, back to the true time:
    nothing latched, Arm allowed and the unit fires (no fresh RTC read needed)."""
    with ClockEnv() as env:
        env.start()
        env.ready_session('p-c02', 'crown')
        counts, newest = env.record_counts(), env.newest_arming_ms()
        env.set_offset(2 * 3600)
        pump(4 * CHECK_PERIOD_S)                # periodic checks with the clock off
        assert env.unit_prop('State') == 'standby'
        env.set_offset(0)
        pump(2 * CHECK_PERIOD_S)
        # The audit trail says the clock went wrong and right again; nothing else.
        anomalies = [r[1] for r in env.audit('clock-anomaly')]
        assert anomalies == ['clock-rtc-skew', 'clock-ok'], anomalies
        counts['audit'] += 2
        assert env.record_counts() == counts, 'a record was written during the jump'
        assert env.newest_arming_ms() == newest
        env.arm_to_ready()
        assert env.fire(0.6) > 0, 'armed but no pulse'
        env.unit().Disarm()
        env.wait_unit_state('standby')
        assert env.audit('disarm')[-1][1] == 'requested', env.audit('disarm')


@test
def test_backward_jump_before_newest_record():
    """-1 d after a treatment: Arm refused (ClockUnreliable, clock behind the records),
    the treated patch still in its cooldown until the same date, the records intact."""
    with ClockEnv() as env:
        env.start()
        _, pulses = env.treat('p-c03', 'crown')
        assert pulses > 0
        treated = env.treatments()
        eligible, next_usec, _ = env.manager().CheckPatch('p-c03', 'crown')
        assert not eligible
        env.set_offset(-DAY_S)

        # Under a clock behind the records no eligibility is answered.
        expect_error('ClockUnreliable', env.manager().CheckPatch, 'p-c03', 'crown',
                     contains=('earlier than the newest arming',))
        spath = env.unit().StartSession('p-c03')
        expect_error('ClockUnreliable', env.session(spath).SelectPatch, 'crown')
        env.end_session(spath, 'clock')

        # A patient never treated: everything else ready, Arm refused for the clock.
        spath = env.unit().StartSession('p-c04')
        expect_error('ClockUnreliable', env.session(spath).SelectPatch, 'crown')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(harness.GOOD_PARAMS)
        expect_error('ClockUnreliable', env.unit().Arm,
                     contains=('is earlier than the newest record',))
        assert env.unit_prop('State') == 'standby'
        assert_no_pulse(env)
        assert env.treatments() == treated, 'the records changed under a clock gone back'
        assert env.history('p-c04') == []

        # The clock right again: the treated patch is in its cooldown, to the same instant.
        env.set_offset(0)
        eligible2, next_usec2, why = env.manager().CheckPatch('p-c03', 'crown')
        assert not eligible2 and next_usec2 == next_usec, (eligible2, next_usec, next_usec2, why)


@test
def test_forward_43_days_does_not_shorten_cooldown():
    """+43 d with the unit's RTC at the true time: the host clock would say the patch
    is eligible, but neither CheckPatch nor SelectPatch answers under that clock
    (ClockUnreliable), Arm under it is ClockUnreliable, and once the clock is back
    the patch is in its cooldown (CooldownActive)."""
    with ClockEnv() as env:
        env.start()
        _, pulses = env.treat('p-c05', 'crown')
        assert pulses > 0
        treated = env.treatments()
        spath = env.unit().StartSession('p-c05')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(harness.GOOD_PARAMS)

        env.set_offset(43 * DAY_S)
        expect_error('ClockUnreliable', env.manager().CheckPatch, 'p-c05', 'crown',
                     contains=("off the unit's RTC",))
        expect_error('ClockUnreliable', env.session(spath).SelectPatch, 'crown',
                     contains=("off the unit's RTC",))

        # The clock back: the patch is in its cooldown.
        env.set_offset(0)
        expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown',
                     contains=('eligible from',))
        expect_error('NoPatch', env.unit().Arm)
        assert env.unit_prop('State') == 'standby'
        assert_no_pulse(env)

        # Arm under +43 d: the host clock is 43 days off the unit's RTC.
        env.set_offset(43 * DAY_S)
        expect_error('ClockUnreliable', env.unit().Arm, contains=("off the unit's RTC",))
        assert env.unit_prop('State') == 'standby'
        assert_no_pulse(env)
        assert env.treatments() == treated, 'a treatment was recorded'
        assert len(env.history('p-c05')) == 1


@test
def test_started_43_days_ahead_does_not_shorten_cooldown():
    """smplaserd (re)started while the host clock is already 43 days ahead, the unit's
    RTC at the true time: no jump is ever seen, yet the patch's eligibility is not
    answered (CheckPatch, SelectPatch) and Arm is refused for the clock: the
    cooldown's "now" is not trusted."""
    with ClockEnv() as env:
        env.start()
        _, pulses = env.treat('p-c09', 'crown')
        assert pulses > 0
        treated = env.treatments()
        env.kill(signal.SIGTERM)
        env.set_offset(43 * DAY_S)
        env.start()
        # The simulated unit takes its RTC from the host clock when it starts:
        # set it back to the true time, as a battery-backed RTC would have kept it.
        env.sim().SetRtcSkew(dbus.Int64(-43 * DAY_S))
        pump(0.2)       # its next status report carries that RTC
        # The rules would see the patch eligible by this clock: nothing answers.
        expect_error('ClockUnreliable', env.manager().CheckPatch, 'p-c09', 'crown',
                     contains=("off the unit's RTC",))
        spath = env.unit().StartSession('p-c09')
        expect_error('ClockUnreliable', env.session(spath).SelectPatch, 'crown')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(harness.GOOD_PARAMS)
        expect_error('ClockUnreliable', env.unit().Arm, contains=("off the unit's RTC",))
        assert_no_pulse(env)
        assert env.treatments() == treated, 'a treatment was recorded'


@test
def test_another_units_arming_witnesses_the_clock():
    """S8 across units: unit 2's patch is selected, then unit 1 arms; the host clock
    steps back 100 s (inside the RTC bound): unit 2's Arm is refused, its clock being
    earlier than the newest arming, which unit 2 itself never saw.  (Kills the mutant
    that does not read the newest arming again at Arm.)"""
    with ClockEnv() as env:
        env.start(sim=2)
        u1, u2 = harness.UNIT1, harness.ROOT + '/unit/SIM00002'
        s2 = env.ready_session_on(u2, 'p-c10', 'occipital')
        s1 = env.ready_session_on(u1, 'p-c11', 'crown')
        env.unit(u1).Arm()
        env.wait_unit_state('ready', 6, u1)
        env.unit(u1).Disarm()
        env.set_offset(-100)
        expect_error('ClockUnreliable', env.unit(u2).Arm,
                     contains=('earlier than the newest record',))
        assert env.unit_prop('State', u2) == 'standby'
        env.set_offset(0)
        for u, s in ((u1, s1), (u2, s2)):
            env.end_session(s, 'done')


@test
def test_backward_jump_while_emitting_keeps_cooldown():
    """-1 d while the footswitch is held: disarmed, every pulse recorded, and the patch
    counts as emitted at its true last pulse: its cooldown is not a day shorter."""
    with ClockEnv() as env:
        env.start()
        spath = env.ready_session('p-c08', 'crown', params=FAST_PARAMS)
        env.arm_to_ready()
        pressed = time.time()
        env.sim().SetFootswitch(True)
        pump(0.5)
        assert env.unit_prop('State') == 'emitting', env.unit_prop('State')
        jumped = time.time()
        env.set_offset(-DAY_S)
        took = time_to_standby(env)
        env.sim().SetFootswitch(False)
        print('# backward jump -1 d while emitting: disarmed after %.0f ms' % (took * 1000))
        assert env.audit('disarm')[-1][1] == 'clock-behind-records', env.audit('disarm')
        shots = env.shots()
        pump(0.5)                               # five periods at 10 Hz
        assert env.shots() == shots, 'a pulse after the disarm'
        env.set_offset(0)
        env.end_session(spath, 'clock')
        h = env.history('p-c08')
        assert len(h) == 1, h
        t = h[0]
        assert t['pulses'] == t['pulses_recorded'] == shots > 0, (shots, t)
        emitted = t['emission_usec'] / 1e6
        assert pressed <= emitted <= jumped + 1, \
            'emitted at %s, the footswitch held %s..%s' % (utc(emitted), utc(pressed), utc(jumped))
        eligible, next_usec, why = env.manager().CheckPatch('p-c08', 'crown')
        assert not eligible and next_usec / 1e6 >= pressed + 42 * DAY_S, (next_usec, why)


@test
def test_small_forward_jump_keeps_ready():
    """+60 s (inside rtc_max_skew_s 300) while READY: not a clock fault, still READY and
    firing after several periodic checks."""
    with ClockEnv() as env:
        env.start()
        env.ready_session('p-c06', 'crown')
        env.arm_to_ready()
        env.set_offset(60)
        pump(5 * CHECK_PERIOD_S)
        assert env.unit_prop('State') == 'ready', env.unit_prop('State')
        assert env.fire(0.6) > 0, 'no pulse after a 60 s jump'
        env.unit().Disarm()
        env.wait_unit_state('standby')
        assert [r for r in env.audit('disarm') if r[1].startswith('clock')] == []


@test
def test_small_backward_jump_while_ready_disarms():
    """-60 s while READY: the clock is then earlier than the arming just recorded, so the
    daemon disarms (clock-behind-records) although -60 s is inside the RTC bound."""
    with ClockEnv() as env:
        env.start()
        env.ready_session('p-c07', 'crown')
        env.arm_to_ready()
        env.set_offset(-60)
        took = time_to_standby(env)
        print('# backward jump -60 s while READY: disarmed after %.0f ms' % (took * 1000))
        assert env.audit('disarm')[-1][1] == 'clock-behind-records', env.audit('disarm')
        assert_no_pulse(env)


if __name__ == '__main__':
    sys.exit(harness.main_with_preload([(LIBFAKETIME, 'apt-get install libfaketime'),
                                        (PASSTHROUGH, 'make all')]))
