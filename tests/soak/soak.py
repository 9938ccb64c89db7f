#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Soak: a clinic day at high speed against smplaserd --session --sim.

Random patients (a pool, so patients come back), sessions, patches, parameters
(sometimes out of the protocol), pulses, interlock trips, unit faults, RTC
skew, unplugs, clients vanishing and daemon kills (SIGKILL, then restart).
Every decision of the daemon is checked against an independent model of the
rules written here:

  - a patch a patient had an emission on is refused (CooldownActive) by
    SelectPatch and reported not eligible by CheckPatch (42 days never pass
    in a soak); any other patch is eligible;
  - Arm succeeds iff session, patch, eyewear, parameters in the protocol, all
    interlocks closed, no fault, the RTC right; otherwise it is refused with
    the named error and the unit is not armed;
  - records: every pulse the unit counted is in a recorded treatment, no
    treatment stays open (records lost must be 0).

Unplugs happen with the unit READY or emitting: a treatment whose unit went
away is unknown (it counts as emitted) until the unit is plugged in again and
its shot counter reconciles it, pulses whose reports were lost included.

Usage: tests/soak/soak.py [--duration SECONDS] [--seed N]    (TAP on stdout)
Exit status 0 iff no check failed.
"""
import argparse
import os
import random
import signal
import sys
import time

import dbus
import dbus.bus

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'integration'))
import harness  # noqa: E402
from harness import ERR, GOOD_PARAMS, Env, pump, wait_until  # noqa: E402

PATCHES = ['frontal-hairline', 'mid-scalp', 'crown', 'left-temporal', 'right-temporal',
           'left-parietal', 'right-parietal', 'occipital']
INTERLOCKS = ['key', 'door', 'estop', 'handpiece', 'cooling', 'temperature', 'shutter']
BAD_PARAMS = [('fluence_mj_cm2', 20000), ('spot_um', 100), ('rate_mhz', 50000),
              ('wavelength_nm', 532), ('pulse_ps', 1)]


class Violation(Exception):
    pass


def must(cond, what):
    if not cond:
        raise Violation(what)


def error_name(fn, *args):
    """None if fn(*args) succeeded, else the short name of the daemon's error."""
    try:
        fn(*args)
        return None
    except dbus.DBusException as e:
        name = e.get_dbus_name() or ''
        must(name.startswith(ERR), 'not a daemon error: %s %s' % (name, e.get_dbus_message()))
        return name[len(ERR):]


class Day:
    def __init__(self, env, rng):
        self.env = env
        self.rng = rng
        self.emitted = set()          # (patient, patch) with an emission: the model
        self.patients = set()
        self.sessions = self.pulses = self.faults = self.decisions = 0
        self.base_shots = int(env.unit_prop('ShotCount'))

    # --- the model's checks ------------------------------------------------

    def in_cooldown(self, patient, patch):
        return (patient, patch) in self.emitted

    def check_patch(self, patient, patch):
        eligible, _, reason = self.env.manager().CheckPatch(patient, patch)
        self.decisions += 1
        if bool(eligible) == self.in_cooldown(patient, patch):
            hist = [(str(t['patch']), str(t['outcome']), int(t['pulses']))
                    for t in self.env.history(patient)]
            raise Violation('CheckPatch(%s, %s) = %s, model: emitted=%s (%s); history %s' %
                            (patient, patch, bool(eligible), (patient, patch) in self.emitted,
                             reason, hist))

    def check_records(self):
        """Every shot the unit counted is in a recorded, closed treatment."""
        total, by_patch = 0, set()
        for p in self.patients:
            for t in self.env.history(p):
                must(str(t['outcome']) not in ('open', 'unknown'),
                     'a treatment stays %s: %s' % (t['outcome'], dict(t)))
                total += int(t['pulses'])
                if int(t['pulses']) > 0:
                    by_patch.add((p, str(t['patch'])))
        shots = int(self.env.unit_prop('ShotCount')) - self.base_shots
        must(total == shots, 'records lost: the unit counted %d pulses, the records %d' %
             (shots, total))
        must(by_patch == self.emitted, 'recorded emissions and the model differ on %s' %
             sorted(by_patch ^ self.emitted))
        return shots, total

    # --- helpers ---------------------------------------------------------------

    def settle_unit(self):
        """Back to a usable standby: footswitch up, interlocks closed, faults cleared."""
        sim = self.env.sim()
        sim.SetFootswitch(False)
        for name in INTERLOCKS:
            sim.SetInterlock(name, False)
        sim.SetRtcSkew(dbus.Int64(0))
        sim.ClearFaultCause()
        if not self.env.unit_published():
            sim.Replug()
            self.env.wait_unit_state('standby', 5)
        wait_until(lambda: self.env.unit_prop('State') in ('standby', 'fault'),
                   6, 'the unit to settle')
        if self.env.unit_prop('State') == 'fault':
            self.env.unit().AcknowledgeFault()
            self.env.wait_unit_state('standby', 3)

    def restart(self):
        self.env.kill(signal.SIGKILL)
        self.env.start()
        self.faults += 1

    # --- one session -------------------------------------------------------------

    def session(self):
        env, rng = self.env, self.rng
        patient = 'P-%03d' % rng.randrange(40)
        patch = rng.choice(PATCHES)
        self.patients.add(patient)
        if rng.random() < 0.05:
            must(error_name(env.unit().StartSession, patient + '!') == 'InvalidArgument',
                 'a bad patient id was accepted')
            self.decisions += 1
        client = dbus.bus.BusConnection(env.address)
        try:
            self._session(client, patient, patch)
        finally:
            try:
                client.close()
            except Exception:
                pass
        self.settle_unit()
        # A session left open (kill, vanished client) is closed by the daemon.
        wait_until(lambda: env.unit_prop('Session') == '/' or self._end_open_session(), 3,
                   'no session left open')
        self.sessions += 1

    def _end_open_session(self):
        spath = str(self.env.unit_prop('Session'))
        if spath != '/':
            try:
                self.env.record_endpoints(spath)     # issue 16: before End
            except dbus.DBusException:
                pass                                 # gone meanwhile
            error_name(self.env.session(spath).End, 'soak')
        return False

    def _session(self, client, patient, patch):
        env, rng = self.env, self.rng
        unit = env.unit(bus=client)
        spath = unit.StartSession(patient)
        session = env.session(spath, client)
        self.check_patch(patient, patch)
        err = error_name(session.SelectPatch, patch)
        self.decisions += 1
        if self.in_cooldown(patient, patch):
            must(err == 'CooldownActive', 'SelectPatch %s/%s in cooldown: %s' %
                 (patient, patch, err))
            session.End('in cooldown')
            return
        must(err is None, 'SelectPatch %s/%s eligible, refused: %s' % (patient, patch, err))
        if rng.random() < 0.1:
            must(error_name(unit.Arm) == 'EyewearNotConfirmed', 'armed without eyewear')
            self.decisions += 1
        session.ConfirmEyewear()
        if rng.random() < 0.15:
            key, value = rng.choice(BAD_PARAMS)
            bad = dbus.Dictionary(dict(GOOD_PARAMS), signature='sv')
            bad[key] = dbus.UInt32(value)
            must(error_name(unit.SetParameters, bad) == 'ParameterOutOfRange',
                 'parameters out of the protocol accepted: %s=%d' % (key, value))
            self.decisions += 1
        unit.SetParameters(GOOD_PARAMS)

        fault = rng.choice(['none'] * 6 + ['interlock-before-arm', 'rtc-skew', 'unit-fault',
                                           'interlock-while-emitting', 'unplug-ready',
                                           'unplug-emitting',
                                           'client-gone', 'kill-armed', 'kill-emitting'])
        if fault == 'interlock-before-arm':
            name = rng.choice(INTERLOCKS)
            env.sim().SetInterlock(name, True)
            wait_until(lambda: not env.unit_prop('Interlocks')[name], 2, name + ' open')
            must(error_name(unit.Arm) == 'InterlockOpen', 'armed with %s open' % name)
            self.decisions += 1
            self.faults += 1
            must(env.unit_prop('State') == 'standby', 'armed with an interlock open')
            env.sim().SetInterlock(name, False)
            wait_until(lambda: env.unit_prop('Interlocks')[name], 2, name + ' closed')
        elif fault == 'rtc-skew':
            env.sim().SetRtcSkew(dbus.Int64(rng.choice([-1, 1]) * rng.randrange(301, 86400)))
            must(error_name(unit.Arm) == 'ClockUnreliable', 'armed with the RTC skewed')
            self.decisions += 1
            self.faults += 1
            env.sim().SetRtcSkew(dbus.Int64(0))
        elif fault == 'unit-fault':
            env.sim().InjectFault('overtemp')
            env.wait_unit_state('fault')
            must(error_name(unit.Arm) == 'DeviceFault', 'armed with a fault latched')
            self.decisions += 1
            self.faults += 1
            env.sim().ClearFaultCause()
            unit.AcknowledgeFault()
            env.wait_unit_state('standby')

        shots0 = int(env.unit_prop('ShotCount'))
        err = error_name(unit.Arm)
        self.decisions += 1
        must(err is None, 'Arm refused with every condition met: %s' % err)
        if fault == 'kill-armed' and rng.random() < 0.5:
            pump(rng.uniform(0, 0.3))           # maybe still arming
            self.restart()
            self._account(patient, patch, shots0)
            return
        env.wait_unit_state('ready', 6)
        if fault == 'unplug-ready':
            self.unplug_and_replug(unit)
            self._account(patient, patch, shots0)
            return
        if fault == 'client-gone':
            client.close()
            env.wait_unit_state('standby', 3)
            self.faults += 1
            self._account(patient, patch, shots0)
            return
        if fault == 'kill-armed':
            self.restart()
            self._account(patient, patch, shots0)
            return
        env.sim().SetFootswitch(True)
        wait_until(lambda: int(env.unit_prop('ShotCount')) > shots0, 3, 'a pulse')
        pump(rng.uniform(0.0, 0.6))
        if fault == 'interlock-while-emitting':
            env.sim().SetInterlock(rng.choice(INTERLOCKS), True)
            wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 3,
                       'disarm on an interlock trip')
            self.faults += 1
        elif fault == 'kill-emitting':
            self.restart()
            self._account(patient, patch, shots0)
            return
        elif fault == 'unplug-emitting':
            self.unplug_and_replug(unit)
            self._account(patient, patch, shots0)
            return
        env.sim().SetFootswitch(False)
        if env.unit_prop('State') not in ('standby', 'fault'):
            unit.Disarm()
            env.wait_unit_state('standby')
        self._account(patient, patch, shots0)
        env.record_endpoints(spath, bus=client)     # issue 16: the endpoint before End
        session.End('done')

    def unplug_and_replug(self, unit):
        """The unit's object goes as a real unit's does, its session with it."""
        env = self.env
        env.sim().Unplug()
        env.wait_unit_gone()
        self.faults += 1
        env.sim().Replug()
        env.wait_unit_state('standby', 5)

    def _account(self, patient, patch, shots0):
        self.env.sim().SetFootswitch(False)
        shots = int(self.env.unit_prop('ShotCount'))
        if shots > shots0:
            self.emitted.add((patient, patch))
            self.pulses += shots - shots0


def run(duration, seed):
    rng = random.Random(seed)
    print('1..1')
    print('# seed %d, %d s, daemon %s' % (seed, duration, harness.DAEMON))
    harness.DAEMON = harness._private_copy(harness.DAEMON)
    start = time.monotonic()
    with Env() as env:
        env.start()
        day = Day(env, rng)
        try:
            while time.monotonic() - start < duration:
                day.session()
                if day.sessions % 5 == 0:
                    day.check_records()
                    day.check_patch('P-%03d' % rng.randrange(40), rng.choice(PATCHES))
            shots, recorded = day.check_records()
            for p in sorted(day.patients):
                for patch in PATCHES:
                    day.check_patch(p, patch)
        except Exception as e:
            print('# after %d sessions, %d pulses, %d faults: %s' %
                  (day.sessions, day.pulses, day.faults, e))
            for line in env.log().splitlines()[-30:]:
                print('# log: ' + line)
            print('not ok 1 - soak (seed %d): %s' % (seed, str(e).splitlines()[0][:200]))
            env.close()
            env.daemon = None
            return 1
        summary = ('%d sessions, %d pulses, %d faults survived, %d decisions checked, '
                   '%d records lost' % (day.sessions, shots, day.faults, day.decisions,
                                        shots - recorded))
        print('# ' + summary)
    print('ok 1 - soak %d s (seed %d): %s' % (duration, seed, summary))
    return 0


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument('--duration', type=int, default=int(os.environ.get('DURATION', 60)))
    ap.add_argument('--seed', type=int, default=int(os.environ.get('SOAK_SEED',
                                                                   time.time())))
    a = ap.parse_args()
    if not os.access(harness.DAEMON, os.X_OK):
        print('1..1\nnot ok 1 - %s is not built' % harness.DAEMON)
        return 1
    return run(a.duration, a.seed)


if __name__ == '__main__':
    sys.exit(main())
