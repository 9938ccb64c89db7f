#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Attacks of the third outside review (docs/reliability.md, "Attacks of the
third review"): each test tries to break S2, S3, S4 or S6 in a way no earlier
test tried, and judges the daemon by the truth outside it: the simulated
unit's fired log (<state>/sim-<serial>.fired), not the daemon's own account.

Same harness as tests/integration/test_attacks.py: a private bus,
smplaserd --session --sim.
Usage: tests/attack/test_attack3.py [test_name...]   (TAP on stdout)

It preloads build/tests/slow-threads.so (tests/integration/preload.mk) into the
daemon for the tests that starve its worker threads; LD_PRELOAD does not work
into an ASan binary, so this suite runs the plain build/smplaserd.
"""
import os
import sys
import time

import dbus

TOP_DIR = os.path.abspath(os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', '..'))
os.environ.setdefault('SMPLASERD', os.path.join(TOP_DIR, 'build', 'smplaserd'))
sys.path.insert(0, os.path.join(TOP_DIR, 'tests', 'integration'))
from harness import Env, main_with_preload, pump, test, wait_until  # noqa: E402

SLOW_THREADS = os.path.join(TOP_DIR, 'build', 'tests', 'slow-threads.so')


class StarvedEnv(Env):
    """The daemon with slow-threads.so: its worker threads starve while the flag
    file exists (starve(True)), the event loop does not."""

    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.flag = os.path.join(self.tmp, 'starve')

    def env(self):
        e = super().env()
        e['LD_PRELOAD'] = SLOW_THREADS
        e['SMPL_SLOW_THREADS_FLAG'] = self.flag
        return e

    def starve(self, on):
        if on:
            open(self.flag, 'w').close()
        elif os.path.exists(self.flag):
            os.unlink(self.flag)


def fired_shots(env, serial='SIM00001'):
    return [p['shot'] for p in env.fired(serial)]


def treatments(env, patient):
    return env.query('SELECT * FROM treatments WHERE patient = ? COLLATE NOCASE ORDER BY id',
                     patient)


def set_nv_counter(env, count, serial='SIM00001'):
    os.makedirs(env.state_dir, exist_ok=True)
    with open(os.path.join(env.state_dir, 'sim-%s.nv' % serial), 'w') as f:
        f.write('shot_count=%d rtc_offset_s=0\n' % count)


@test
def test_counter_wrapping_at_2_32_loses_no_pulse_and_frees_no_patch():
    """A unit whose 32-bit shot counter wraps (4294967293 -> ... -> 0 -> 1) while it
    emits: every pulse it fired is in the records once, in the treatment armed for
    it; the patch is in its cooldown; nothing fires after the daemon disarmed; and
    the unit is not believed to have gone back without an authorized acknowledge."""
    with Env() as env:
        set_nv_counter(env, 2 ** 32 - 3)
        env.start()
        assert int(env.unit_prop('ShotCount')) == 2 ** 32 - 3, env.unit_prop('ShotCount')
        spath = env.ready_session('p-wrap', 'crown')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        pump(1.6)                       # 5 Hz: 8 pulses, the counter wraps at the 3rd
        env.sim().SetFootswitch(False)
        pump(0.3)
        env.unit().Disarm()
        env.wait_unit_state('standby', 5)
        pump(0.3)
        fired = fired_shots(env)
        print('# fired shots %s; LatchedFault %r' % (fired, env.unit_prop('LatchedFault')))
        assert len(fired) >= 3 and 0 in fired, 'the counter did not wrap: %s' % fired
        env.settle_records()
        rows = env.query('SELECT shot, treatment_id FROM pulses ORDER BY id')
        (t,) = treatments(env, 'p-wrap')
        assert [r['shot'] for r in rows] == fired, (rows, fired)
        assert all(r['treatment_id'] == t['id'] for r in rows), rows
        assert t['pulses_recorded'] == len(fired), t
        assert t['pulse_count'] is None or t['pulse_count'] >= len(fired), t
        eligible, _, why = env.manager().CheckPatch('p-wrap', 'crown')
        assert not eligible, 'a patch that emitted is eligible again: %s' % why
        if env.unit_prop('LatchedFault'):
            env.record_endpoints(spath)
            env.session(spath).End('done')
        else:
            env.end_session(spath)


@test
def test_no_pulse_fires_after_disarm_is_answered():
    """S4 (the attacker's S4-after-disarm, seed 1212 of docs/reliability.md, "not
    investigated"): a client told that Disarm succeeded may take off the eyewear.
    The unit's DISARM runs on its safe worker thread; on a loaded host (or a unit
    whose disarm request takes its retries) that thread runs late.  Disarm must
    not be answered before the unit was told to disarm: no pulse in the unit's
    fired log after the answer."""
    with StarvedEnv() as env:
        env.start()
        spath = env.ready_session('p-dis', 'crown')
        rounds = []
        for i in range(2):
            env.arm_to_ready()
            env.sim().SetFootswitch(True)
            wait_until(lambda: len(env.fired()) > sum(rounds) + 1, 3, 'pulses')
            env.starve(True)
            t0 = time.time()
            env.unit(bus=env.second_client()).Disarm(timeout=10)
            answered_ms = int(time.time() * 1000)
            at_answer = len(env.fired())
            pump(1.0)
            env.starve(False)
            env.sim().SetFootswitch(False)
            env.wait_unit_state('standby', 5)
            pump(0.3)
            fired = env.fired()
            late = fired[at_answer:]
            print('# round %d: Disarm answered in %.0f ms; %d pulses in the log after the '
                  'answer' % (i, answered_ms - t0 * 1000, len(late)))
            assert not late, 'fired after Disarm was answered (at %d ms): %s' % (
                answered_ms, late)
            rounds.append(len(fired) - sum(rounds))
        env.end_session(spath)


@test
def test_arm_and_records_go_on_while_an_export_is_stuck():
    """Arm while an Export runs: the caller's pipe is never read (a stuck
    reader), so the export holds its read snapshot.  Arming, its durable
    treatment, every pulse row and the cooldown answer must not wait for it."""
    import fcntl
    with Env() as env:
        env.start()
        for i in range(3):                      # rows enough to fill a small pipe
            env.treat('p-exp%d' % (i + 2), 'crown', 0.3)
        r, w = os.pipe()
        fcntl.fcntl(w, 1031, 4096)              # F_SETPIPE_SZ: one page
        records = dbus.Interface(env.obj('/org/smplaser/Laser1'), 'org.smplaser.Laser1.Records')
        done = []
        records.Export(dbus.types.UnixFd(w), dbus.UInt64(0), 'json', timeout=120,
                       reply_handler=lambda *a: done.append(('ok', a)),
                       error_handler=lambda e: done.append(('error', e)))
        os.close(w)
        pump(1.0)
        assert not done, 'the export did not block on its pipe: %s' % done
        t0 = time.monotonic()
        spath = env.ready_session('p-exp1', 'occipital')
        env.arm_to_ready()
        pulses = env.fire(0.8)
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath)
        took = time.monotonic() - t0
        assert not done, 'the export ended meanwhile: %s' % done
        eligible, _, why = env.manager().CheckPatch('p-exp1', 'occipital')
        assert not eligible, why
        fired = [p['shot'] for p in env.fired()]
        rows = [x['shot'] for x in env.query('SELECT shot FROM pulses ORDER BY shot')]
        assert rows == fired and pulses > 0, (rows, fired)
        print('# a treatment of %d pulses in %.1f s beside the stuck export' % (pulses, took))
        os.close(r)
        wait_until(lambda: done, 10, 'the export to end once its reader closed')


if __name__ == '__main__':
    sys.exit(main_with_preload([(SLOW_THREADS, 'make all')]))
