#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The clinical record (issue 16): endpoints, follow-ups, adverse events, holds
and reviews, and the rules they add.  Each test tries to get past a rule as a
client would (the wrong call at the wrong time, another client, bad input, a
record written between SelectPatch and Arm) and judges the daemon by the truth
outside it: the simulated unit's fired log (what it really fired) and the
records.

Treatments of weeks ago are written into the records while the daemon is
stopped (as a clinic's history would be), so that the rules past the 42-day
cooldown can be reached in seconds.

Same harness as test_daemon.py: a private bus, smplaserd --session --sim.
Usage: tests/integration/test_clinical.py [test_name...]   (TAP on stdout)
"""
import json
import os
import re
import signal
import sqlite3
import struct
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
import zlib

import dbus

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import (ERR, GOOD_PARAMS, Env, chain_functions, expect_error, main,  # noqa: E402
                     pump, test, wait_until)

DAY_MS = 86400 * 1000
TOP = os.path.abspath(os.path.join(os.path.dirname(__file__), '..', '..'))
CTL = os.environ.get('SMPLASERCTL', os.path.join(TOP, 'build', 'smplaserctl'))
FHIR_VALIDATE = os.path.join(TOP, 'tests', 'fhir', 'validate.js')

# The colours of each status on the map and the report (smplaserctl(1), docs/clinical.md).
STATUS_RGB = {
    'untreated': (0xbd, 0xbd, 0xbd),
    'cooling-down': (0xe5, 0x39, 0x35),
    'awaiting-follow-up': (0xff, 0xb3, 0x00),
    'eligible': (0x43, 0xa0, 0x47),
    'clear': (0x1e, 0x88, 0xe5),
    'on-hold': (0x8e, 0x24, 0xaa),
}


def findings(**kw):
    """RecordFollowUp's a{sv}, typed as a client would send it."""
    d = {}
    for k, v in kw.items():
        if isinstance(v, bool):
            d[k] = dbus.Boolean(v)
        elif isinstance(v, int):
            d[k] = dbus.UInt32(v)
        elif isinstance(v, (list, tuple)):
            d[k] = dbus.Array(v, signature='s')
        else:
            d[k] = dbus.String(v)
    return dbus.Dictionary(d, signature='sv')


def now_ms():
    return int(time.time() * 1000)


def seed(env, *rows):
    """Stops the daemon, writes @rows (sql, args) into its records, starts it again."""
    env.kill(signal.SIGTERM)
    # the chain's triggers (schema 5) call smplaserd's functions: the test's own copy
    db = chain_functions(sqlite3.connect(os.path.join(env.state_dir, 'records.db')))
    for sql, args in rows:
        db.execute(sql, args)
    db.commit()
    db.close()
    env.start()


_next_session = [9000]


def treated(patient, patch, days_ago, pulses=5):
    """A completed treatment of @days_ago, in a session of its own (rows for seed())."""
    _next_session[0] += 1
    sid = _next_session[0]
    armed = now_ms() - days_ago * DAY_MS
    return [
        ("INSERT INTO sessions (id, patient, unit_serial, operator_uid, operator_name,"
         " start_ms, end_ms, state) VALUES (?, ?, 'SIM00001', 0, 'root', ?, ?, 'ended')",
         (sid, patient, armed - 1000, armed + 60000)),
        ("INSERT INTO treatments (session_id, patient, patch, unit_serial, unit_firmware,"
         " operator_uid, operator_name, wavelength_nm, fluence_mj_cm2, spot_um, pulse_ps,"
         " rate_mhz, set_energy_uj, armed_ms, armed_rtc_s, end_ms, shot_at_arm, shot_at_end,"
         " pulse_count, outcome) VALUES (?, ?, ?, 'SIM00001', '1.0.0', 0, 'root', 1064,"
         " 3000, 3000, 10000, 5000, 212058, ?, ?, ?, 0, 0, ?, 'completed')",
         (sid, patient, patch, armed, armed // 1000, armed + 30000, pulses)),
    ]


def follow_up_row(patient, patch, days_ago, pct):
    return [("INSERT INTO follow_ups (patient, patch, time_ms, pigment_remaining_pct,"
             " operator_uid, operator_name) VALUES (?, ?, ?, ?, 0, 'root')",
             (patient, patch, now_ms() - days_ago * DAY_MS, pct))]


def course(env, patient):
    return {str(p['patch']): p for p in env.manager().Course(patient)}


def fired_count(env):
    return len(env.fired())


def treatments_of(env, patient):
    return env.query('SELECT * FROM treatments WHERE patient = ? COLLATE NOCASE ORDER BY id',
                     patient)


def fire_on(env, spath, patch):
    """Arm, fire, disarm on the selected patch: the pulses the unit fired."""
    before = fired_count(env)
    env.arm_to_ready()
    pulses = env.fire(0.5)
    env.unit().Disarm()
    env.wait_unit_state('standby')
    assert pulses > 0 and fired_count(env) - before == pulses, (pulses, before)
    return pulses


@test
def test_endpoint_before_another_patch_or_the_end():
    """A treatment that emitted needs its endpoint before the session selects another
    patch or ends (EndpointMissing names the patch); only the session's owner records
    it, only for a patch that emitted, only once the unit is disarmed; a treatment
    that fired nothing needs none."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-end', 'crown')
        env.arm_to_ready()
        env.unit().Disarm()                     # armed, nothing fired
        env.wait_unit_state('standby')
        assert list(env.session_prop(spath, 'EndpointsMissing')) == []
        env.session(spath).SelectPatch('occipital')        # no endpoint needed
        env.session(spath).SelectPatch('crown')
        env.unit().SetParameters(GOOD_PARAMS)
        env.arm_to_ready()
        env.sim().SetFootswitch(True)
        wait_until(lambda: fired_count(env) > 0, 3, 'a pulse')
        # While armed for it: no endpoint yet (it is the response when it ends).
        expect_error('Busy', env.session(spath).RecordEndpoint, 'crown', 'whitening', '',
                     contains=('disarm',))
        env.sim().SetFootswitch(False)
        env.unit().Disarm()
        env.wait_unit_state('standby')
        wait_until(lambda: list(env.session_prop(spath, 'EndpointsMissing')) == ['crown'], 2,
                   'EndpointsMissing [crown]')
        expect_error('EndpointMissing', env.session(spath).End, 'done',
                     contains=('crown', 'whitening'))
        expect_error('EndpointMissing', env.session(spath).SelectPatch, 'occipital',
                     contains=('crown',))
        env.session(spath).SelectPatch('crown')            # the same patch: one visit
        # Wrong endpoint, a patch that emitted nothing, a bad note: named errors.
        expect_error('InvalidArgument', env.session(spath).RecordEndpoint, 'crown', 'frosted',
                     '', contains=('frosted', 'partial-whitening'))
        expect_error('InvalidArgument', env.session(spath).RecordEndpoint, 'occipital',
                     'whitening', '', contains=('occipital', 'emitted nothing'))
        expect_error('InvalidArgument', env.session(spath).RecordEndpoint, 'nape',
                     'whitening', '', contains=('nape',))
        expect_error('InvalidArgument', env.session(spath).RecordEndpoint, 'crown',
                     'whitening', 'bell\a', contains=('note',))
        # Another client, same user: not the session's owner.
        other = env.second_client()
        expect_error('NotAuthorized', env.session(spath, other).RecordEndpoint, 'crown',
                     'whitening', '', contains=('belongs to the client',))
        assert env.query('SELECT * FROM endpoints') == []
        env.session(spath).RecordEndpoint('crown', 'partial-whitening', 'frosting at edges')
        assert list(env.session_prop(spath, 'EndpointsMissing')) == []
        env.session(spath).End('done')
        rows = env.query('SELECT * FROM endpoints')
        t = treatments_of(env, 'p-end')
        assert len(rows) == 1 and rows[0]['treatment_id'] == t[-1]['id'], (rows, t)
        assert rows[0]['endpoint'] == 'partial-whitening' and rows[0]['patch'] == 'crown'
        assert rows[0]['note'] == 'frosting at edges' and rows[0]['operator_uid'] == os.getuid()
        assert env.query("SELECT * FROM audit WHERE kind = 'endpoint'"), 'not audited'
        refused = env.query("SELECT reason FROM audit WHERE kind = 'refused'"
                            " AND reason = 'EndpointMissing'")
        assert len(refused) == 2, refused
        c = course(env, 'p-end')['crown']
        assert [str(x['endpoint']) for x in c['treatments']] == ['', 'partial-whitening'], c
        assert c['treatment_count'] == 1 and c['pulses'] == fired_count(env), c


@test
def test_endpoint_due_when_only_the_counter_shows_the_emission():
    """The unit's reports held back (a congested endpoint): the daemon learns that the
    treatment emitted only from the unit's counter, read after the Disarm.  Its
    endpoint is due all the same, before any late report arrives."""
    with Env() as env:
        env.start()
        spath = env.ready_session('p-counter', 'crown')
        env.arm_to_ready()
        env.sim().HoldReports(True)
        env.sim().SetFootswitch(True)
        wait_until(lambda: fired_count(env) > 0, 3, 'a pulse')
        env.sim().SetFootswitch(False)
        env.unit().Disarm()
        wait_until(lambda: list(env.session_prop(spath, 'EndpointsMissing')) == ['crown'], 3,
                   'EndpointsMissing [crown] from the counter')
        assert int(env.session_prop(spath, 'PulseCount')) == 0, 'a report got through'
        expect_error('EndpointMissing', env.session(spath).End, 'done', contains=('crown',))
        env.sim().HoldReports(False)
        env.wait_unit_state('standby')
        env.end_session(spath)
        assert len(env.query("SELECT * FROM endpoints WHERE patient = 'p-counter'")) == 1


@test
def test_retreatment_waits_for_a_follow_up_finding_pigment():
    """Past its cooldown, a treated patch is treated again only once a follow-up
    recorded after its last treatment found pigment remaining (FollowUpRequired); a
    follow-up never shortens the cooldown (CooldownActive with the date)."""
    with Env() as env:
        env.start()
        seed(env, *treated('p-fu', 'crown', 50), *follow_up_row('p-fu', 'crown', 60, 30),
             *treated('p-fu', 'occipital', 20), *follow_up_row('p-fu', 'occipital', 5, 40))
        ok, when, why = env.manager().CheckPatch('p-fu', 'crown')
        assert not ok and when == 0 and 'follow-up' in why, (ok, when, why)
        assert course(env, 'p-fu')['crown']['status'] == 'awaiting-follow-up'
        spath = env.unit().StartSession('p-fu')
        expect_error('FollowUpRequired', env.session(spath).SelectPatch, 'crown',
                     contains=('crown', 'follow-up'))
        # The follow-up of 5 days ago found pigment, but the cooldown still runs.
        msg = expect_error('CooldownActive', env.session(spath).SelectPatch, 'occipital')
        assert 'eligible from' in msg, msg
        assert course(env, 'p-fu')['occipital']['status'] == 'cooling-down'
        env.manager().RecordFollowUp('p-fu', 'crown', findings(pigment_remaining_pct=25,
                                                                redness_resolved=True))
        ok, _, why = env.manager().CheckPatch('p-fu', 'crown')
        assert ok and '25% pigment remaining' in why, why
        assert course(env, 'p-fu')['crown']['status'] == 'eligible'
        env.session(spath).SelectPatch('crown')
        env.session(spath).ConfirmEyewear()
        env.unit().SetParameters(GOOD_PARAMS)
        fire_on(env, spath, 'crown')
        env.session(spath).RecordEndpoint('crown', 'whitening', '')
        env.session(spath).End('done')
        # Treated now: a follow-up today finding pigment does not free it early.
        env.manager().RecordFollowUp('p-fu', 'crown', findings(pigment_remaining_pct=10))
        before = fired_count(env)
        spath = env.unit().StartSession('p-fu')
        msg = expect_error('CooldownActive', env.session(spath).SelectPatch, 'crown')
        assert 'eligible from' in msg, msg
        expect_error('NoPatch', env.unit().Arm)
        env.session(spath).End('')
        assert fired_count(env) == before
        assert course(env, 'p-fu')['crown']['status'] == 'cooling-down'
        assert len(treatments_of(env, 'p-fu')) == 3


@test
def test_follow_up_rule_off_by_configuration():
    """[rules] require_follow_up = false: past the cooldown, the cooldown alone decides."""
    with Env(config='[rules]\nrequire_follow_up = false\n') as env:
        env.start()
        seed(env, *treated('p-nofu', 'crown', 50))
        ok, _, why = env.manager().CheckPatch('p-nofu', 'crown')
        assert ok, why
        assert course(env, 'p-nofu')['crown']['status'] == 'eligible'


@test
def test_clear_patch_is_not_treated_again():
    """A patch whose last follow-up found 0% pigment is clear (PatchClear) until a
    newer follow-up finds pigment."""
    with Env() as env:
        env.start()
        seed(env, *treated('p-clear', 'crown', 50))
        env.manager().RecordFollowUp('p-clear', 'crown', findings(pigment_remaining_pct=0))
        ok, when, why = env.manager().CheckPatch('p-clear', 'crown')
        assert not ok and when == 0 and 'clear' in why, why
        spath = env.unit().StartSession('p-clear')
        expect_error('PatchClear', env.session(spath).SelectPatch, 'crown',
                     contains=('clear', 'no pigment'))
        c = course(env, 'p-clear')['crown']
        assert c['status'] == 'clear' and c['next_eligible_usec'] == 0, c
        # A follow-up with no pigment finding (redness only) keeps it clear.
        env.manager().RecordFollowUp('p-clear', 'crown', findings(redness_resolved=True))
        expect_error('PatchClear', env.session(spath).SelectPatch, 'crown')
        env.manager().RecordFollowUp('p-clear', 'crown', findings(pigment_remaining_pct=5))
        env.session(spath).SelectPatch('crown')
        env.session(spath).End('')
        assert course(env, 'p-clear')['crown']['status'] == 'eligible'


@test
def test_rules_decided_again_inside_the_arming_transaction():
    """A follow-up recorded by another client between SelectPatch and Arm (clear, then
    an adverse event) is seen by the arming transaction: Arm is refused with the rule's
    error, nothing is recorded, nothing fires; after the review it arms and fires."""
    with Env() as env:
        env.start()
        seed(env, *treated('p-race', 'crown', 50), *follow_up_row('p-race', 'crown', 2, 20))
        spath = env.ready_session('p-race', 'crown')
        other = env.second_client()             # the clinic's software, meanwhile
        env.manager(other).RecordFollowUp('p-race', 'crown', findings(pigment_remaining_pct=0))
        expect_error('PatchClear', env.unit().Arm, contains=('clear',))
        env.manager(other).RecordFollowUp('p-race', 'crown', findings(
            pigment_remaining_pct=15, adverse=['infection']))
        expect_error('PatchOnHold', env.unit().Arm, contains=('infection', 'review'))
        pump(0.5)
        assert env.unit_prop('State') == 'standby' and fired_count(env) == 0
        assert len(treatments_of(env, 'p-race')) == 1, 'a refused arming was recorded'
        env.manager(other).ClearPatchHold('p-race', 'crown', 'infection treated, healed')
        fire_on(env, spath, 'crown')
        env.end_session(spath)
        assert len(treatments_of(env, 'p-race')) == 2


@test
def test_adverse_event_holds_the_patch_until_a_review():
    """follicle-damage, hair-loss, blistering, scarring, infection hold the patch
    (PatchOnHold; CheckPatch says which and since when) until ClearPatchHold, also
    across a restart; the other adverse events are recorded and hold nothing."""
    with Env() as env:
        env.start()
        seed(env, *treated('p-hold', 'crown', 50), *treated('p-hold', 'occipital', 50))
        env.manager().RecordFollowUp('p-hold', 'crown', findings(
            pigment_remaining_pct=30, adverse=['other', 'follicle-damage'],
            note='two follicles affected'))
        env.manager().RecordFollowUp('p-hold', 'occipital', findings(
            pigment_remaining_pct=30, adverse=['hypopigmentation']))
        ok, when, why = env.manager().CheckPatch('p-hold', 'crown')
        today = time.strftime('%Y-%m-%d', time.gmtime())
        assert not ok and when == 0 and 'follicle-damage' in why and today in why, why
        assert 'other' not in why, why
        assert env.manager().CheckPatch('p-hold', 'occipital')[0], 'hypopigmentation held'
        c = course(env, 'p-hold')
        assert c['crown']['status'] == 'on-hold' and c['occipital']['status'] == 'eligible'
        assert list(c['crown']['hold_reasons']) == ['follicle-damage'], c['crown']
        assert c['crown']['hold_since_usec'] > 0
        fu = c['crown']['follow_ups'][-1]
        assert sorted(fu['adverse']) == ['follicle-damage', 'other'], fu
        assert list(fu['holding']) == ['follicle-damage'] and fu['note'] == 'two follicles affected'
        spath = env.unit().StartSession('p-hold')
        expect_error('PatchOnHold', env.session(spath).SelectPatch, 'crown',
                     contains=('on hold since', 'follicle-damage'))
        env.session(spath).End('')
        env.kill(signal.SIGKILL)                # the hold is a record: it stays
        env.start()
        assert course(env, 'p-hold')['crown']['status'] == 'on-hold'
        expect_error('InvalidArgument', env.manager().ClearPatchHold, 'p-hold', 'occipital',
                     '', contains=('not on hold',))
        expect_error('InvalidArgument', env.manager().ClearPatchHold, 'p-hold', 'crown',
                     'bad\x1bnote', contains=('note',))
        env.manager().ClearPatchHold('P-HOLD', 'crown', 'dermatologist: regrowth')
        assert env.manager().CheckPatch('p-hold', 'crown')[0]
        c = course(env, 'p-hold')['crown']
        assert c['status'] == 'eligible' and len(c['reviews']) == 1, c
        assert c['reviews'][0]['note'] == 'dermatologist: regrowth'
        audit = [r['kind'] for r in env.query(
            "SELECT kind FROM audit WHERE kind IN ('follow-up', 'hold', 'review') ORDER BY id")]
        assert audit == ['follow-up', 'hold', 'follow-up', 'review'], audit
        # A new holding event after the review holds it again.
        env.manager().RecordFollowUp('p-hold', 'crown', findings(adverse=['scarring']))
        assert course(env, 'p-hold')['crown']['status'] == 'on-hold'


@test
def test_bad_input_gets_a_clear_error():
    """Every malformed finding, patient, patch or note is refused with a named error
    that names the field, and nothing is recorded."""
    with Env() as env:
        env.start()
        m = env.manager()
        cases = [
            ('InvalidArgument', ('p-bad', 'crown', findings()), 'at least one finding'),
            ('InvalidArgument', ('p-bad', 'crown', findings(note='only a note')),
             'at least one finding'),
            ('InvalidArgument', ('p-bad', 'crown', findings(pigment=5)), 'pigment'),
            ('ParameterOutOfRange', ('p-bad', 'crown', findings(pigment_remaining_pct=101)),
             'pigment_remaining_pct'),
            ('InvalidArgument', ('p-bad', 'crown', dbus.Dictionary(
                {'pigment_remaining_pct': dbus.String('5')}, signature='sv')),
             'pigment_remaining_pct'),
            ('InvalidArgument', ('p-bad', 'crown', dbus.Dictionary(
                {'redness_resolved': dbus.UInt32(1)}, signature='sv')), 'redness_resolved'),
            ('InvalidArgument', ('p-bad', 'crown', findings(adverse=['burn'])), 'burn'),
            ('InvalidArgument', ('p-bad', 'crown', dbus.Dictionary(
                {'adverse': dbus.String('scarring')}, signature='sv')), 'adverse'),
            ('InvalidArgument', ('p-bad', 'crown', findings(pigment_remaining_pct=5,
                                                            note='tab\tok but bell\a')),
             'note'),
            ('InvalidArgument', ('p bad', 'crown', findings(pigment_remaining_pct=5)),
             'patient'),
            ('InvalidArgument', ('p-bad', 'nape', findings(pigment_remaining_pct=5)), 'nape'),
        ]
        for name, args, says in cases:
            expect_error(name, m.RecordFollowUp, *args, contains=(says,))
        try:
            m.RecordFollowUp('p-bad', 'crown', dbus.Dictionary(
                {'pigment_remaining_pct': dbus.Double(5.0)}, signature='sv'))
            raise AssertionError('a double percentage was taken')
        except dbus.DBusException as e:
            assert e.get_dbus_name() == ERR + 'InvalidArgument', e
        expect_error('InvalidArgument', m.Course, 'p/bad', contains=('patient',))
        expect_error('InvalidArgument', m.ClearPatchHold, 'p-bad', 'crown ', '')
        try:
            m.RecordFollowUp('p-bad', 'crown', 5)
            raise AssertionError('a wrong signature was taken')
        except dbus.DBusException as e:
            assert e.get_dbus_name().startswith('org.freedesktop.DBus.Error.'), e
        assert env.query('SELECT * FROM follow_ups') == []
        assert env.query('SELECT * FROM adverse_events') == []
        assert len(env.query("SELECT * FROM audit WHERE kind = 'refused'")) >= len(cases)
        # Patient ids are one patient whatever their case; the records keep it as typed.
        m.RecordFollowUp('P-Bad', 'crown', findings(pigment_remaining_pct=0))
        assert course(env, 'p-bad')['crown']['status'] == 'clear'


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
def test_each_record_asks_its_polkit_action():
    """System bus: RecordFollowUp and RecordEndpoint need org.smplaser.document,
    ClearPatchHold org.smplaser.acknowledge (a review), Course org.smplaser.records;
    each denial is refused before anything is recorded."""
    with Env(bus_type='system') as env:
        mock = start_polkit_mock(env, ['org.smplaser.treat', 'org.smplaser.configure',
                                       'org.smplaser.records'])
        env.start()
        m = env.manager()
        expect_error('NotAuthorized', m.RecordFollowUp, 'p-pk', 'crown',
                     findings(adverse=['blistering']), contains=('org.smplaser.document',))
        assert course(env, 'p-pk')['crown']['status'] == 'untreated'
        spath = env.ready_session('p-pk', 'crown')
        env.arm_to_ready()
        assert env.fire(0.4) > 0
        env.unit().Disarm()
        env.wait_unit_state('standby')
        expect_error('NotAuthorized', env.session(spath).RecordEndpoint, 'crown', 'whitening',
                     '', contains=('org.smplaser.document',))
        mock.SetAllowed(['org.smplaser.treat', 'org.smplaser.records', 'org.smplaser.document'])
        env.session(spath).RecordEndpoint('crown', 'whitening', '')
        env.session(spath).End('')
        m.RecordFollowUp('p-pk', 'crown', findings(adverse=['blistering']))
        expect_error('NotAuthorized', m.ClearPatchHold, 'p-pk', 'crown', '',
                     contains=('org.smplaser.acknowledge',))
        assert course(env, 'p-pk')['crown']['status'] == 'on-hold'
        mock.SetAllowed(['org.smplaser.acknowledge'])
        m.ClearPatchHold('p-pk', 'crown', 'reviewed')
        expect_error('NotAuthorized', m.Course, 'p-pk', contains=('org.smplaser.records',))


# --- smplaserctl: report, map and export --------------------------------------

def ctl(env, *args, rc=0):
    p = subprocess.run([CTL, '--session'] + list(args), env=env.env(), capture_output=True,
                       text=True, timeout=60, stdin=subprocess.DEVNULL)
    if rc is not None and p.returncode != rc:
        raise AssertionError('smplaserctl %s: exit %d, expected %d\n%s%s' %
                             (' '.join(args), p.returncode, rc, p.stdout, p.stderr))
    return p


def read_png(path):
    """(width, height, rows of (r, g, b)) of an 8-bit RGB or RGBA PNG, as cairo writes."""
    with open(path, 'rb') as f:
        data = f.read()
    assert data[:8] == b'\x89PNG\r\n\x1a\n', 'not a PNG'
    pos, idat = 8, b''
    while pos < len(data):
        n, kind = struct.unpack('>I4s', data[pos:pos + 8])
        chunk = data[pos + 8:pos + 8 + n]
        if kind == b'IHDR':
            w, h, depth, ctype = struct.unpack('>IIBB', chunk[:10])
        elif kind == b'IDAT':
            idat += chunk
        pos += 12 + n
    assert depth == 8 and ctype in (2, 6), (depth, ctype)
    bpp = 3 if ctype == 2 else 4
    raw, stride, rows, prev = zlib.decompress(idat), w * bpp, [], bytearray(w * bpp)
    for y in range(h):
        ftype, line = raw[y * (stride + 1)], bytearray(raw[y * (stride + 1) + 1:(y + 1) * (stride + 1)])
        for i in range(stride):
            a = line[i - bpp] if i >= bpp else 0
            b, c = prev[i], prev[i - bpp] if i >= bpp else 0
            if ftype == 1:
                line[i] = (line[i] + a) & 0xff
            elif ftype == 2:
                line[i] = (line[i] + b) & 0xff
            elif ftype == 3:
                line[i] = (line[i] + (a + b) // 2) & 0xff
            elif ftype == 4:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                line[i] = (line[i] + (a if pa <= pb and pa <= pc else b if pb <= pc else c)) & 0xff
        rows.append([tuple(line[x * bpp:x * bpp + 3]) for x in range(w)])
        prev = line
    return w, h, rows


def check_colours(png, drawing, expected):
    """Every drawn patch shows the colour of the status @expected says it has."""
    w, h, rows = read_png(png)
    assert (w, h) == (drawing['width'], drawing['height']), (w, h, drawing)
    seen = {}
    for p in drawing['patches']:
        x, y = (int(v) for v in p['sample'])
        seen[p['patch']] = rows[y][x]
        want = STATUS_RGB[expected.get(p['patch'], 'untreated')]
        assert rows[y][x] == want, '%s at (%d, %d) is %s, expected %s (%s)' % (
            p['patch'], x, y, rows[y][x], want, expected.get(p['patch'], 'untreated'))
    assert len(seen) == 8, seen


def check_fhir(path, history, course_json):
    """The Bundle is valid against the official FHIR R4 JSON schema, every reference
    resolves in it, and it holds what the records hold."""
    p = subprocess.run(['node', FHIR_VALIDATE, path], capture_output=True, text=True, timeout=60)
    assert p.returncode == 0, 'FHIR R4 schema validation failed:\n' + p.stdout + p.stderr
    with open(path) as f:
        b = json.load(f)
    assert b['resourceType'] == 'Bundle' and b['type'] == 'collection'
    urls = {e['fullUrl'] for e in b['entry']}
    assert len(urls) == len(b['entry']), 'a fullUrl given twice'
    refs = re.findall(r'"reference": "([^"]+)"', json.dumps(b))
    assert refs and all(r in urls for r in refs), [r for r in refs if r not in urls]
    by = {}
    for e in b['entry']:
        by.setdefault(e['resource']['resourceType'], []).append(e['resource'])
    # What the schema does not check (required bindings, cardinalities) and we rely on.
    codes = {'preparation', 'in-progress', 'not-done', 'on-hold', 'stopped', 'completed',
             'entered-in-error', 'unknown'}
    assert all(r['status'] in codes for r in by['Procedure']), by['Procedure']
    assert all(r['actuality'] == 'actual' and r['subject'] for r in by.get('AdverseEvent', []))
    assert all(r['status'] == 'final' for r in by['Observation'])
    assert len(by['Patient']) == 1 and by['Patient'][0]['identifier'][0]['value'] == 'p-rep'
    assert 'name' not in by['Patient'][0], 'the patient is an identifier only'
    assert len(by['Procedure']) == len(history), (len(by['Procedure']), len(history))
    assert [d['serialNumber'] for d in by['Device']] == ['SIM00001']
    endpoints = sum(len(p['endpoints']) for p in course_json['patches'])
    findings = sum(('pigment_remaining_pct' in f) + ('redness_resolved' in f)
                   for p in course_json['patches'] for f in p['follow_ups'])
    adverse = sum(len(f['adverse']) for p in course_json['patches'] for f in p['follow_ups'])
    assert len(by['Observation']) == endpoints + findings, (len(by['Observation']), endpoints,
                                                            findings)
    assert len(by.get('AdverseEvent', [])) == adverse
    sites = {r['bodySite'][0]['text'] for r in by['Procedure']}
    assert 'Crown (vertex)' in sites, sites
    return by


@test
def test_report_map_and_fhir_export():
    """smplaserctl report writes PDF, PNG and SVG from one drawing: the PDF's text
    holds the clinic, each patch's course and what to expect; each patch's pixel in
    the PNG has its status's colour; export --fhir is a valid FHIR R4 Bundle."""
    with Env(config='[clinic]\nname = Clinique \u00c9toile, Lyon\n') as env:
        env.start()
        seed(env, *treated('p-rep', 'mid-scalp', 50), *treated('p-rep', 'left-temporal', 50),
             *follow_up_row('p-rep', 'left-temporal', 5, 20), *treated('p-rep', 'occipital', 50))
        ctl(env, 'session', 'start', 'p-rep')
        ctl(env, 'session', 'patch', 'crown')
        ctl(env, 'session', 'eyewear')
        ctl(env, 'params', 'set', 'wavelength_nm=1064', 'fluence_mj_cm2=3000', 'spot_um=3000',
            'pulse_ps=10000', 'rate_mhz=5000')
        ctl(env, 'arm')
        ctl(env, 'sim', 'footswitch', 'hold', '0.5')
        ctl(env, 'disarm')
        p = ctl(env, 'session', 'patch', 'right-temporal', rc=4)
        assert 'endpoint of crown is missing' in p.stderr, p.stderr
        ctl(env, 'session', 'endpoint', 'whitening', '--notes', 'even frosting')
        ctl(env, 'session', 'patch', 'right-temporal')
        ctl(env, 'arm')
        ctl(env, 'sim', 'footswitch', 'hold', '0.5')
        ctl(env, 'disarm')
        ctl(env, 'session', 'end', rc=4)        # no terminal to ask on: refused
        ctl(env, 'session', 'end', '--endpoint', 'partial-whitening', '--notes', 'done')
        ctl(env, 'followup', 'p-rep', 'crown', '--pigment', '40', '--redness', 'resolved',
            '--adverse', 'blistering,other', '--notes', 'a small blister')
        ctl(env, 'followup', 'p-rep', 'occipital', '--pigment', '0')
        ctl(env, 'followup', 'p-rep', 'crown', rc=2)        # no finding
        ctl(env, 'followup', 'p-rep', 'crown', '--pigment', '101', rc=2)
        p = ctl(env, 'followup', 'p-rep', 'crown', '--adverse', 'burn', rc=2)
        assert 'burn' in p.stderr, p.stderr
        expected = {'crown': 'on-hold', 'right-temporal': 'cooling-down',
                    'mid-scalp': 'awaiting-follow-up', 'left-temporal': 'eligible',
                    'occipital': 'clear'}
        course_json = json.loads(ctl(env, '--json', 'course', 'p-rep').stdout)
        got = {p['patch']: p['status'] for p in course_json['patches']}
        assert {k: got[k] for k in expected} == expected, got
        text = ctl(env, 'course', 'p-rep').stdout
        assert 'endpoint: whitening (even frosting)' in text and 'blistering' in text, text

        tmp = env.tmp
        out = ctl(env, 'report', 'p-rep', '-o', os.path.join(tmp, 'r.pdf')).stdout
        assert 'Wrote' in out, out
        pdf = subprocess.run(['pdftotext', '-layout', os.path.join(tmp, 'r.pdf'), '-'],
                             capture_output=True, text=True, timeout=30).stdout
        flat = ' '.join(pdf.split())
        next_date = time.strftime('%Y-%m-%d', time.gmtime(
            [p for p in course_json['patches'] if p['patch'] == 'right-temporal'][0]
            ['next_eligible_usec'] / 1e6))
        for words in ('Clinique \u00c9toile, Lyon', 'Patient p-rep', 'Crown (vertex)',
                      'Endpoint: whitening (even frosting)', 'Endpoint: partial-whitening',
                      '40% of the pigment remaining', 'blistering', 'held for a review',
                      'Occipital', '0% of the pigment remaining', 'What to expect',
                      'fade in about two weeks', '42 days (six weeks)', next_date,
                      'after a follow-up finds pigment remaining', '1064 nm, 3.0 J/cm2'):
            assert words in flat, '%r not in the PDF:\n%s' % (words, pdf)

        info = json.loads(ctl(env, '--json', 'report', 'p-rep', '-o',
                              os.path.join(tmp, 'r.png')).stdout)
        assert info['format'] == 'png' and info['pages'] == 1, info
        check_colours(os.path.join(tmp, 'r.png'), info, expected)
        info = json.loads(ctl(env, '--json', 'map', 'p-rep', '-o',
                              os.path.join(tmp, 'm.png')).stdout)['drawing']
        check_colours(os.path.join(tmp, 'm.png'), info, expected)

        ctl(env, 'report', 'p-rep', '-o', os.path.join(tmp, 'r.svg'))
        svg = open(os.path.join(tmp, 'r.svg')).read()
        assert ET.fromstring(svg).tag == '{http://www.w3.org/2000/svg}svg'
        fills = set(re.findall(r'fill:rgb\(([0-9.]+)%,([0-9.]+)%,([0-9.]+)%\)', svg))
        fills = {tuple(round(float(v) * 255 / 100) for v in f) for f in fills}
        for status, colour in STATUS_RGB.items():
            assert colour in fills, (status, colour, sorted(fills))
        ctl(env, 'report', 'p-rep', '-o', os.path.join(tmp, 'r.txt'), rc=2)

        ctl(env, 'export', 'p-rep', '--fhir', '-o', os.path.join(tmp, 'b.json'))
        by = check_fhir(os.path.join(tmp, 'b.json'), env.history('p-rep'), course_json)
        assert len(by['AdverseEvent']) == 2 and len(by['Procedure']) == 5, by.keys()
        crown = [r for r in by['Observation'] if r.get('valueCodeableConcept', {}).get('text')
                 == 'whitening']
        assert crown and crown[0]['partOf'][0]['reference'] in {
            e for e in re.findall(r'"fullUrl": "([^"]+)"', open(os.path.join(tmp, 'b.json')).read())}
        # A patient with no record exports a valid Bundle too.
        ctl(env, 'export', 'p-none', '--fhir', '-o', os.path.join(tmp, 'empty.json'))
        p = subprocess.run(['node', FHIR_VALIDATE, os.path.join(tmp, 'empty.json')],
                           capture_output=True, text=True, timeout=60)
        assert p.returncode == 0, p.stdout


if __name__ == '__main__':
    sys.exit(main())
