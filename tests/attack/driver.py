# SPDX-License-Identifier: MIT
"""Programs for the attacker: a random one (a clinic's operators going through
treatments on every unit at once, with intruders, clients leaving, dropped
replies, faults, unplugs, kills, clock jumps and a disk that fills thrown in
at random instants) and the directed seeds, one per known class of hole."""
import os
import re
import signal
import time

import dbus

from attacker import (PATCHES, INTERLOCKS, SIM_FAULTS, DROP_COMMANDS, BAD, HOSTILE, GONE,
                      params, case_variant)
from world import DAY_S, UNIT, SESSION

# Every feature the random program may use.  "make check" leaves out those that
# trigger a hole still listed open (tests/attack/open-holes).
FEATURES = ['intruder', 'leaver', 'drop', 'drop-status', 'counter', 'kill', 'signals',
            'clock', 'disk', 'hostile', 'unplug', 'faults', 'drift', 'case', 'testspot',
            'rtc', 'late-reports', 'counter-forward', 'counter-live', 'system-bus']
CLIENTS = ['op1', 'op2', 'op3']


class RandomProgram:
    def __init__(self, ep, rng, features):
        self.ep, self.rng, self.f = ep, rng, set(features)
        self.calm = ep.cfg.get('calm', False)
        self.progress = {}         # session path -> dict of done steps

    def pick_patient(self, serial):
        ep, rng = self.ep, self.rng
        emitted = ep.emitted_patients()
        others = [ep.sessions[ep.units[s]['session']]['patient'] for s in ep.serials
                  if s != serial and ep.units[s]['session']]
        roll = rng.random()
        # with the test-spot rule, a patient on two units at once is the interesting case
        if others and roll < (0.5 if ep.test_spot else 0.25):
            p = rng.choice(others)
        elif emitted and roll < 0.6:
            p = rng.choice(sorted(emitted))
        else:
            p = rng.choice(ep.patients)
        if 'case' in self.f and rng.random() < 0.5:
            p = case_variant(rng, p)
        return p

    def pick_patch(self, patient):
        ep, rng = self.ep, self.rng
        done = [patch for (pat, patch) in ep.emitted_sessions() if pat == patient.casefold()]
        if done and rng.random() < 0.3:
            return rng.choice(done)
        if 'hostile' in self.f and rng.random() < 0.03:
            return rng.choice(HOSTILE)
        return rng.choice(PATCHES)

    def params(self):
        rng = self.rng
        if rng.random() < 0.08:
            k, v = rng.choice(BAD)
            return params(**{k: v})
        if 'hostile' in self.f and rng.random() < 0.03:
            d = dict(params())
            d[rng.choice(HOSTILE) or 'x'] = dbus.UInt32(1)
            return dbus.Dictionary(d, signature='sv')
        return params(rate_mhz=rng.choice([5000, 10000]))

    # --- one step ------------------------------------------------------------------------

    def step(self):
        """One step: a due footswitch release, then the owner of a unit that can go on
        takes its next step, or an intruder acts, or a fault is thrown in."""
        ep, rng = self.ep, self.rng
        now = time.monotonic()
        for s in ep.serials:
            u = ep.units[s]
            if u['fs'] and u.get('release_at') and now >= u['release_at']:
                u['release_at'] = None
                ep.footswitch(s, False)
        roll = rng.random()
        # a quieter clinic half the time: more treatments, more pulses
        p_adv, p_int = (0.86, 0.06) if self.calm else (0.75, 0.08)
        if roll < p_adv or (roll < p_adv + p_int and 'intruder' not in self.f):
            states = {s: ep.unit_state(s) for s in ep.serials}
            ready = [s for s in ep.serials if self.actionable(s, states[s], now)]
            if ready:
                self.advance(rng.choice(ready), states)
            else:
                ep.wait(0.05)
        elif roll < p_adv + p_int:
            self.intrude(rng.choice(ep.serials))
        else:
            self.perturb(rng.choice(ep.serials))
        ep.after_step()

    def actionable(self, s, st, now):
        u = self.ep.units[s]
        if st == 'arming':
            return False
        if st == 'emitting' and u.get('release_at') and now < u['release_at']:
            return False
        return True

    def advance(self, s, states):
        """The owner of unit @s takes the next step of a treatment."""
        ep, rng = self.ep, self.rng
        u = ep.units[s]
        sp = u['session']
        if not u['plugged']:
            ep.replug(s)
            return
        if sp is None:
            r = ep.start_session(rng.choice(CLIENTS), s, self.pick_patient(s))
            if r.ok:
                self.progress[str(r.value)] = {'tries': 0}
            elif r.short() == 'Busy':
                ep.wait(0.1)
            return
        sess = ep.sessions[sp]
        pr = self.progress.setdefault(sp, {'tries': 0})
        who = sess['owner']
        if not sess['patch'] or pr.get('reselect'):
            if pr['tries'] >= 3:
                ep.end(who, sp, 'no eligible patch')
                return
            pr['tries'] += 1
            r = ep.select_patch(who, sp, self.pick_patch(sess['patient']))
            pr['reselect'] = not r.ok and bool(sess['patch'])
            return
        if pr.get('fails', 0) > 4:
            ep.end(who, sp, 'giving up')
            return
        if not sess['eyewear']:
            r = ep.confirm_eyewear(who, sp)
            if not r.ok:
                pr['fails'] = pr.get('fails', 0) + 1
                self.fix(s, r)
            return
        if not pr.get('params'):
            r = ep.set_params(who, s, self.params())
            pr['params'] = r.ok
            if not r.ok:
                pr['fails'] = pr.get('fails', 0) + 1
                self.fix(s, r)
            return
        st = states[s]
        if st in ('standby', 'fault') and not pr.get('armed'):
            if st == 'fault':
                ep.sim(s, 'ClearFaultCause')
                ep.call(who, u['path'], UNIT, 'AcknowledgeFault')
                return
            r = ep.arm(who, s)
            pr['armed'] = r.ok
            pr['arms'] = pr.get('arms', 0) + 1
            if not r.ok:
                self.fix(s, r)
                if pr['arms'] > 4 or (r.short() not in ('InterlockOpen', 'DeviceFault',
                                                        'ClockUnreliable') + GONE
                                      and rng.random() < 0.5):
                    ep.end(who, sp, 'not armed: %s' % r.short())
                elif r.short() == 'ParameterOutOfRange':
                    pr['params'] = False
            return
        if st == 'ready':
            if u['fs']:
                ep.footswitch(s, False)   # held before READY: release first
            elif rng.random() < 0.85:
                ep.footswitch(s, True)
                u['release_at'] = time.monotonic() + rng.choice([0.3, 0.8, 1.5, 3.0, 6.0])
            else:
                ep.disarm(who, s)
            return
        if st == 'emitting':
            if u['fs'] and not u.get('release_at'):
                u['release_at'] = time.monotonic() + rng.uniform(0.2, 3.0)
            else:
                ep.footswitch(s, False)
            return
        if st in ('standby', 'fault') and pr.get('armed'):
            # disarmed: by us, a fault, an interlock, a limit, the idle timeout
            if u['fs']:
                ep.footswitch(s, False)
            roll = rng.random()
            pr['armed'] = False
            if roll < 0.5:
                ep.end(who, sp, rng.choice(['done', 'ok', 'fine \u00e9']))
            elif roll < 0.7:
                pr['reselect'] = True
                pr['tries'] = 0
            return
        if st in ('ready', 'emitting', 'arming'):
            return
        if st in ('disconnected', None):
            ep.replug(s)
            return
        ep.wait(0.1)

    def fix(self, s, r):
        """The technician deals with why the unit did not arm (most of the time)."""
        ep, rng = self.ep, self.rng
        u = ep.units[s]
        if rng.random() < 0.2:
            return
        why = r.short()
        if why == 'InterlockOpen':
            for name in sorted(u['open']):
                if ep.sim(s, 'SetInterlock', name, False).ok:
                    u['open'].discard(name)
        elif why == 'DeviceFault':
            ep.sim(s, 'ClearFaultCause')
            ep.sim(s, 'SetEnergyDrift', dbus.Int32(0))
            ep.call(ep.owner_of(s) or 'op1', u['path'], UNIT, 'AcknowledgeFault')
        elif why == 'ClockUnreliable':
            if ep.world.clock_offset:
                ep.set_clock(0)
            elif ep.world.rtc_skew[s]:
                ep.rtc_skew(s, 0)
        elif why in GONE:
            ep.replug(s)

    def other_client(self, s):
        owner = self.ep.owner_of(s)
        return self.rng.choice([c for c in CLIENTS if c != owner])

    def intrude(self, s):
        """A connection that did not open the unit's session acts on it."""
        ep, rng = self.ep, self.rng
        u = ep.units[s]
        who = self.other_client(s)
        sp = u['session']
        roll = rng.random()
        if sp and roll < 0.2:
            ep.select_patch(who, sp, rng.choice(PATCHES))
        elif sp and roll < 0.3:
            ep.confirm_eyewear(who, sp)
        elif roll < 0.45:
            ep.set_params(who, s, self.params())
        elif roll < 0.6:
            ep.arm(who, s)
        elif sp and roll < 0.65:
            ep.end(who, sp, 'intruder')
        elif sp and roll < 0.68:
            ep.record_endpoint(who, sp, ep.sessions[sp]['patch'] or 'crown')
        elif roll < 0.8:
            ep.disarm(who, s)
        elif roll < 0.9:
            ep.check_patch(who, self.pick_patient(s), rng.choice(PATCHES))
        else:
            ep.history(who, self.pick_patient(s))

    def perturb(self, s):
        ep, rng, f = self.ep, self.rng, self.f
        u = ep.units[s]
        weights = {'faults': 1.5, 'drop': 4, 'drop-status': 2, 'unplug': 1.5, 'drift': 1.5,
                   'counter': 1, 'kill': 0.7, 'signals': 0.4, 'leaver': 1.5, 'clock': 3,
                   'disk': 1.5, 'rtc': 0.6, 'hostile': 0.7, 'late-reports': 1.5}
        choices = [('wait', 6), ('footswitch', 1), ('interlock', 2), ('disarm', 1.5),
                   ('check', 4)]
        for feature, w in weights.items():
            if feature not in f:
                continue
            if feature == 'clock' and not ep.world.faketime:
                continue
            if feature == 'disk' and not ep.world.fs:
                continue
            choices.append(({'faults': 'fault', 'signals': 'signal', 'leaver': 'leave'}.get(
                feature, feature), w))
        if ep.world.polkit is not None:
            choices.append(('polkit', 0.7))
        total = sum(w for _, w in choices)
        x = rng.uniform(0, total)
        for what, w in choices:
            x -= w
            if x <= 0:
                break
        getattr(self, 'p_' + what.replace('-', '_'))(s, u)

    # --- perturbations ---------------------------------------------------------------------

    def p_wait(self, s, u):
        self.ep.wait(self.rng.choice([0.05, 0.1, 0.3, 0.7, 1.5]))

    def p_footswitch(self, s, u):
        self.ep.footswitch(s, not u['fs'])
        u['release_at'] = None

    def p_interlock(self, s, u):
        ep, rng = self.ep, self.rng
        if u['open'] and rng.random() < 0.7:
            name = rng.choice(sorted(u['open']))
            if ep.sim(s, 'SetInterlock', name, False).ok:
                u['open'].discard(name)
        else:
            name = rng.choice(INTERLOCKS)
            ep.step('interlock %s opens on %s' % (name, s))
            if ep.sim(s, 'SetInterlock', name, True).ok:
                u['open'].add(name)

    def p_disarm(self, s, u):
        self.ep.disarm(self.rng.choice(CLIENTS + ['hands']), s)

    def p_check(self, s, u):
        ep, rng = self.ep, self.rng
        who = rng.choice(CLIENTS)
        patient = self.pick_patient(s)
        if rng.random() < 0.6:
            ep.check_patch(who, patient, self.pick_patch(patient))
        else:
            ep.history(who, patient)

    def p_fault(self, s, u):
        ep, rng = self.ep, self.rng
        roll = rng.random()
        if roll < 0.5:
            ep.inject_fault(s, rng.choice(SIM_FAULTS))
        elif roll < 0.8:
            ep.sim(s, 'ClearFaultCause')
            ep.call(rng.choice(CLIENTS), u['path'], UNIT, 'AcknowledgeFault')
        else:
            ep.sim(s, 'ClearFaultCause')

    def p_drop(self, s, u):
        cmd = self.rng.choice([c for c in DROP_COMMANDS if c != 'get-status'])
        self.ep.step('DropNextReply(%s) on %s' % (cmd, s))
        self.ep.sim(s, 'DropNextReply', cmd)

    def p_drop_status(self, s, u):
        """The status read of the next disarm lost: drop it, then disarm now or soon."""
        ep, rng = self.ep, self.rng
        ep.step('DropNextReply(get-status) on %s' % s)
        ep.sim(s, 'DropNextReply', 'get-status')
        if rng.random() < 0.7:
            ep.disarm(ep.owner_of(s) or 'hands', s)

    def p_unplug(self, s, u):
        if u['plugged']:
            self.ep.unplug(s)
        else:
            self.ep.replug(s)

    def p_drift(self, s, u):
        ppm = self.rng.choice([0, 0, 210000, -210000, 250000, -250000, 300000, 100000])
        self.ep.step('energy drift %+d ppm on %s' % (ppm, s))
        self.ep.sim(s, 'SetEnergyDrift', dbus.Int32(ppm))

    def p_counter(self, s, u):
        ep, rng = self.ep, self.rng
        ep.drain()
        cur = max(0, ep.truth.max_shot[s])
        roll = rng.random()
        if roll < 0.5 and 'counter-live' in self.f:
            # a faulty unit's counter goes back under the daemon's eyes (armed or not)
            ep.set_shot_counter(s, max(0, cur - rng.randrange(1, 20)))
        elif roll < 0.7 and 'counter-forward' in self.f:
            # a faulty unit's counter leaps, most interesting while it is armed
            armed = [o for o in ep.serials if ep.unit_state(o) in ('ready', 'emitting')]
            if armed:
                s = rng.choice(armed)
                cur = max(0, ep.truth.max_shot[s])
            ep.set_shot_counter(s, cur + rng.randrange(2, 1000))
        else:
            # the unit comes back lower after the host went down (NV loss, reflash)
            ep.kill(nv_back=(s, rng.choice([rng.randrange(1, 10), 10 ** 6])))

    def p_kill(self, s, u):
        ep, rng = self.ep, self.rng
        if rng.random() < 0.5:
            ep.wait(rng.uniform(0, 0.15))    # inside the flush window after a pulse
        ep.kill(free_disk=rng.random() < 0.5)

    def p_signal(self, s, u):
        sig = self.rng.choice([signal.SIGHUP, signal.SIGPIPE, signal.SIGTERM, signal.SIGINT])
        self.ep.stop_and_start(sig)

    def p_leave(self, s, u):
        ep = self.ep
        owner = ep.owner_of(s)
        if owner:
            ep.leave(owner)

    def p_clock(self, s, u):
        ep, rng = self.ep, self.rng
        if ep.world.clock_offset and rng.random() < 0.5:
            ep.set_clock(0)
        else:
            ep.set_clock(rng.choice([15 * DAY_S, 20 * DAY_S, 43 * DAY_S, -DAY_S, 200, -200,
                                     3600, -3600]))

    def p_disk(self, s, u):
        ep = self.ep
        fs = ep.world.fs
        if fs.full:
            ep.step('disk: space back')
            fs.free()
        else:
            ep.step('disk: full')
            fs.fill()
            ep.disk_filled = True
            if self.rng.random() < 0.3:
                ep.wait(self.rng.uniform(0, 0.5))
                if self.rng.random() < 0.5:
                    ep.stop_and_start(signal.SIGTERM)   # stopped before space returns
                else:
                    ep.kill()
                ep.step('disk: space back')
                fs.free()

    def p_rtc(self, s, u):
        ep, rng = self.ep, self.rng
        if rng.random() < 0.15:
            # the unit comes back from a power cut with a garbage battery-backed clock
            ep.world.rtc_skew[s] = rng.choice([2 ** 62, -2 ** 62, 2 ** 40])
            ep.kill()
            return
        skew = rng.choice([0, 0, 100, -100, 400, -4000, 86400, 10 ** 9])
        ep.rtc_skew(s, skew)

    def p_polkit(self, s, u):
        owner = self.ep.owner_of(s)
        self.ep.polkit_hang(owner or self.rng.choice(CLIENTS), s)

    def p_late_reports(self, s, u):
        """Reports held back on the interrupt endpoint, maybe fresh statuses first."""
        ep, rng = self.ep, self.rng
        ms = rng.choice([100, 250, 400, 600])
        ep.hold_reports(s, ms)
        if rng.random() < 0.4:
            # the disarm closes the treatment before its last reports come
            ep.wait(rng.uniform(0.05, ms / 1000.0))
            ep.disarm(ep.owner_of(s) or 'hands', s)
        elif rng.random() < 0.6:
            ep.wait(rng.uniform(0.05, ms / 1000.0))
            ep.sim(s, 'SetHostile', 'flood', dbus.UInt32(rng.randrange(1, 4)))

    def p_hostile(self, s, u):
        ep, rng = self.ep, self.rng
        x = rng.choice(HOSTILE)
        who = rng.choice(CLIENTS)
        roll = rng.random()
        if roll < 0.3 and u['session']:
            ep.select_patch(ep.owner_of(s), u['session'], x)
        elif roll < 0.55:
            d = dict(params())
            d[x or 'k'] = dbus.UInt32(1)
            ep.set_params(who, s, dbus.Dictionary(d, signature='sv'))
        elif roll < 0.75:
            ep.check_patch(who, 'pat-00', x)
        elif roll < 0.85:
            ep.step('StartSession(%r)' % x[:20])
            ep.call(who, u['path'], UNIT, 'StartSession', x)
        else:
            ep.step('InjectFault(%r)' % x[:20])
            ep.sim(s, 'InjectFault', x)


def random_config(rng, features):
    cfg = {'units': rng.choice([2, 2, 3]), 'features': set(features)}
    if 'testspot' in features and rng.random() < 0.5:
        cfg['test_spot'] = rng.choice([3, 5, 20])
    if rng.random() < 0.3:
        cfg['pulses_per_patch'] = rng.choice([8, 25])
    cfg['calm'] = rng.random() < 0.5
    if 'system-bus' in features and rng.random() < 0.3:
        cfg['bus'] = 'system'         # polkit (dbusmock), op3 is uid 65534
    if 'clock' in features and rng.random() > 0.45:
        cfg['features'].discard('clock')
    if 'disk' in features and rng.random() > 0.3:
        cfg['features'].discard('disk')
    return cfg


def run_random(ep, rng, seconds, features):
    prog = RandomProgram(ep, rng, features)
    ep.start()
    while ep.elapsed() < seconds:
        prog.step()
    ep.finish()


# --- the seeds: one directed program per known class of hole ----------------------------

def treat(ep, who, s, patient, patch, fire_s=0.5, end=True):
    """A whole treatment by @who; returns the session path (or None)."""
    r = ep.start_session(who, s, patient)
    if not r.ok:
        return None
    sp = str(r.value)
    if not ep.select_patch(who, sp, patch).ok:
        ep.end(who, sp, 'refused')
        return None
    ep.confirm_eyewear(who, sp)
    ep.set_params(who, s, params())
    if ep.arm(who, s).ok and ep.wait_state(s, ('ready',), 5):
        ep.footswitch(s, True)
        ep.wait(fire_s)
        ep.footswitch(s, False)
    ep.disarm(who, s)
    ep.wait_state(s, ('standby', 'fault'), 3)
    if end:
        ep.end(who, sp, 'done')
    return sp


def ready(ep, who, s, patient, patch):
    r = ep.start_session(who, s, patient)
    if not r.ok:
        return None
    sp = str(r.value)
    ep.select_patch(who, sp, patch)
    ep.confirm_eyewear(who, sp)
    ep.set_params(who, s, params())
    return sp


def seed_disarm_status_lost(ep, rng):
    """Hole 1: arm, fire 0.25-0.65 s, the status read of the disarm lost, Disarm."""
    s = ep.serials[0]
    ep.start()
    for i in range(4):
        patient, patch = 'p1-%02d' % (i // 8), PATCHES[i % 8]
        sp = ready(ep, 'op1', s, patient, patch)
        if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
            ep.footswitch(s, True)
            ep.wait(rng.uniform(0.25, 0.65))
            ep.sim(s, 'DropNextReply', 'get-status')
            ep.disarm('op1', s)
            ep.footswitch(s, False)
        ep.wait_state(s, ('standby', 'fault'), 3)
        ep.end('op1', sp)
    ep.finish()


def seed_late_after_disarm(ep, rng):
    """Hole 1 (and the review's mutant of it): the reports of the last pulses come
    after the Disarm that closed their treatment: each belongs to it, the last one
    too (reports held back, Disarm, then released)."""
    s = ep.serials[0]
    ep.start()
    for i in range(3):
        sp = ready(ep, 'op1', s, 'p1l-%d' % i, PATCHES[i])
        ep.set_params('op1', s, params(rate_mhz=10000))
        if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
            ep.footswitch(s, True)
            ep.wait(0.35)
            ep.hold_reports(s, 300)
            ep.wait(0.25)
            ep.disarm('op1', s)
            ep.footswitch(s, False)
            ep.wait(0.4)
        ep.end('op1', sp)
    ep.finish()


def seed_counter_back(ep, rng):
    """Hole 2: SIGKILL inside the flush window, the unit comes back with a lower counter."""
    s = ep.serials[0]
    ep.start()
    for i in range(3):
        patient = 'p2-%d' % i
        ready(ep, 'op1', s, patient, 'crown')
        if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
            ep.footswitch(s, True)
            ep.wait(1.0 + rng.uniform(0, 0.1))
        ep.kill(nv_back=(s, 4 + i))
        ep.check_patch('op1', patient, 'crown')
        treat(ep, 'op1', s, patient, 'crown', 0.5)
    ep.finish()


def seed_failed_reconcile(ep, rng):
    """Hole 3: SIGKILL while armed, the unit comes back reflashed (counter 0): its
    reconcile fails; the unit must still arm again (after an acknowledgement)."""
    s = ep.serials[0]
    ep.start()
    treat(ep, 'op1', s, 'p3-0', 'crown', 1.0)
    ready(ep, 'op1', s, 'p3-1', 'crown')
    if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
        ep.footswitch(s, True)
        ep.wait(0.6)
    ep.kill(nv_back=(s, 10 ** 6))
    ep.footswitch(s, False)
    treat(ep, 'op1', s, 'p3-2', 'crown', 0.5)
    ep.finish()


def seed_counter_reset_rows(ep, rng):
    """Found by the attacker (not in issue 11): after a unit comes back reflashed
    (counter 0) and the reset is acknowledged, its shot numbers repeat; every pulse's
    row (its measured energy) must still be recorded."""
    s = ep.serials[0]
    ep.start()
    treat(ep, 'op1', s, 'p101-0', 'crown', 1.0)
    ep.kill(nv_back=(s, 10 ** 6))
    ep.call('op1', ep.units[s]['path'], UNIT, 'AcknowledgeFault')
    treat(ep, 'op1', s, 'p101-1', 'crown', 0.6)
    ep.finish()


def seed_counter_back_acknowledged(ep, rng):
    """Found by the attacker (not in issue 11): SIGKILL after the pulses were stored,
    the unit comes back with a lower counter (not believed: the unit faults), the
    fault is acknowledged: the treatment left open before must not be closed from the
    reset counter with fewer pulses than it fired (and than its own pulse rows)."""
    s = ep.serials[0]
    ep.start()
    ready(ep, 'op1', s, 'p103-0', 'crown')
    if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
        ep.footswitch(s, True)
        ep.wait(1.3)
        ep.footswitch(s, False)
        ep.wait(0.4)                            # the pulse rows are stored
    ep.kill(nv_back=(s, 5))
    ep.call('op1', ep.units[s]['path'], UNIT, 'AcknowledgeFault')
    sp = ready(ep, 'op1', s, 'p103-1', 'crown')      # armed again, no pulse fired
    ep.arm('op1', s)
    ep.wait_state(s, ('ready',), 5)
    ep.disarm('op1', s)
    if sp:
        ep.end('op1', sp)
    ep.finish()


def seed_counter_back_while_armed(ep, rng):
    """Found by the attacker (not in issue 11): the unit's counter goes back while it is
    armed (a faulty unit): the daemon took it for a failing records store, disarmed
    every unit and refused to arm any until restarted, and lost the treatment's pulse
    rows; the treatment stayed open after a clean stop."""
    s = ep.serials[0]
    ep.start()
    treat(ep, 'op1', s, 'p105-0', 'crown', 2.0)
    sp = ready(ep, 'op1', s, 'p105-1', 'crown')
    if ep.arm('op1', s).ok:
        ep.drain()
        ep.set_shot_counter(s, max(0, ep.truth.max_shot[s] - 10))
        if ep.wait_state(s, ('ready',), 5):
            ep.footswitch(s, True)
            ep.wait(0.8)
            ep.footswitch(s, False)
    ep.disarm('op1', s)
    if sp:
        ep.end('op1', sp)
    ep.finish()


def seed_counter_forward(ep, rng):
    """Found by the attacker (not in issue 11): the unit's counter jumps forward while
    armed (a faulty unit); the record must not claim pulses the unit never fired."""
    s = ep.serials[0]
    ep.start()
    sp = ready(ep, 'op1', s, 'p102-0', 'crown')
    if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
        ep.footswitch(s, True)
        ep.wait(0.5)
        ep.drain()
        ep.set_shot_counter(s, ep.truth.max_shot[s] + 150)
        ep.wait(0.5)
        ep.footswitch(s, False)
    ep.disarm('op1', s)
    if sp:
        ep.end('op1', sp)
    ep.finish()


def seed_counter_forward_unplugged(ep, rng):
    """Found by the hunt (seed 6121): the counter leaps while the unit is not armed
    (fired elsewhere), then it is unplugged and plugged again: the daemon's probe finds
    shots its records miss and counts them (issue 15) on each patch of the unit's last
    session, which was never armed, by nobody known.  That account is neither a pulse
    the records invent nor an operator's arming; a count beyond the leap would be."""
    s = ep.serials[0]
    ep.start()
    sp = ready(ep, 'op1', s, 'p102-1', 'crown')
    if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
        ep.footswitch(s, True)
        ep.wait(0.3)
        ep.footswitch(s, False)
    ep.disarm('op1', s)
    if sp:
        ep.end('op1', sp)
    sp = ready(ep, 'op2', s, 'p102-2', 'left-parietal')
    ep.set_shot_counter(s, ep.truth.max_shot[s] + rng.randrange(100, 500))
    ep.wait(0.3)
    ep.unplug(s)
    ep.wait(0.2)
    ep.replug(s)
    ep.wait(1.0)
    if sp:
        ep.end('op2', sp)
    ep.finish()


def seed_disk_full_stop(ep, rng):
    """Hole 4: the disk fills while emitting, the daemon stops before space returns."""
    s = ep.serials[0]
    ep.start()
    if not ep.world.fs:
        ep.step('no tmpfs here: hole 4 not attacked')
        ep.finish()
        return
    for i, how in enumerate([signal.SIGTERM, signal.SIGKILL]):
        ready(ep, 'op1', s, 'p4-%d' % i, 'crown')
        if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
            ep.footswitch(s, True)
            ep.wait(0.4)
            ep.step('disk: full')
            ep.world.fs.fill()
            ep.disk_filled = True
            ep.wait(0.6)
            ep.footswitch(s, False)
        if how == signal.SIGTERM:
            ep.stop_and_start(signal.SIGTERM)
        else:
            ep.kill()
        ep.step('disk: space back')
        ep.world.fs.free()
        ep.wait(0.5)
    ep.finish()


def seed_testspot_two_units(ep, rng):
    """Hole 5: two units each select an untreated patch before the first test spot."""
    a, b = ep.serials[0], ep.serials[1]
    ep.start()
    spa = ready(ep, 'op1', a, 'p5-0', 'crown')
    spb = ready(ep, 'op2', b, 'p5-0', 'mid-scalp')
    for who, s in (('op1', a), ('op2', b)):
        if ep.arm(who, s).ok and ep.wait_state(s, ('ready',), 5):
            ep.footswitch(s, True)
            ep.wait(0.8)
            ep.footswitch(s, False)
        ep.disarm(who, s)
    for who, sp in (('op1', spa), ('op2', spb)):
        if sp:
            ep.end(who, sp)
    ep.finish()


def seed_testspot_clock(ep, rng):
    """Hole 5: the host clock 15 days ahead at SelectPatch, put right before Arm."""
    s = ep.serials[0]
    ep.start()
    treat(ep, 'op1', s, 'p5-1', 'crown', 1.0)
    ep.set_clock(15 * DAY_S)
    sp = ready(ep, 'op1', s, 'p5-1', 'mid-scalp')
    ep.set_clock(0)
    if sp and ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
        ep.footswitch(s, True)
        ep.wait(1.0)
        ep.footswitch(s, False)
    ep.disarm('op1', s)
    if sp:
        ep.end('op1', sp)
    ep.finish()


def seed_patient_case(ep, rng):
    """Hole 6: after demo-001 is treated, DEMO-001 must not be eligible."""
    s = ep.serials[0]
    ep.start()
    treat(ep, 'op1', s, 'demo-001', 'crown', 0.5)
    ep.check_patch('op1', 'DEMO-001', 'crown')
    ep.history('op1', 'Demo-001')
    treat(ep, 'op1', s, 'DEMO-001', 'crown', 0.5)
    ep.finish()


def seed_old_report(ep, rng):
    """Hole 7: pulse reports arriving after a status counter newer than them (reports
    held back on the interrupt endpoint, then fresh status reports first) must not
    count twice toward the patch's pulse limit (12: the patch fires 12, not fewer)."""
    s = ep.serials[0]
    ep.start()
    for i in range(2):
        sp = ready(ep, 'op1', s, 'p7-%d' % i, PATCHES[i])
        ep.set_params('op1', s, params(rate_mhz=10000))
        if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
            ep.footswitch(s, True)
            ep.wait(0.15)
            ep.hold_reports(s, 400)
            ep.wait(0.1)
            ep.step('then fresh status reports first')
            ep.sim(s, 'SetHostile', 'flood', dbus.UInt32(3))
            ep.wait(2.0)
            ep.footswitch(s, False)
        ep.disarm('op1', s)
        ep.wait(0.3)
        ep.end('op1', sp)
    ep.finish()


def seed_garbage_rtc(ep, rng):
    """Hole 7: a unit whose battery-backed clock comes back as garbage (2^62 s):
    rtc_s * 1000 must not overflow (UBSan in the sanitized daemon)."""
    s = ep.serials[0]
    ep.start()
    ep.world.rtc_skew[s] = 2 ** 62
    ep.kill()
    ready(ep, 'op1', s, 'p7-9', 'crown')
    ep.arm('op1', s)
    ep.wait(0.5)
    ep.rtc_skew(s, 0)
    ep.finish()


def seed_polkit_vanish(ep, rng):
    """Hole 9: polkit queries whose session vanishes before polkit answers (its client
    left) must be freed: after 30 such rounds (90 queries, above the 64 a user may have
    waiting) an authorized call still succeeds (system bus, polkit from dbusmock).
    ROUNDS=90 (270 queries) reached the old global cap of 256: refused from round 86."""
    s = ep.serials[0]
    ep.start()
    mock = ep.world.polkit
    for i in range(int(os.environ.get('ATTACK_POLKIT_ROUNDS', 30))):
        who = 'temp%d' % i
        r = ep.start_session(who, s, 'p9-%d' % i)
        if not r.ok:
            ep.found('polkit-stuck', 'round %d: StartSession refused: %s %s' % (
                i, r.short(), r.message))
            break
        sp = str(r.value)
        mock.SimulateHang(True)
        c = ep.client(who)
        for patch in ('crown', 'mid-scalp', 'occipital'):
            c.bus.get_object('org.smplaser.Laser1', sp, introspect=False).get_dbus_method(
                'SelectPatch', SESSION)(patch, reply_handler=lambda *a: None,
                                        error_handler=lambda e: None, timeout=5)
        ep.wait(0.05)
        ep.leave(who)                   # the session ends: its object vanishes
        ep.wait_state(s, ('standby',), 2)
        mock.ReleaseHangingCalls()
        mock.SimulateHang(False)
    r = ep.call('op1', ep.units[s]['path'], UNIT, 'SetParameters', params())
    if not r.ok and r.short() == 'NotAuthorized':
        ep.found('polkit-stuck', 'after rounds of queries left waiting: %s' % r.message)
    ep.finish()


def seed_not_owner(ep, rng):
    """Hole 8: a second connection changes a session it did not open."""
    s = ep.serials[0]
    ep.start()
    sp = ready(ep, 'op1', s, 'p8-0', 'crown')
    ep.select_patch('op2', sp, 'mid-scalp')
    ep.confirm_eyewear('op2', sp)
    ep.set_params('op2', s, params())
    ep.arm('op2', s)
    ep.wait_state(s, ('ready', 'standby'), 4)
    ep.disarm('op2', s)
    ep.end('op2', sp, 'not mine')
    ep.finish()


def seed_signals(ep, rng):
    """Hole 11: SIGHUP and SIGPIPE while armed; steps missing from the audit trail."""
    s = ep.serials[0]
    ep.start()
    for i, sig in enumerate([signal.SIGHUP, signal.SIGPIPE]):
        ready(ep, 'op1', s, 'p11-%d' % i, 'crown')
        if ep.arm('op1', s).ok:
            ep.wait_state(s, ('ready',), 5)
        ep.stop_and_start(sig)
    treat(ep, 'op1', s, 'p11-9', 'crown', 0.3)
    ep.finish()


def seed_utf8(ep, rng):
    """Hole 12: a multi-byte character straddling byte 64; escapes echoed."""
    s = ep.serials[0]
    ep.start()
    sp = ready(ep, 'op1', s, 'p12-0', 'crown')
    ep.select_patch('op1', sp, 'a' * 63 + '\u00e9')
    ep.select_patch('op1', sp, 'crown\x1b[2J')
    d = dict(params())
    d['b' * 62 + '\u20ac'] = dbus.UInt32(1)
    ep.set_params('op1', s, dbus.Dictionary(d, signature='sv'))
    ep.end('op1', sp)
    ep.finish()


def seed_unplug_props(ep, rng):
    """Holes 13 and 15: a client's property cache over unplug and replug."""
    s = ep.serials[0]
    ep.start()
    sp = ready(ep, 'op1', s, 'p13-0', 'crown')
    if ep.arm('op1', s).ok and ep.wait_state(s, ('ready',), 5):
        ep.footswitch(s, True)
        ep.wait(0.4)
    ep.unplug(s)
    ep.footswitch(s, False)
    ep.wait(1.0)
    ep.replug(s)
    ep.wait(1.0)
    if sp:
        ep.end('op1', sp)
    ep.finish()


def seed_fault_names(ep, rng):
    """Hole 14: every unit fault must be named; no property named like a signal."""
    s = ep.serials[0]
    ep.start()
    for f in ('overtemp', 'shutter', 'cooling'):
        ep.inject_fault(s, f)
        ep.sim(s, 'ClearFaultCause')
        ep.call('op1', ep.units[s]['path'], UNIT, 'AcknowledgeFault')
        ep.wait(0.3)
    ep.finish()


def seed_fault_while_latched(ep, rng):
    """Found by the attacker (not in issue 11): the unit acknowledged a fault but the
    reply was lost (the daemon keeps its latch), then the unit faults again: the Fault
    signal must name the new fault (it said code "interlock" with the message "the
    unit reports a internal fault")."""
    s = ep.serials[0]
    ep.start()
    ep.inject_fault(s, 'interlock')
    ep.sim(s, 'ClearFaultCause')
    ep.sim(s, 'DropNextReply', 'ack-fault')
    ep.call('op1', ep.units[s]['path'], UNIT, 'AcknowledgeFault')
    ep.wait(0.3)
    ep.inject_fault(s, 'internal')
    ep.sim(s, 'ClearFaultCause')
    ep.call('op1', ep.units[s]['path'], UNIT, 'AcknowledgeFault')
    ep.finish()


# name -> (function, config, hole numbers of issue 11 it attacks)
SEEDS = {
    'disarm-status-lost': (seed_disarm_status_lost, {'units': 1}, [1]),
    'late-after-disarm': (seed_late_after_disarm, {'units': 1}, [1]),
    'counter-back': (seed_counter_back, {'units': 1}, [2]),
    'failed-reconcile': (seed_failed_reconcile, {'units': 1, 'liveness': True}, [3]),
    'disk-full-stop': (seed_disk_full_stop, {'units': 1, 'features': {'disk'}}, [4]),
    'testspot-two-units': (seed_testspot_two_units, {'units': 2, 'test_spot': 3}, [5]),
    'testspot-clock': (seed_testspot_clock, {'units': 1, 'test_spot': 3,
                                             'features': {'clock'}}, [5]),
    'patient-case': (seed_patient_case, {'units': 1}, [6]),
    'old-report': (seed_old_report, {'units': 1, 'pulses_per_patch': 12}, [7]),
    'garbage-rtc': (seed_garbage_rtc, {'units': 1}, [7]),
    'not-owner': (seed_not_owner, {'units': 1}, [8]),
    'polkit-vanish': (seed_polkit_vanish, {'units': 1, 'bus': 'system'}, [9]),
    'signals': (seed_signals, {'units': 1}, [11]),
    'utf8': (seed_utf8, {'units': 1}, [12]),
    'unplug-props': (seed_unplug_props, {'units': 1}, [13, 15]),
    'fault-names': (seed_fault_names, {'units': 1}, [14]),
    'counter-reset-rows': (seed_counter_reset_rows, {'units': 1}, [101]),
    'counter-forward': (seed_counter_forward, {'units': 1}, [102]),
    'counter-forward-unplugged': (seed_counter_forward_unplugged, {'units': 1}, [102]),
    'counter-back-acknowledged': (seed_counter_back_acknowledged, {'units': 1}, [103]),
    'fault-while-latched': (seed_fault_while_latched, {'units': 1}, [104]),
    'counter-back-while-armed': (seed_counter_back_while_armed,
                                 {'units': 1, 'liveness': True}, [105]),
}

# hole -> the violation classes only that hole produces: ignored (in "make check")
# while the hole is listed open, except by its own seeds
HOLE_CLASSES = {
    8: {'S6-not-owner'},
    11: {'signal-unorderly', 'audit-missing'},
    12: {'no-reply', 'echo-control', 'records-utf8'},
    13: {'prop-cache'},
    14: {'api-name-clash', 'fault-name'},
    15: {'unplug-objects'},
    101: {'S3-rows-reset'},
    102: {'S3-counter-jump'},
    103: {'S3-reset-count'},
    104: {'fault-name'},
    105: {'store-outage'},
}

def hole_sign(hole, v, ep):
    """Whether violation @v of episode @ep is the mark of @hole (for the time-to-find
    of one hole among the generic S2/S3 classes several holes share)."""
    backs = any(ep.units[s]['counter_back_at'] for s in ep.serials)
    if hole == 1:
        return v.cls in ('S3-uncounted', 'S3-lost') and not backs
    if hole == 2:
        return backs and v.cls in ('S3-lost', 'S3-extra', 'S3-misattributed', 'S2-decision',
                                   'S2-reemit', 'S3-reset-count')
    if hole == 3:
        return v.cls in ('liveness-arm', 'S3-open')
    if hole == 105:
        return v.cls == 'store-outage' or (backs and v.cls in ('S3-open', 'S3-lost'))
    if hole == 4:
        return ep.disk_filled and v.cls in ('S3-rows-lost', 'S3-lost', 'S3-uncounted')
    if hole == 5:
        return v.cls in ('S2-testspot', 'S5-limit')
    if hole == 6:
        typed = re.findall(r"'([A-Za-z0-9._-]+)'", v.detail)
        return v.cls.startswith('S2-') and not backs and (
            len({t.casefold() for t in typed}) < len(set(typed)) or
            any(t != t.lower() for t in typed))
    if hole == 7:
        return v.cls in ('limit-early', 'S8-clock', 'crash')
    return v.cls in HOLE_CLASSES.get(hole, ())


# hole -> what the random program must leave out while it is open
HOLE_FEATURES = {
    1: {'drop-status'},
    2: {'counter'},
    3: {'counter', 'drop-status'},
    4: {'disk'},
    5: {'testspot', 'clock'},
    6: {'case'},
    7: {'rtc', 'late-reports'},
    8: {'intruder'},
    9: {'system-bus'},
    10: set(),
    11: {'signals'},
    12: {'hostile'},
    13: {'unplug'},
    14: set(),
    15: {'unplug'},
    101: set(),
    102: {'counter-forward'},
    103: set(),
    104: set(),
    105: {'counter-live'},
}
