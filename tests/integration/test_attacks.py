#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""Attacks on smplaserd's records and rules (issue 11, DESIGN S2, S3, S6): each
test tries to get a pulse lost, a cooldown or test-spot review shortened, or a
session changed by someone who does not own it, and judges the daemon by the
truth outside it: the simulated unit's fired log (<state>/sim-<serial>.fired,
every pulse the unit fired) against the records.

Same harness as test_daemon.py: a private bus, smplaserd --session --sim.
Usage: tests/integration/test_attacks.py [test_name...]   (TAP on stdout)
"""
import os
import signal
import sys

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (GOOD_PARAMS, PROPS, ROOT, UNIT1, Env, expect_error, main, pump,  # noqa: E402
                     test, wait_until)

TEST_SPOT = '[rules]\ntest_spot = true\ntest_spot_pulses = 3\ntest_spot_review_days = 14\n'


def fired_shots(env, serial='SIM00001'):
    return [p['shot'] for p in env.fired(serial)]


def assert_every_fired_pulse_recorded_once(env, serial='SIM00001'):
    """S3 by the truth: the fired log and the records' pulses are the same shots,
    each once."""
    fired = fired_shots(env, serial)
    recorded = env.recorded_shots(serial)
    assert recorded == sorted(set(recorded)), 'a shot recorded twice: %s' % recorded
    missing = sorted(set(fired) - set(recorded))
    assert not missing, 'fired but not in the records: %s (of %d fired)' % (missing, len(fired))
    extra = sorted(set(recorded) - set(fired))
    assert not extra, 'in the records but never fired: %s' % extra
    return len(fired)


def treatments(env, patient):
    return env.query('SELECT * FROM treatments WHERE patient = ? COLLATE NOCASE ORDER BY id',
                     patient)


def wait_settled(env, patient):
    """Every treatment of @patient closed with its end counter known."""
    wait_until(lambda: all(t['outcome'] not in ('open', 'unknown') and
                           t['shot_at_end'] is not None for t in treatments(env, patient)),
               5, 'the treatments settled from the counter')


def fire_held(env, seconds):
    """Holds the footswitch @seconds with the unit's reports held back: the daemon
    hears of the pulses only when the reports are released."""
    env.sim().HoldReports(True)
    env.sim().SetFootswitch(True)
    pump(seconds)
    env.sim().SetFootswitch(False)


@test
def test_late_reports_after_a_disarm_whose_status_read_failed():
    """Issue 11.1: pulses whose reports reach the daemon after a Disarm whose status
    read was lost.  Every pulse the unit fired is in the records once, in the
    treatment it was fired in, and the treatment's count is settled from the
    unit's next good read."""
    with Env() as env:
        env.start()
        for i, patch in enumerate(('crown', 'occipital', 'left-temporal')):
            spath = env.ready_session('p-late-%d' % i, patch)
            env.arm_to_ready()
            fire_held(env, 0.45 + 0.1 * i)
            env.sim().DropNextReply('get-status')
            env.unit().Disarm()
            env.sim().HoldReports(False)
            env.wait_unit_state('standby')
            env.end_session(spath, 'done')
            wait_settled(env, 'p-late-%d' % i)
        n = assert_every_fired_pulse_recorded_once(env)
        assert n > 0
        for i in range(3):
            t = treatments(env, 'p-late-%d' % i)
            assert len(t) == 1, t
            fired = [s for s in fired_shots(env) if t[0]['shot_at_arm'] < s <= t[0]['shot_at_end']]
            assert t[0]['pulse_count'] == len(fired) == t[0]['pulses_recorded'] > 0, (t, fired)
            assert t[0]['outcome'] == 'completed', t
        assert env.unit_prop('LatchedFault') == '', env.unit_prop('LatchedFault')
        print('# %d pulses, all late, all recorded once' % n)


@test
def test_last_pulse_in_flight_after_disarm_is_recorded():
    """The reports of a burst arrive after the Disarm was recorded with the unit's
    counter: the last one included (shot == the counter at the disarm) they belong
    to the closed treatment, and none is taken for a pulse fired while disarmed."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-flight', 'crown')
        env.arm_to_ready()
        fire_held(env, 0.55)
        env.unit().Disarm()
        env.sim().HoldReports(False)
        env.wait_unit_state('standby')
        pump(0.3)
        assert env.unit_prop('LatchedFault') == '', 'a late report taken for a stray pulse: %s' % (
            env.unit_prop('LatchedFault'))
        env.end_session(spath, 'done')
        n = assert_every_fired_pulse_recorded_once(env)
        t = treatments(env, 'p-flight')[0]
        assert t['pulse_count'] == t['pulses_recorded'] == n > 0, (t, n)
        assert not env.query("SELECT * FROM audit WHERE reason IN ('unexpected-pulse',"
                             " 'stray-pulse')")


def _nv(env, serial='SIM00001'):
    with open(os.path.join(env.state_dir, 'sim-%s.nv' % serial)) as f:
        return dict(kv.split('=') for kv in f.read().split())


def _set_nv_counter(env, count, serial='SIM00001'):
    nv = _nv(env, serial)
    with open(os.path.join(env.state_dir, 'sim-%s.nv' % serial), 'w') as f:
        f.write('shot_count=%d rtc_offset_s=%s\n' % (count, nv['rtc_offset_s']))


@test
def test_counter_gone_back_after_kill_is_never_believed():
    """Issue 11.2 and 11.3: SIGKILL right after the first pulses, then the unit comes
    back with its counter where it was at arming (NV loss, a reflash).  The patch,
    which emitted, is never freed: the emission was durable before any client heard
    of it; the counter is not believed (fault counter-went-back, audited); the
    treatment that cannot be settled is ended unknown, so the unit is not blocked
    for good: after an authorized acknowledge it arms again."""
    with Env() as env:
        env.start()
        pulses = []
        env.bus.add_signal_receiver(lambda *a: pulses.append(a), 'Pulse',
                                    'org.smplaser.Laser1.Unit')
        env.ready_session('p-back', 'crown')
        env.arm_to_ready()
        at_arm = int(env.unit_prop('ShotCount'))
        env.sim().SetFootswitch(True)
        wait_until(lambda: pulses, 3, 'a Pulse signal on the bus')
        env.kill(signal.SIGKILL)        # inside the 100 ms flush window
        assert fired_shots(env), 'nothing fired'
        _set_nv_counter(env, at_arm)
        env.start()
        wait_until(lambda: env.unit_prop('LatchedFault') == 'counter-went-back', 5,
                   'the unit faulted for its counter (Fault %s)' % env.unit_prop('LatchedFault'))
        eligible, _, why = env.manager().CheckPatch('p-back', 'crown')
        assert not eligible, 'a patch that emitted was freed by a lost count: %s' % why
        t = treatments(env, 'p-back')
        assert len(t) == 1 and t[0]['outcome'] == 'unknown', t
        assert t[0]['emitting_ms'], t
        assert env.query("SELECT * FROM audit WHERE reason = 'counter-went-back'")
        spath = env.ready_session('p-back2', 'occipital')
        expect_error('DeviceFault', env.unit().Arm, contains=('counter',))
        env.unit().AcknowledgeFault()
        env.arm_to_ready()
        assert env.fire(0.3) > 0
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, 'done')
        assert not env.manager().CheckPatch('p-back', 'crown')[0]


@test
def test_counter_below_recorded_pulses_is_never_believed():
    """Issue 11.2: six pulses committed, then the counter comes back lower than the
    highest recorded shot: the treatment never claims fewer pulses than its rows."""
    with Env() as env:
        env.start()
        env.ready_session('p-rows', 'crown')
        env.arm_to_ready()
        at_arm = int(env.unit_prop('ShotCount'))
        assert env.fire(0.7) > 0
        wait_until(lambda: len(env.recorded_shots()) == len(fired_shots(env)), 3,
                   'the pulses committed')
        env.kill(signal.SIGKILL)
        _set_nv_counter(env, at_arm + 1)
        env.start()
        wait_until(lambda: env.unit_prop('LatchedFault') == 'counter-went-back', 5, 'the fault')
        t = treatments(env, 'p-rows')[0]
        assert t['outcome'] == 'unknown', t
        assert t['pulse_count'] is None or t['pulse_count'] >= t['pulses_recorded'], t
        assert t['pulses_recorded'] == len(fired_shots(env)), t
        assert not env.manager().CheckPatch('p-rows', 'crown')[0]


@test
def test_live_counter_below_the_records_is_never_believed():
    """The unit's counter set back while it is plugged in (Simulator.SetShotCounter):
    the next Arm's read finds it below the records, refuses and faults the unit."""
    with Env() as env:
        env.start()
        _, pulses = env.treat('p-live', 'crown', 0.4)
        assert pulses > 0
        env.sim().SetShotCounter(dbus.UInt32(0))
        env.ready_session('p-live2', 'occipital')
        expect_error('DeviceFault', env.unit().Arm, contains=('counter-went-back',))
        assert env.unit_prop('LatchedFault') == 'counter-went-back'
        assert env.unit_prop('State') == 'standby'
        assert not treatments(env, 'p-live2')


@test
def test_counter_back_while_armed_faults_the_unit_and_keeps_every_row():
    """Hole 105 (tests/attack): the unit's counter goes back while it is armed and
    emitting (a faulty unit).  The daemon sees it in the unit's reports: the unit
    faults counter-went-back and is disarmed; every pulse it fired keeps its row in
    the treatment armed for it, which ends unknown (its end counter is not believed);
    the records store goes on working, and after the acknowledge the unit arms and
    counts again."""
    with Env() as env:
        env.start()
        _, first = env.treat('p-back0', 'crown', 1.0)
        assert first >= 5
        spath = env.ready_session('p-back1', 'occipital')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        pump(0.35)
        env.sim().SetShotCounter(dbus.UInt32(2))
        pump(0.5)
        env.sim().SetFootswitch(False)
        wait_until(lambda: env.unit_prop('LatchedFault') == 'counter-went-back', 5,
                   'the unit faulted counter-went-back')
        env.wait_unit_state('standby', 5)
        fired = fired_shots(env)
        after = len(fired) - first
        assert after >= 2, fired          # some before the set back, one at least after
        (t,) = treatments(env, 'p-back1')
        assert t['outcome'] == 'unknown', t
        rows = env.query('SELECT shot FROM pulses WHERE treatment_id = ? ORDER BY id', t['id'])
        assert [r['shot'] for r in rows] == fired[first:], (rows, fired)
        assert t['pulses_recorded'] == after, t
        assert env.query("SELECT count(*) AS n FROM audit WHERE reason = 'counter-went-back'"
                         )[0]['n'] >= 1
        env.end_session(spath)          # issue 16: it emitted, its endpoint first
        env.unit().AcknowledgeFault()
        assert env.unit_prop('LatchedFault') == ''
        _, again = env.treat('p-back2', 'crown', 0.6)
        assert again > 0
        (t2,) = treatments(env, 'p-back2')
        assert t2['outcome'] == 'completed' and t2['pulse_count'] == again, t2
        assert t2['pulses_recorded'] == again, t2
        assert treatments(env, 'p-back1')[0]['outcome'] == 'unknown'


@test
def test_counter_jump_while_armed_faults_the_unit_and_counts_what_it_reported():
    """Hole 102 (tests/attack): the unit's counter jumps forward while it is armed and
    emitting (a faulty unit).  The counter is not believed: the unit faults
    counter-jumped and is disarmed, and the treatment counts the pulses the unit
    reported (each fired, each with its row), not the 150 its counter claims."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-jump', 'crown')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        pump(0.45)
        shot = int(env.unit_prop('ShotCount'))
        env.sim().SetShotCounter(dbus.UInt32(shot + 150))
        pump(0.45)
        env.sim().SetFootswitch(False)
        wait_until(lambda: env.unit_prop('LatchedFault') == 'counter-jumped', 5,
                   'the unit faulted counter-jumped')
        env.wait_unit_state('standby', 5)
        fired = fired_shots(env)
        (t,) = treatments(env, 'p-jump')
        assert t['outcome'] == 'fault', t
        assert t['pulse_count'] == len(fired) == t['pulses_recorded'], (t, fired)
        assert t['shot_at_end'] >= shot + 150, t        # what the counter said, kept
        assert env.query("SELECT count(*) AS n FROM audit WHERE reason = 'counter-jumped'"
                         )[0]['n'] >= 1
        env.end_session(spath)          # issue 16: it emitted, its endpoint first
        env.unit().AcknowledgeFault()
        _, again = env.treat('p-jump2', 'occipital', 0.6)
        (t2,) = treatments(env, 'p-jump2')
        assert again > 0 and t2['pulse_count'] == again == t2['pulses_recorded'], t2


@test
def test_counter_ahead_while_plugged_in_and_disarmed_is_records_missing():
    """The unit's counter leaps while it is plugged in and disarmed (shots fired with no
    host arming it, or a faulty counter): the next Arm is refused and the unit faults
    records-missing, as a probe would find it; the shots are counted on the last
    session's patches (issue 15); after an acknowledge it arms.  (Before: the Arm went
    through from the leapt counter, and those shots were never in the records; the
    hunt with seed 6121 found the difference to a unit unplugged meanwhile.)"""
    with Env() as env:
        env.start()
        env.treat('p-ahead', 'crown', 0.4)
        shot = int(env.unit_prop('ShotCount'))
        spath = env.ready_session('p-ahead2', 'occipital')
        env.sim().SetShotCounter(dbus.UInt32(shot + 200))
        pump(0.2)
        fired = fired_shots(env)
        expect_error('DeviceFault', env.unit().Arm, contains=('records-missing',))
        assert env.unit_prop('LatchedFault') == 'records-missing'
        assert env.unit_prop('State') == 'standby'
        assert not treatments(env, 'p-ahead2') or all(
            t['operator_name'] == 'unknown (records missing)' for t in treatments(env, 'p-ahead2'))
        wait_until(lambda: env.query("SELECT * FROM unit_counters WHERE kind = 'missing'"), 5,
                   'the missing shots counted')
        (row,) = env.query("SELECT * FROM unit_counters WHERE kind = 'missing'")
        assert (row['shot_from'], row['shot_to']) == (shot, shot + 200), row
        (t,) = treatments(env, 'p-ahead2')
        assert t['patch'] == 'occipital' and t['pulse_count'] == 200, t
        env.unit().AcknowledgeFault()
        assert env.unit_prop('LatchedFault') == ''
        env.session(spath).SelectPatch('mid-scalp')
        env.unit().SetParameters(GOOD_PARAMS)
        env.arm_to_ready()
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.session(spath).End('done')
        assert fired_shots(env) == fired


@test
def test_counter_ahead_before_a_session_is_not_charged_to_it():
    """The counter leaps while the unit is idle and no session is open; a session for a
    new patient starts at once, selects crown and arms.  The shots were fired before that
    session began (its StartSession read the counter ahead already): they are counted on
    the unit's earlier session, never on the new patient's crown, which stays eligible;
    after the acknowledge the new patient's crown arms.  (Before: the account, made after
    the arming found the leap, took "the unit's newest session": the new patient got a
    treatment of 200 shots they never had and a 42-day cooldown; the attacker's seed
    1313415017, liveness-arm.)  The session starts before the daemon has read the
    leapt counter: its cached counter is a status period old."""
    with Env() as env:
        env.start()
        env.treat('p-before', 'occipital', 0.4)
        shot = int(env.unit_prop('ShotCount'))
        env.sim().SetShotCounter(dbus.UInt32(shot + 200))
        spath = env.unit().StartSession('p-new')
        env.session(spath).SelectPatch('crown')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(GOOD_PARAMS)
        fired = fired_shots(env)
        expect_error('DeviceFault', env.unit().Arm, contains=('records-missing',))
        wait_until(lambda: env.query("SELECT * FROM unit_counters WHERE kind = 'missing'"), 5,
                   'the missing shots counted')
        (row,) = env.query("SELECT * FROM unit_counters WHERE kind = 'missing'")
        (before,) = env.query("SELECT id FROM sessions WHERE patient = 'p-before'")
        assert (row['shot_from'], row['shot_to'], row['session_id']) == (
            shot, shot + 200, before['id']), row
        assert not treatments(env, 'p-new'), treatments(env, 'p-new')
        charged = [t['patch'] for t in treatments(env, 'p-before')
                   if t['operator_name'] == 'unknown (records missing)']
        assert charged == ['occipital'], treatments(env, 'p-before')
        for _ in range(3):
            if env.unit_prop('LatchedFault') == '':
                break
            env.unit().AcknowledgeFault()
            pump(0.3)
        assert env.unit_prop('LatchedFault') == ''
        eligible, _, why = env.manager().CheckPatch('p-new', 'crown')
        assert eligible, why
        env.arm_to_ready()
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.session(spath).End('done')
        assert fired_shots(env) == fired


@test
def test_a_session_starts_when_its_counter_read_gets_no_answer():
    """StartSession reads the unit's counter before the session's row: a unit whose
    answer to that read is lost still gets its session (after the transfer's time out),
    with the counter not known, so missing shots found later count on it as on any
    session (fail closed); the unit arms and fires for it.  The next session, answered,
    keeps the counter it began at."""
    with Env() as env:
        env.start()
        env.sim().SetHostile('no-answer', dbus.UInt32(1))
        spath = env.unit().StartSession('p-noread')
        env.session(spath).SelectPatch('crown')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(GOOD_PARAMS)
        env.arm_to_ready()
        pulses = env.fire(0.4)
        assert pulses >= 1, pulses
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath)
        shot = int(env.unit_prop('ShotCount'))
        spath = env.unit().StartSession('p-read')
        env.session(spath).End('done')
        rows = env.query("SELECT patient, start_counter FROM sessions ORDER BY id")
        assert rows == [{'patient': 'p-noread', 'start_counter': None},
                        {'patient': 'p-read', 'start_counter': shot}], rows
        assert fired_shots(env) == list(range(1, shot + 1)), fired_shots(env)


@test
def test_counter_leap_past_the_pulse_limit_before_any_pulse():
    """Hole 102, found again by the attacker once closed: the counter leaps while the
    unit is READY, past the patch's pulse limit, before any pulse.  The leap is found
    before the core counts it as pulses: the unit faults counter-jumped (not "pulse
    limit reached"), and the treatment counts 0 pulses."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-leap', 'crown')
        env.arm_to_ready()
        shot = int(env.unit_prop('ShotCount'))
        env.sim().SetShotCounter(dbus.UInt32(shot + 5000))      # pulses_per_patch 3000
        wait_until(lambda: env.unit_prop('LatchedFault') == 'counter-jumped', 5,
                   'the unit faulted counter-jumped')
        env.wait_unit_state('standby', 5)
        assert fired_shots(env) == []
        (t,) = treatments(env, 'p-leap')
        assert t['outcome'] == 'fault' and t['pulse_count'] == 0, t
        assert not env.query("SELECT * FROM audit WHERE reason = 'patch-pulse-limit'")
        # Issue 16: the leapt counter is no emission: no endpoint is asked for.
        assert list(env.session_prop(spath, 'EndpointsMissing')) == []
        env.session(spath).End('done')


@test
def test_two_units_cannot_both_take_the_test_spot():
    """Issue 11.5: a patient with no treatment; two units each select an untreated
    patch (both look like the test spot at SelectPatch).  The first arms; the second
    is refused at Arm, decided again in the arming transaction: the unit fired
    nothing for it."""
    with Env(config=TEST_SPOT) as env:
        env.start(sim=2)
        u1, u2 = sorted(str(u[0]) for u in env.manager().ListUnits())
        s1 = env.ready_session_on(u1, 'p-ts', 'crown')
        s2 = env.ready_session_on(u2, 'p-ts', 'occipital')
        env.unit(u1).Arm()
        env.wait_unit_state('ready', 6, u1)
        expect_error('CooldownActive', env.unit(u2).Arm, contains=('test spot',))
        env.sim(u1).SetFootswitch(True)
        pump(1.0)
        env.sim(u1).SetFootswitch(False)
        env.wait_unit_state('standby', 5, u1)      # the test spot's 3 pulses
        serial1 = str(env.unit_prop('Serial', u1))
        serial2 = str(env.unit_prop('Serial', u2))
        assert len(fired_shots(env, serial1)) == 3, fired_shots(env, serial1)
        assert fired_shots(env, serial2) == [], 'the second unit fired'
        for s in (s1, s2):
            env.end_session(s, 'done')


@test
def test_test_spot_pulses_are_not_renewed_by_selecting_again():
    """The test spot's pulse limit belongs to the patch in the session, as the records
    count it: selecting the same patch again does not give it new pulses."""
    with Env(config=TEST_SPOT) as env:
        env.start()
        spath = env.ready_session('p-again', 'crown')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        pump(1.0)
        env.sim().SetFootswitch(False)
        env.wait_unit_state('standby', 5)
        assert len(fired_shots(env)) == 3
        expect_error('ParameterOutOfRange', env.session(spath).SelectPatch, 'crown',
                     contains=('3 pulses',))
        expect_error('ParameterOutOfRange', env.unit().Arm)
        assert len(fired_shots(env)) == 3


@test
def test_patient_id_is_one_patient_whatever_the_case():
    """Issue 11.6: after demo-001 is treated, DEMO-001 is the same patient: CheckPatch,
    SelectPatch, Arm and History all say so, and the records keep the id as typed."""
    with Env() as env:
        env.start()
        _, pulses = env.treat('demo-001', 'crown', 0.4)
        assert pulses > 0
        eligible, _, why = env.manager().CheckPatch('DEMO-001', 'crown')
        assert not eligible, why
        spath = env.unit().StartSession('Demo-001')
        expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown')
        history = env.history('DEMO-001')
        assert len(history) == 1 and history[0]['patch'] == 'crown', history
        env.end_session(spath, 'done')
        assert [t['patient'] for t in treatments(env, 'demo-001')] == ['demo-001']


@test
def test_intruder_cannot_change_or_arm_a_session_it_did_not_open():
    """Issue 11.8 (S6): a second connection (same uid here; any operator on the system
    bus) cannot select the patch, confirm eyewear, set parameters, arm or end the
    owner's session: NotAuthorized naming the owner rule, nothing changed, nothing
    fired.  Disarm stays open to every caller."""
    with Env() as env:
        env.start()
        intruder = env.second_client()
        spath = env.unit().StartSession('p-own')
        rule = ('belongs to the client that opened it',)
        expect_error('NotAuthorized', env.session(spath, intruder).SelectPatch, 'crown',
                     contains=rule)
        expect_error('NotAuthorized', env.session(spath, intruder).ConfirmEyewear, contains=rule)
        expect_error('NotAuthorized', env.unit(bus=intruder).SetParameters, GOOD_PARAMS,
                     contains=rule)
        expect_error('NotAuthorized', env.session(spath, intruder).End, 'mine now',
                     contains=rule)
        assert env.session_prop(spath, 'Patch') == ''
        assert not env.session_prop(spath, 'EyewearConfirmed')
        assert env.unit_prop('Parameters') == {}
        # The owner makes it ready; the intruder still cannot arm it.
        env.session(spath).SelectPatch('crown')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(GOOD_PARAMS)
        expect_error('NotAuthorized', env.unit(bus=intruder).Arm, contains=rule)
        pump(0.3)
        assert env.unit_prop('State') == 'standby'
        assert fired_shots(env) == []
        # The owner arms; anyone may disarm.
        env.arm_to_ready()
        env.unit(bus=intruder).Disarm()
        env.wait_unit_state('standby')
        assert env.query("SELECT * FROM audit WHERE kind = 'refused' AND"
                         " reason = 'NotAuthorized'"), 'the refusals are not audited'
        env.end_session(spath, 'done')


@test
def test_stray_signals_neither_stop_nor_disarm():
    """Issue 11.11: SIGHUP (a terminal closing), SIGPIPE, SIGUSR1/2 and SIGALRM while
    READY: the daemon goes on, the unit stays armed; SIGTERM then stops it in order
    (disarmed, the treatment closed interrupted, exit 0)."""
    with Env() as env:
        env.start()
        env.ready_session('p-sig', 'crown')
        env.arm_to_ready()
        for sig in (signal.SIGHUP, signal.SIGPIPE, signal.SIGUSR1, signal.SIGUSR2,
                    signal.SIGALRM):
            env.daemon.send_signal(sig)
            pump(0.3)
            assert env.daemon.poll() is None, 'signal %d ended the daemon' % sig
            assert env.unit_prop('State') == 'ready', (sig, env.unit_prop('State'))
        env.daemon.terminate()
        assert env.daemon.wait(10) == 0
        t = treatments(env, 'p-sig')
        assert t and t[0]['outcome'] == 'interrupted', t


@test
def test_session_steps_are_in_the_audit_trail():
    """Issue 11.11: SelectPatch, ConfirmEyewear and SetParameters are records, with
    who and when, not only journal lines."""
    with Env() as env:
        env.start()
        env.ready_session('p-steps', 'crown')
        rows = env.query("SELECT kind, operator_uid, detail FROM audit"
                         " WHERE kind IN ('patch', 'eyewear', 'parameters') ORDER BY id")
        assert [r['kind'] for r in rows] == ['patch', 'eyewear', 'parameters'], rows
        assert all(r['operator_uid'] == os.getuid() for r in rows), rows
        assert rows[0]['detail'] == 'crown' and 'nm' in rows[2]['detail'], rows


def _call_within(fn, *args, seconds=5):
    """The error of a call that must be answered within @seconds (a D-Bus error),
    or None if it succeeded."""
    import time
    start = time.monotonic()
    try:
        fn(*args, timeout=seconds)
        return None
    except dbus.DBusException as e:
        took = time.monotonic() - start
        assert e.get_dbus_name() != 'org.freedesktop.DBus.Error.NoReply', \
            'no reply within %.1f s' % took
        return e


@test
def test_every_call_is_answered_and_echoes_nothing_unsafe():
    """Issue 11.12: an unknown patch name or SetParameters key whose multi-byte
    character straddles byte 64, or that carries a terminal escape: the call is
    answered (InvalidArgument), the echoed text is valid UTF-8 cut on a character,
    no control character reaches the message or the daemon's log."""
    hostile = ['a' * 63 + '\u00e9tude', 'b' * 62 + '\u20ac' * 3, 'x\x1b[31mred\x1b[0m',
               'bidi\u202egpj.exe', 'c' * 300 + '\u00e9']
    with Env() as env:
        env.start()
        spath = env.unit().StartSession('p-utf8')
        for text in hostile:
            for fn, args in ((env.session(spath).SelectPatch, (text,)),
                             (env.unit().SetParameters,
                              (dbus.Dictionary({text: dbus.UInt32(1)}, signature='sv'),)),
                             (env.sim().SetInterlock, (text, True))):
                e = _call_within(fn, *args)
                assert e is not None, 'accepted %r' % text
                assert e.get_dbus_name() == 'org.smplaser.Laser1.Error.InvalidArgument', e
                msg = e.get_dbus_message()
                assert '\x1b' not in msg and '\u202e' not in msg, repr(msg)
                assert len(msg) < 400, len(msg)
        log = env.log()
        assert '\x1b' not in log and '\u202e' not in log
        env.end_session(spath, 'done')


OM = 'org.freedesktop.DBus.ObjectManager'


class PropertyCache:
    """What a GLib GDBusObjectManagerClient would believe: GetManagedObjects once, then
    only InterfacesAdded/Removed and PropertiesChanged."""

    def __init__(self, env):
        self.env = env
        bus = env.bus
        bus.add_signal_receiver(self._added, 'InterfacesAdded', OM, path=ROOT)
        bus.add_signal_receiver(self._removed, 'InterfacesRemoved', OM, path=ROOT)
        bus.add_signal_receiver(self._changed, 'PropertiesChanged', PROPS,
                                path_keyword='path')
        self.seen = []
        self.objects = self._ours(env.iface(ROOT, OM).GetManagedObjects())

    @staticmethod
    def _ours(objects):
        return {str(p): {str(i): dict(props) for i, props in ifaces.items()
                         if str(i).startswith('org.smplaser.')}
                for p, ifaces in objects.items()}

    def _added(self, path, ifaces):
        obj = self.objects.setdefault(str(path), {})
        for i, props in ifaces.items():
            if str(i).startswith('org.smplaser.'):
                obj[str(i)] = dict(props)

    def _removed(self, path, ifaces):
        obj = self.objects.get(str(path), {})
        for i in ifaces:
            obj.pop(str(i), None)
        if not obj:
            self.objects.pop(str(path), None)

    def _changed(self, iface, changed, invalidated, path=None):
        self.seen.append((str(path), str(iface), dict(changed)))
        if str(iface).startswith('org.smplaser.') and str(path) in self.objects:
            self.objects[str(path)].setdefault(str(iface), {}).update(changed)

    def check(self, step):
        pump(0.3)
        truth = {p: i for p, i in self._ours(
            self.env.iface(ROOT, OM).GetManagedObjects()).items() if i}
        mine = {p: i for p, i in self.objects.items() if i}
        assert set(mine) == set(truth), '%s: objects %s, the daemon has %s' % (
            step, sorted(mine), sorted(truth))
        for path, ifaces in truth.items():
            assert set(mine[path]) == set(ifaces), (step, path, sorted(mine[path]), sorted(ifaces))
            for iface, props in ifaces.items():
                for name, value in props.items():
                    assert mine[path][iface].get(name) == value, \
                        '%s: %s %s.%s cached %r, is %r' % (step, path, iface, name,
                                                          mine[path][iface].get(name), value)


@test
def test_a_property_cache_never_goes_stale():
    """Issues 11.13 and 11.15: a client that keeps a cache from PropertiesChanged and
    InterfacesAdded/Removed (as GLib's GDBusObjectManagerClient, pydbus and dasbus do)
    agrees with GetAll after every step of whole treatments with unplug and replug:
    every change is signalled, and a simulated unplug removes the unit's interface as
    a real one does."""
    with Env() as env:
        env.start()
        cache = PropertyCache(env)
        for rnd in range(2):
            spath = env.unit().StartSession('p-cache-%d' % rnd)
            cache.check('StartSession')
            env.session(spath).SelectPatch('crown')
            env.session(spath).ConfirmEyewear()
            env.unit().SetParameters(GOOD_PARAMS)
            cache.check('ready')
            env.arm_to_ready()
            cache.check('armed')
            env.sim().SetFootswitch(True)
            pump(0.5)
            env.sim().SetInterlock('door', True)    # disarms: the pulses stop
            wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 3, 'disarm')
            cache.check('door opened while emitting')
            env.sim().SetFootswitch(False)
            env.sim().SetInterlock('door', False)
            cache.check('door closed')
            if env.unit_prop('LatchedFault'):
                env.unit().AcknowledgeFault()
                cache.check('interlock fault acknowledged')
            cache.seen.clear()
            env.sim().Unplug()
            env.wait_unit_gone()
            cache.check('unplugged')
            # Before the object went, what a client sees of it changed too: the
            # interlocks are no longer known closed.
            interlocks = [c['Interlocks'] for p, i, c in cache.seen
                          if p == UNIT1 and 'Interlocks' in c]
            assert interlocks and not any(interlocks[-1].values()), cache.seen
            assert spath not in cache.objects, 'the session object outlived the unit'
            env.sim().Replug()
            env.wait_unit_state('standby', 3)
            cache.check('plugged in again')
            env.sim().InjectFault('overtemp')
            wait_until(lambda: env.unit_prop('LatchedFault') != '', 3, 'the fault')
            cache.check('fault')
            env.sim().ClearFaultCause()
            env.unit().AcknowledgeFault()
            cache.check('acknowledged')


@test
def test_each_fault_is_named():
    """Issue 11.14: a unit fault is named by the unit's code in LatchedFault and in the
    Fault signal (watchdog, energy, overtemp, ...), never "unit-fault" or "code N"."""
    with Env() as env:
        env.start()
        signals = []
        env.bus.add_signal_receiver(lambda *a: signals.append(a), 'Fault',
                                    'org.smplaser.Laser1.Unit')
        for fault in ('overtemp', 'shutter', 'cooling'):
            env.sim().InjectFault(fault)
            wait_until(lambda: signals, 3, 'the Fault signal')
            code, message = signals.pop()
            assert code == fault, (code, message)
            assert fault in message and 'code' not in message, message
            assert env.unit_prop('LatchedFault') == fault
            env.sim().ClearFaultCause()
            env.unit().AcknowledgeFault()
            assert env.unit_prop('LatchedFault') == ''


@test
def test_arm_decides_on_a_fresh_read_of_the_unit():
    """Arm never decides on the last status report alone: the door opened while the
    unit's reports are held back is seen by Arm's own GET_STATUS (InterlockOpen, no
    treatment recorded, nothing sent to arm), and an Arm whose GET_STATUS is lost is
    refused.  (Kills the mutant that skips Arm's fresh read.)"""
    with Env() as env:
        env.start()
        env.ready_session('p-fresh', 'crown')
        env.sim().HoldReports(True)
        env.sim().SetInterlock('door', True)
        expect_error('InterlockOpen', env.unit().Arm, contains=('interlock open',))
        assert not treatments(env, 'p-fresh'), 'a treatment was recorded for a refused Arm'
        env.sim().SetInterlock('door', False)
        env.sim().HoldReports(False)
        pump(0.3)
        env.sim().DropNextReply('get-status')
        expect_error('DeviceFault', env.unit().Arm)
        pump(0.3)
        assert env.unit_prop('State') == 'standby'
        assert not treatments(env, 'p-fresh')
        env.arm_to_ready()
        env.unit().Disarm()


@test
def test_interlock_audit_says_what_happened():
    """The audit trail says 'opened' when an interlock opens and 'closed' when it
    closes, with the bits.  (Kills the mutant that swaps them.)"""
    with Env() as env:
        env.start()
        env.sim().SetInterlock('door', True)
        pump(0.3)
        env.sim().SetInterlock('door', False)
        pump(0.3)
        rows = env.query("SELECT reason, detail FROM audit WHERE kind = 'interlock'"
                         " ORDER BY id")
        assert [r['reason'] for r in rows] == ['opened', 'closed'], rows
        assert rows[0]['detail'] == 'open interlocks 0x00 -> 0x02', rows


@test
def test_disarm_by_a_caller_not_known_yet_is_audited_as_theirs():
    """Disarm from a connection the daemon has not seen: the unit is made safe at
    once, before the daemon knows who called; the audit row still says "requested"
    by that caller, even when the unit's STANDBY is read before the bus says who
    it was (on the system bus each smplaserctl is such a caller)."""
    rounds = 12
    with Env() as env:
        env.start()
        env.ready_session('p-dis', 'crown')
        for _ in range(rounds):
            env.arm_to_ready()
            env.unit(bus=env.second_client()).Disarm()
            env.wait_unit_state('standby')
        env.settle_records()
        rows = env.query("SELECT reason, operator_uid FROM audit WHERE kind = 'disarm'")
        print('# disarm rows: %s' % sorted(set((r['reason'], r['operator_uid']) for r in rows)))
        mine = [r for r in rows if r['reason'] == 'requested' and r['operator_uid'] == os.getuid()]
        assert len(mine) == rounds, rows


if __name__ == '__main__':
    sys.exit(main())
