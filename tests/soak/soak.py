#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Soak: a clinic day at high speed against smplaserd --session --sim=N.

Sixteen simulated units (--units) treat a pool of patients at once, each unit
driven by its own operator connection: CheckPatch, StartSession, SelectPatch,
ConfirmEyewear, SetParameters (10 Hz), Arm, the footswitch held 3-12 s, Disarm,
the endpoint of the treated patch (issue 16: RecordEndpoint before End, as
Episode.end does for the session's owner), End.  Faults are thrown in at random: interlocks opened before arming and
while emitting, RTC skew, unit faults, unplugs while READY or emitting, the
operator's program leaving mid-treatment, SIGKILL of the daemon and a restart
on the same state directory.  A day of at least 10,000 pulses takes about two
minutes (sixteen units at 10 Hz; the units' own timings are not changed).

Judged by the truth outside the daemon, as the attacker judges
(tests/attack/attacker.py): every pulse the units fired (their fired logs) is
in the records exactly once, the records read read-only after a clean stop
(records lost must be 0); no patient's patch fired in two sessions; the
daemon's decisions against a model of the rules (a patch that emitted is
refused by CheckPatch and SelectPatch, anything else is eligible; Arm succeeds
with every condition met and is refused with the named error otherwise);
every call answered within 5 s; a client's property cache equal to GetAll.
Violation classes only a hole still listed in tests/attack/open-holes
produces are reported, not failed (and counted).

Usage: tests/soak/soak.py [--duration SECONDS] [--seed N] [--units N]
       [--pulses N]     (TAP on stdout; exit status 0 iff nothing failed)
"""
import argparse
import os
import random
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, '..', 'attack'))

import attack  # noqa: E402
from attacker import Episode, PATCHES, INTERLOCKS, GONE, params  # noqa: E402
from world import Found, UNIT  # noqa: E402

FAULTS = ['none'] * 12 + ['interlock-before-arm', 'rtc-skew', 'unit-fault',
                          'interlock-while-emitting', 'unplug-ready', 'unplug-emitting',
                          'client-gone']


class Violation(Exception):
    pass


class Day:
    """Every unit goes through treatments on its own timeline (a small state machine
    per unit, stepped in turn), so twelve units fire at once."""

    def __init__(self, ep, rng, n_patients):
        self.ep, self.rng = ep, rng
        self.patients = ['P-%03d' % i for i in range(n_patients)]
        self.units = {s: {'phase': 'idle', 'at': 0.0, 'fault': 'none', 'client': 'op-%s' % s,
                          'gen': 0}
                      for s in ep.serials}
        self.sessions = self.decisions = self.faults = self.kills = 0
        self.ep.cfg['liveness'] = False

    def emitted(self):
        return set(self.ep.emitted_sessions())

    def must(self, cond, cls, what):
        if not cond:
            self.ep.found(cls, what)

    # --- one unit's next step ------------------------------------------------------------

    def step(self, s):
        ep, rng, d = self.ep, self.rng, self.units[s]
        now = time.monotonic()
        if now < d['at']:
            return
        who = d['client']
        phase = d['phase']
        if phase == 'idle':
            d['fault'] = 'kill' if rng.random() < 0.012 else rng.choice(FAULTS)
            emitted = self.emitted()
            if rng.random() < 0.1 and emitted:
                patient, patch = rng.choice(sorted(emitted))
                patient = patient.upper()           # as the records keep it: P-...
            else:
                patient, patch = rng.choice(self.patients), rng.choice(PATCHES)
            busy = {(ep.sessions[ep.units[o]['session']]['patient'].casefold(),
                     ep.sessions[ep.units[o]['session']]['patch'])
                    for o in ep.serials if ep.units[o]['session']}
            if (patient.casefold(), patch) in busy:
                return                              # another unit has it open now
            r = ep.check_patch(who, patient, patch)
            self.decisions += 1
            cool = (patient.casefold(), patch) in emitted
            self.must(r.ok and bool(r.value[0]) != cool, 'S2-decision',
                      'CheckPatch(%s, %s) = %r, the truth: %s' % (
                          patient, patch, r.value[0] if r.ok else r.short(),
                          'emitted' if cool else 'never emitted'))
            r = ep.start_session(who, s, patient)
            if not r.ok:
                self.must(r.short() in ('Busy',) + GONE, 'soak-refused',
                          'StartSession refused: %s %s' % (r.short(), r.message))
                d['at'] = now + 0.2
                return
            sp = d['sp'] = str(r.value)
            self.sessions += 1
            r = ep.select_patch(who, sp, patch)
            self.decisions += 1
            if cool:
                self.must(r.short() == 'CooldownActive', 'S2-decision',
                          'SelectPatch(%s) for %s after an emission: %s' % (
                              patch, patient, r.short()))
                ep.end(who, sp, 'in cooldown')
                return
            self.must(r.ok, 'soak-refused', 'SelectPatch(%s) for %s refused: %s %s' % (
                patch, patient, r.short(), r.message))
            if not r.ok:
                ep.end(who, sp, 'refused')
                return
            ep.confirm_eyewear(who, sp)
            ep.set_params(who, s, params(rate_mhz=10000))
            if d['fault'] == 'interlock-before-arm':
                name = rng.choice(INTERLOCKS)
                ep.sim(s, 'SetInterlock', name, True)
                ep.wait_state(s, ('standby',), 1)
                self.wait_interlock(s, name, False)
                r = ep.arm(who, s)
                self.decisions += 1
                self.must(r.short() == 'InterlockOpen', 'soak-arm',
                          'Arm with %s open: %s' % (name, r.short()))
                ep.sim(s, 'SetInterlock', name, False)
                self.wait_interlock(s, name, True)
                self.faults += 1
            elif d['fault'] == 'rtc-skew':
                ep.rtc_skew(s, rng.choice([-1, 1]) * rng.randrange(301, 86400))
                r = ep.arm(who, s)
                self.decisions += 1
                self.must(r.short() == 'ClockUnreliable', 'soak-arm',
                          'Arm with the RTC skewed: %s' % r.short())
                ep.rtc_skew(s, 0)
                self.faults += 1
            elif d['fault'] == 'unit-fault':
                ep.sim(s, 'InjectFault', 'overtemp')
                ep.wait_state(s, ('fault',), 2)
                r = ep.arm(who, s)
                self.decisions += 1
                self.must(r.short() == 'DeviceFault', 'soak-arm',
                          'Arm with a fault latched: %s' % r.short())
                ep.sim(s, 'ClearFaultCause')
                ep.call(who, ep.units[s]['path'], UNIT, 'AcknowledgeFault')
                ep.wait_state(s, ('standby',), 2)
                self.faults += 1
            r = ep.arm(who, s)
            self.decisions += 1
            self.must(r.ok, 'soak-arm', 'Arm refused with every condition met: %s %s' % (
                r.short(), r.message))
            if not r.ok:
                ep.end(who, sp, 'not armed')
                return
            d['phase'], d['at'] = 'arming', now + 1.9
        elif phase == 'arming':
            st = ep.unit_state(s)
            if st == 'arming':
                d['at'] = now + 0.05
                return
            if st != 'ready':
                self.must(False, 'soak-arm', '%s went %s while arming' % (s, st))
                self.finish(s)
                return
            if d['fault'] == 'unplug-ready':
                self.unplug(s)
                self.finish(s)
                return
            if d['fault'] == 'client-gone':
                ep.leave(who)
                ep.wait_state(s, ('standby',), 3)
                self.faults += 1
                d['phase'], d['at'] = 'idle', now + 0.1
                return
            ep.footswitch(s, True)
            d['phase'] = 'emitting'
            d['hold'] = rng.uniform(4, 14)
            if d['fault'] in ('interlock-while-emitting', 'unplug-emitting', 'kill'):
                d['hold'] = rng.uniform(0.3, 3)
            d['at'] = now + d['hold']
        elif phase == 'emitting':
            if d['fault'] == 'interlock-while-emitting':
                ep.sim(s, 'SetInterlock', rng.choice(INTERLOCKS), True)
                st = ep.wait_state(s, ('standby', 'fault'), 3)
                self.must(st, 'soak-disarm', '%s not disarmed on an interlock trip' % s)
                self.faults += 1
                for name in INTERLOCKS:
                    ep.sim(s, 'SetInterlock', name, False)
            elif d['fault'] == 'unplug-emitting':
                self.unplug(s)
            elif d['fault'] == 'kill':
                self.kill()
                return
            self.finish(s)

    def wait_interlock(self, s, name, closed):
        end = time.monotonic() + 2
        while time.monotonic() < end:
            r = self.ep.call('probe', self.ep.units[s]['path'], 'org.freedesktop.DBus.Properties',
                             'Get', UNIT, 'Interlocks')
            if r.ok and bool(r.value[name]) == closed:
                return
            self.ep.wait(0.02)

    def unplug(self, s):
        """The unit goes as a real one (its session with it), and comes back."""
        ep = self.ep
        ep.unplug(s)
        r = ep.arm(self.units[s]['client'], s)
        self.must(r.short() in GONE, 'soak-arm', 'Arm on an unplugged unit: %s' % r.short())
        ep.replug(s)
        ep.wait_state(s, ('standby',), 5)
        self.faults += 1

    def finish(self, s):
        """Footswitch up, disarmed, the session ended."""
        ep, d = self.ep, self.units[s]
        ep.footswitch(s, False)
        if ep.unit_state(s) not in ('standby', 'fault', 'disconnected'):
            ep.disarm(d['client'], s)
            ep.wait_state(s, ('standby', 'fault'), 3)
        if ep.unit_state(s) == 'fault':
            ep.sim(s, 'ClearFaultCause')
            ep.call(d['client'], ep.units[s]['path'], UNIT, 'AcknowledgeFault')
        sp = ep.units[s]['session']
        if sp:
            ep.end(d['client'], sp, 'done')
        d['phase'], d['at'] = 'idle', time.monotonic() + 0.05

    def kill(self):
        """SIGKILL with every unit where it is; then a restart, every unit starts over."""
        ep = self.ep
        ep.kill()
        self.kills += 1
        self.faults += 1
        for s, d in self.units.items():
            ep.footswitch(s, False)
            d['phase'], d['at'] = 'idle', time.monotonic() + 0.1

    def pulses(self):
        return sum(self.ep.truth.count(s) for s in self.ep.serials)


def run(duration, seed, n_units, want_pulses):
    rng = random.Random(seed)
    holes = attack.open_holes()
    ignore = attack.ignored_classes(holes)
    print('1..1')
    print('# seed %d (SOAK_SEED=%d replays it), %d s, %d units; classes of holes still '
          'open (reported, not failed): %s' % (seed, seed, duration, n_units,
                                               ','.join(sorted(ignore)) or 'none'))
    sys.stdout.flush()
    found = []

    def report(v):
        found.append(v)
        print('# FOUND %s at %.1f s: %s' % (v.cls, v.t, attack.one_line(v.detail)[:300]))
        sys.stdout.flush()

    ep = Episode(rng, {'units': n_units, 'ignore': ignore}, report=report, keep_going=True,
                 name='soak')
    start = time.monotonic()
    err = None
    day = None
    try:
        ep.start()
        day = Day(ep, rng, max(40, n_units * 5))
        last_compare = 0
        while time.monotonic() - start < duration or (
                want_pulses and day.pulses() < want_pulses and
                time.monotonic() - start < duration * 2):
            for s in ep.serials:
                day.step(s)
            ep.after_step(compare=time.monotonic() - last_compare > 0.5)
            if time.monotonic() - last_compare > 0.5:
                last_compare = time.monotonic()
            harness_pump = 0.01
            time.sleep(harness_pump)
        for s in ep.serials:
            day.finish(s)
        ep.finish()
    except Found:
        pass
    except Exception:
        import traceback
        err = traceback.format_exc()
    finally:
        if ep.violations or err:
            attack.keep(ep, err)
        ep.close()
    took = time.monotonic() - start
    fired = sum(ep.truth.count(s) for s in ep.serials)
    lost = [v for v in ep.violations if v.cls in ('S3-lost', 'S3-uncounted', 'S3-open')]
    summary = ('%d sessions, %d pulses fired by %d units in %.0f s, %d endpoints recorded, '
               '%d faults survived (%d daemon kills), %d decisions checked, %d records lost' % (
                   day.sessions if day else 0, fired, n_units, took,
                   ep.stats.get('endpoints', 0), day.faults if day else 0,
                   day.kills if day else 0, day.decisions if day else 0, len(lost)))
    print('# ' + summary)
    if ep.ignored:
        print('# %d violations of holes still open (not failed): %s' % (
            len(ep.ignored), ', '.join(sorted({v.cls for v in ep.ignored}))))
    if err or ep.violations or (want_pulses and fired < want_pulses):
        why = (err.splitlines()[-1] if err else ep.violations[0].cls if ep.violations else
               'only %d pulses, %d wanted' % (fired, want_pulses))
        if err:
            for line in err.splitlines()[-12:]:
                print('# ' + line)
        for v in ep.violations[:10]:
            print('# %s' % attack.one_line(v)[:300])
        for s in ep.steps[-20:]:
            print('#   ' + s)
        print('not ok 1 - soak (seed %d): %s' % (seed, why))
        return 1
    print('ok 1 - soak %d s (seed %d): %s' % (duration, seed, summary))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--duration', type=int, default=int(os.environ.get('DURATION', 600)))
    ap.add_argument('--seed', type=int, default=int(os.environ.get('SOAK_SEED',
                                                                   time.time() * 1000 % 2 ** 31)))
    ap.add_argument('--units', type=int, default=int(os.environ.get('SOAK_UNITS', 16)))
    ap.add_argument('--pulses', type=int, default=int(os.environ.get('SOAK_PULSES', 0)),
                    help='go on (up to twice the duration) until this many pulses fired')
    a = ap.parse_args()
    return run(a.duration, a.seed, a.units, a.pulses)


if __name__ == '__main__':
    sys.exit(main())
