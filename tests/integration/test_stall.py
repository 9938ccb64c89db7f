#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Nothing on smplaserd's event loop waits on a unit or the disk (issue 12).

Three simulated units.  The first stops answering: every command's reply is
dropped (SetHostile no-answer) and its status reports are held back
(HoldReports).  The disk takes 2 s per fsync (build/tests/slow-fsync.so,
preloaded, turned on by a flag file).  For 60 s the other two units, armed
before, must stay READY with no disarm the test did not ask for; unit 3 is
fired every few seconds and its PropertiesChanged must come within 20 ms of
the footswitch; Get(State) of units 2 and 3 must answer within 5 ms at p99.
The truth afterwards is the units' own fired logs: every pulse unit 3 fired
is recorded, unit 2 fired nothing.

A loop that waits stalls for 500 ms and more: that is failed whatever the
machine.  The 5 ms and 20 ms figures are performance figures: `make bench`
judges them (tests/bench/run-bench runs this file with
SMPL_STALL_JUDGE_FIGURES=1 and prints them as rows of its table), when the
machine can measure them, i.e. when the bus's own round trip (GetId,
measured in the same run) is under 2 ms at p99.  `make check` prints them
only: on CI's shared 2 cores a Get(State) p99 went from 0.9 to 4.4 ms
between runs with a quiet floor, and one run over 5 ms failed a check that
is about stalls.

LD_PRELOAD does not work into an ASan binary: this suite runs the plain
build/smplaserd, like the clock suite.

Usage: tests/integration/test_stall.py [test_name...]   (TAP on stdout)
Environment: SMPL_STALL_SECONDS (60) shortens the window for a quick try.
"""
import os
import sys
import time

import dbus

HERE = os.path.dirname(os.path.abspath(__file__))
TOP_DIR = os.path.abspath(os.path.join(HERE, '..', '..'))
os.environ.setdefault('SMPLASERD', os.path.join(TOP_DIR, 'build', 'smplaserd'))

sys.path.insert(0, HERE)
import harness  # noqa: E402
from harness import ROOT, UNIT, Env, pump, test, wait_until  # noqa: E402

SLOW_FSYNC = os.path.join(TOP_DIR, 'build', 'tests', 'slow-fsync.so')
UNIT1 = ROOT + '/unit/SIM00001'
UNIT2 = ROOT + '/unit/SIM00002'
UNIT3 = ROOT + '/unit/SIM00003'
PROPS = 'org.freedesktop.DBus.Properties'

WINDOW_S = float(os.environ.get('SMPL_STALL_SECONDS', '60'))
JUDGE_FIGURES = os.environ.get('SMPL_STALL_JUDGE_FIGURES') == '1'
FSYNC_MS = 2000
SIGNAL_BOUND_S = 0.020
GET_P99_BOUND_S = 0.005
STALL_S = 0.4           # a command waited for on the loop takes 500 ms
FLOOR_P99_QUIET_S = 0.002
FIRE_EVERY_S = 3.0
FIRE_FOR_S = 0.5


class StallEnv(Env):
    """Env whose smplaserd's fsync takes FSYNC_MS while the flag file exists."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.slow_flag = os.path.join(self.tmp, 'slow-disk')

    def slow_disk(self, on):
        if on:
            open(self.slow_flag, 'w').close()
        elif os.path.exists(self.slow_flag):
            os.unlink(self.slow_flag)

    def env(self):
        e = super().env()
        e['LD_PRELOAD'] = SLOW_FSYNC
        e['SMPL_SLOW_FSYNC_FLAG'] = self.slow_flag
        e['SMPL_SLOW_FSYNC_MS'] = str(FSYNC_MS)
        return e


class Watch:
    """Every PropertiesChanged of the Unit interface on one object, with the time
    the test's loop saw it (never earlier than it came)."""

    def __init__(self, env, path):
        self.seen = []
        self.states = []
        env.bus.add_signal_receiver(self.on_changed, 'PropertiesChanged', PROPS,
                                    harness.BUS_NAME, path)

    def on_changed(self, iface, changed, invalidated):
        if iface != UNIT:
            return
        now = time.monotonic()
        self.seen.append((now, dict(changed)))
        if 'State' in changed:
            self.states.append(str(changed['State']))

    def state_since(self, t0, state):
        """The first time after @t0 the State became @state, or None."""
        for when, changed in self.seen:
            if when >= t0 and str(changed.get('State', '')) == state:
                return when
        return None


def percentile(values, p):
    values = sorted(values)
    return values[min(len(values) - 1, int(round(p / 100.0 * (len(values) - 1))))]


def timed_floor(env):
    """The same round trip to the bus itself: what no daemon can beat."""
    t0 = time.monotonic()
    env.bus.call_blocking('org.freedesktop.DBus', '/org/freedesktop/DBus',
                          'org.freedesktop.DBus', 'GetId', '', ())
    return time.monotonic() - t0


def timed_get(env, path):
    props = env.iface(path, PROPS)
    t0 = time.monotonic()
    state = str(props.Get(UNIT, 'State'))
    return time.monotonic() - t0, state


def fire_once(env, watch):
    """Footswitch down and up on unit 3; the latencies of the two State changes."""
    sim = env.sim(UNIT3)
    lat = []
    for held, state in ((True, 'emitting'), (False, 'ready')):
        t0 = time.monotonic()
        sim.SetFootswitch(held)
        end = t0 + 2.0
        while time.monotonic() < end and watch.state_since(t0, state) is None:
            pump(0.001)
        seen = watch.state_since(t0, state)
        assert seen is not None, 'unit 3 never said %s (states %s)' % (state, watch.states)
        lat.append(seen - t0)
        if held:
            pump(FIRE_FOR_S)
    return lat


def disarms_of(env, serial):
    return env.query("SELECT reason FROM audit WHERE kind = 'disarm' AND unit_serial = ?",
                     serial)


@test
def test_a_silent_unit_and_a_slow_disk_stall_no_other_unit():
    with StallEnv(config='[safety]\nidle_timeout_s = 3600\n') as env:
        env.start(sim=3)
        for n, path in enumerate((UNIT2, UNIT3)):
            env.ready_session_on(path, 'p-stall-%d' % n, 'crown')
            env.unit(path).Arm()
            env.wait_unit_state('ready', 6, path)
        env.ready_session_on(UNIT1, 'p-stall-silent', 'crown')
        watch2, watch3 = Watch(env, UNIT2), Watch(env, UNIT3)

        env.sim(UNIT1).HoldReports(True)
        env.sim(UNIT1).SetHostile('no-answer', dbus.UInt32(1000000))
        env.slow_disk(True)
        gets, floor, signal_lat, fires = [], [], [], 0
        start = time.monotonic()
        next_fire = start + 1.0
        while time.monotonic() - start < WINDOW_S:
            if time.monotonic() >= next_fire:
                signal_lat += fire_once(env, watch3)
                fires += 1
                next_fire = time.monotonic() + FIRE_EVERY_S
            for path in (UNIT2, UNIT3):
                took, state = timed_get(env, path)
                gets.append(took)
                assert state in ('ready', 'emitting'), '%s went %s' % (path, state)
            floor.append(timed_floor(env))
            pump(0.005)
        env.slow_disk(False)
        pump(0.2)

        p50, p99 = percentile(gets, 50), percentile(gets, 99)
        print('# %d Get(State): p50 %.2f ms, p99 %.2f ms, max %.2f ms' %
              (len(gets), p50 * 1e3, p99 * 1e3, max(gets) * 1e3))
        print('# %d GetId of the bus (the floor): p50 %.2f ms, p99 %.2f ms, max %.2f ms' %
              (len(floor), percentile(floor, 50) * 1e3, percentile(floor, 99) * 1e3,
               max(floor) * 1e3))
        print('# %d State changes signalled: max %.1f ms after the footswitch' %
              (len(signal_lat), max(signal_lat) * 1e3))
        assert fires >= WINDOW_S / (FIRE_EVERY_S + 2) - 1, fires
        # A loop that waits on the silent unit or the disk stalls for 500 ms and
        # more (the old daemon: seconds): that is caught whatever the machine.
        assert max(gets) < STALL_S and max(signal_lat) < STALL_S, \
            'the loop stalled: Get %.0f ms, a signal %.0f ms' % (max(gets) * 1e3,
                                                                max(signal_lat) * 1e3)
        assert 'standby' not in watch2.states and 'fault' not in watch2.states, watch2.states
        assert set(watch3.states) <= {'emitting', 'ready'}, watch3.states
        assert str(env.unit_prop('State', UNIT2)) == 'ready'
        assert str(env.unit_prop('State', UNIT3)) == 'ready'

        # The truth outside the daemon: what the units fired, all of it recorded.
        env.unit(UNIT2).Disarm()
        env.unit(UNIT3).Disarm()
        assert env.fired('SIM00002') == []
        fired3 = [f['shot'] for f in env.fired('SIM00003')]
        assert len(fired3) >= fires, (len(fired3), fires)
        wait_until(lambda: env.recorded_shots('SIM00003') == fired3, 10,
                   'every pulse unit 3 fired recorded')
        assert [r['reason'] for r in disarms_of(env, 'SIM00002')] == ['requested']
        assert [r['reason'] for r in disarms_of(env, 'SIM00003')] == ['requested']

        judge_figures(gets, floor, signal_lat)


def bench_row(figure, med, p99, floor, target, verdict):
    """A row of make bench's table (tests/bench/bench-table.h, BENCH_ROW_FMT)."""
    print('%-46s %10s %10s %10s %12s %-22s %s' % (
        figure, '%.2f ms' % (med * 1e3), '%.2f ms' % (p99 * 1e3),
        '%.2f ms' % (floor * 1e3) if floor else '-',
        '%.2fx/%.2fx' % (med / floor, p99 / floor) if floor else '-', target, verdict))


def judge_figures(gets, floor, signal_lat):
    """The 5 ms and 20 ms figures: judged under make bench, printed under make check.
    They need a machine that can measure them: when the bus's own round trip is slow
    at p99, other processes own the cores."""
    floor_p50, floor_p99 = percentile(floor, 50), percentile(floor, 99)
    p50, p99 = percentile(gets, 50), percentile(gets, 99)
    quiet = floor_p99 <= FLOOR_P99_QUIET_S
    get_ok = p99 <= GET_P99_BOUND_S
    signal_ok = max(signal_lat) <= SIGNAL_BOUND_S
    if not JUDGE_FIGURES:
        print('# figures (judged by make bench): Get(State) p99 %.2f ms (target 5 ms), '
              'slowest State change signalled %.1f ms (target 20 ms), floor p99 %.2f ms' %
              (p99 * 1e3, max(signal_lat) * 1e3, floor_p99 * 1e3))
        return
    verdict = (lambda ok: ('ok' if ok else 'OVER') if quiet else 'busy: not judged')
    bench_row('Get(State), a unit silent, fsync 2 s', p50, p99, floor_p50, 'p99 <= 5 ms',
              verdict(get_ok))
    bench_row('State signalled, a unit silent, fsync 2 s', percentile(signal_lat, 50),
              max(signal_lat), None, 'max <= 20 ms', verdict(signal_ok))
    if not quiet:
        print('# the machine is busy (the floor\'s p99 %.2f ms > %.1f ms): the 5 ms and '
              '20 ms figures are not judged in this run' %
              (floor_p99 * 1e3, FLOOR_P99_QUIET_S * 1e3))
        return
    assert get_ok, 'Get(State) p99 %.2f ms' % (p99 * 1e3)
    assert signal_ok, 'a State change signalled %.1f ms late' % (max(signal_lat) * 1e3)


if __name__ == '__main__':
    sys.exit(harness.main_with_preload([(SLOW_FSYNC, 'make all')]))
