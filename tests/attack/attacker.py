# SPDX-License-Identifier: MIT
"""The attacker: several actors drive the real smplaserd at once, faults are
injected at random instants, and every oracle judges by the truth (the fired
logs and what this process knows it did), never by the daemon's own records.

An Episode is one world (bus, state directory, daemon with N simulated units)
driven by a program of steps: either a seed (a directed program, one per known
class of hole) or random steps drawn from a seeded RNG.  At its end the world
is settled (footswitches up, interlocks closed, units plugged, faults
acknowledged, the clock right, the disk free), every unit must arm again for a
fresh patient, the daemon is stopped cleanly and the records are read
read-only and judged.

Violation classes (each names the invariant it breaks):
  no-reply            a call not answered within 5 s
  echo-control        an error message carrying a control character or escape
  crash               the daemon died on its own (or a sanitizer report)
  S1-unarmed          a pulse fired with no arm issued for the unit's session
  S2-reemit           a patient's patch (one patient whatever the letter case) emitted
                      on in two sessions (no true time passes in an episode)
  S2-testspot         test-spot rule broken: a second emitting treatment of a patient
                      within the review period, or the test spot's pulse limit exceeded
  S2-decision         CheckPatch/SelectPatch says eligible for a patch that emitted
  S2-history          History(patient in another case) misses an emitting treatment
  S3-lost / S3-extra  a session's fired pulses and its recorded pulse count differ
  S3-reset-count      a treatment closed from a counter that went back (after the reset was
                      acknowledged) with fewer pulses than it fired
  S3-counter-jump     a session's count above its fired pulses after the unit's counter
                      jumped forward while it was armed (a faulty unit believed)
  S3-uncounted        a closed treatment without a pulse count
  S3-open             a treatment left open or unknown although its unit came back
  S3-phantom / S3-misattributed  a pulse row for a shot never fired / fired in another session
  S3-rows-lost        fewer pulse rows (measured energies) than pulses fired, when no report
                      could be lost (no SIGKILL, unplug or dropped report during the session)
  S3-rows-reset       the same, for shot numbers the unit fires again after its counter
                      went back and the reset was acknowledged
  S3-session-count    a session's PulseCount above what it fired
  S4-after-disarm     a pulse fired after Disarm (or End) was answered
  S4-owner-gone       a pulse fired more than 1.5 s after the session's owner left the bus
  S5-energy           a pulse fired after one outside +/-20% in the same arming
  S5-limit            a patch fired past its pulse limit (pulses per patch, test spot)
  limit-early         the daemon disarmed for the pulse limit before it was reached
  S6-not-owner        a call by a connection that did not open the session changed it
  S6-disarm           Disarm refused
  S8-clock            Arm succeeded with the host clock off the unit's RTC by > 5 min
  prop-cache          a property cache fed by the signals differs from GetAll
  records-utf8        text in the records that is not UTF-8
  unplug-objects      Simulator Unplug/Replug without InterfacesRemoved/InterfacesAdded
  fault-name          a Fault signal that does not name the injected fault
  api-name-clash      a property named like a signal of the same interface
  liveness-arm        after settling, a unit refuses to arm a fresh patient
  store-outage        after settling, arming refused because "the records store fails"
                      while the records are fine (a unit's counter taken for a store failure)
  false-fault         a fault latched for a pulse "fired outside any treatment" that the unit
                      fired armed for a session (its report merely came late)
  signal-unorderly    SIGHUP/SIGPIPE ended the daemon without the orderly stop
  S6-operator-uid     a session or treatment record not carrying the uid of the client
                      that opened the session (system bus: clients of two uids)
  polkit-stuck        after polkit hung with calls waiting and their client left, an
                      authorized call is refused
  audit-missing       a successful SelectPatch/ConfirmEyewear/SetParameters/RecordEndpoint
                      not audited
"""
import re
import signal
import time

import dbus

from world import (World, Found, norm, unit_serial, unit_path, session_id,
                   CALL_TIMEOUT_S, ROOT, MANAGER, UNIT, SESSION, SIMULATOR, PROPS, OBJMGR)
import harness

PATCHES = ['frontal-hairline', 'mid-scalp', 'crown', 'left-temporal', 'right-temporal',
           'left-parietal', 'right-parietal', 'occipital']
INTERLOCKS = ['key', 'door', 'estop', 'handpiece', 'cooling', 'temperature', 'shutter']
# The tissue responses a technician records when a patch's treatment ends (issue 16).
ENDPOINTS = ['whitening', 'partial-whitening', 'no-whitening']
SIM_FAULTS = ['watchdog', 'interlock', 'self-test', 'energy', 'overtemp', 'cooling',
              'shutter', 'internal']
FAULT_WORDS = {'watchdog': ['watchdog'], 'interlock': ['interlock'],
               'self-test': ['self-test', 'selftest', 'self_test'], 'energy': ['energy'],
               'overtemp': ['overtemp', 'temperature', 'over-temp', 'overheat'],
               'cooling': ['cooling'], 'shutter': ['shutter'], 'internal': ['internal']}
DROP_COMMANDS = ['get-info', 'set-params', 'arm', 'disarm', 'heartbeat', 'get-rtc',
                 'ack-fault', 'get-status', 'pulse-report']
GOOD = {'wavelength_nm': 1064, 'fluence_mj_cm2': 3000, 'spot_um': 3000, 'pulse_ps': 10000,
        'rate_mhz': 5000}
BAD = [('fluence_mj_cm2', 20000), ('spot_um', 100), ('rate_mhz', 50000),
       ('wavelength_nm', 532), ('pulse_ps', 1)]
TOLERANCE = 0.20
# What a call on an unplugged unit gets: the unit's object (its Unit interface) is gone
# as a real unit's is, or (older daemons) it stays, disconnected
GONE = ('Disconnected', 'org.freedesktop.DBus.Error.UnknownObject',
        'org.freedesktop.DBus.Error.UnknownInterface', 'org.freedesktop.DBus.Error.UnknownMethod')
RTC_MAX_SKEW_S = 300
# The operator of the daemon's account of shots its records miss (daemon/store-restore.h)
MISSING_OPERATOR_NAME = 'unknown (records missing)'


def hostile_strings():
    """Names a clinic integrator's program may send: multi-byte characters around
    byte 64 (where the daemon cuts echoed input), escapes, control characters."""
    out = []
    for pad in range(60, 66):
        out.append('a' * pad + '\u00e9' * 3)            # 2-byte
        out.append('b' * pad + '\u20ac' * 2)            # 3-byte
        out.append('c' * pad + '\U0001f600')            # 4-byte
    out += ['crown\x1b[2J\x1b[31m', 'x\x07y', 'crown\n', '\u00e9' * 40, '\u20ac' * 30,
            'crown\u202e', '', ' ', 'CROWN', 'crown ', 'c' * 300]
    return out


HOSTILE = hostile_strings()


def params(**over):
    d = dict(GOOD)
    d.update(over)
    return dbus.Dictionary({k: dbus.UInt32(v) for k, v in d.items()}, signature='sv')


def case_variant(rng, s):
    return ''.join(c.upper() if c.isalpha() and rng.random() < 0.5 else c.lower()
                   for c in s)


class Violation:
    def __init__(self, cls, detail, t, episode):
        self.cls, self.detail, self.t, self.episode = cls, detail, t, episode

    def __repr__(self):
        return '%s: %s' % (self.cls, self.detail)


class Episode:
    """One world and one program of steps, judged by the truth."""

    def __init__(self, rng, config=None, report=None, keep_going=False, log=None,
                 name='episode'):
        self.rng = rng
        self.name = name
        cfg = config or {}
        self.cfg = cfg
        self.n_units = cfg.get('units', 2)
        self.test_spot = cfg.get('test_spot', 0)      # pulse limit, 0 = off
        self.features = set(cfg.get('features', ()))
        self.oracles_off = set(cfg.get('oracles_off', ()))
        self.ignore = set(cfg.get('ignore', ()))      # classes of holes still open
        self.ignored = []
        conf = ''
        if self.test_spot:
            conf = '[rules]\ntest_spot = true\ntest_spot_pulses = %d\n' % self.test_spot
        self.patch_limit = cfg.get('pulses_per_patch', 0)
        if self.patch_limit:
            conf += '[protocol]\npulses_per_patch = %d\n' % self.patch_limit
        system = cfg.get('bus') == 'system'
        self.world = World(self.n_units, conf, faketime='clock' in self.features,
                           disk='disk' in self.features, bus='system' if system else 'session',
                           remote_uids={'op3': 65534} if system else None)
        self.truth = self.world.truth
        self.truth.listeners.append(self._on_pulse)
        self.report = report or (lambda v: None)
        self.keep_going = keep_going
        self.log = log or (lambda s: None)
        self.violations = []
        self.steps = []
        self.t0 = time.monotonic()
        self.serials = [unit_serial(i) for i in range(1, self.n_units + 1)]
        self.units = {s: {'path': unit_path(i), 'session': None, 'plugged': True,
                          'fs': False, 'open': set(), 'armed_at': None, 'stopped_at': None,
                          'bad_pulse_arm': None, 'counter_back_at': [],
                          'last_arm_ok': False}
                      for i, s in enumerate(self.serials, 1)}
        self.sessions = {}            # path -> dict
        self.arm_no = 0
        self.patients = ['pat-%02d' % i for i in range(12)]
        self.ok_calls = []            # (kind, session id, unit, detail, when) of changes made
        self.kills = []               # when the daemon was SIGKILLed
        self.suspects = {}
        self.left = []                # (serial, target, time) of owners gone
        self.stats = {'calls': 0, 'arms_ok': 0, 'restarts': 0, 'steps': 0}
        self.disk_filled = False
        self.clock_was_ahead = False
        self.stop_when = None          # fn(violation, episode): end the episode at it
        self.seen = set()
        self.episode_incarnation_ok = True

    # --- bookkeeping ----------------------------------------------------------------

    def elapsed(self):
        return time.monotonic() - self.t0

    def found(self, cls, detail, fatal=False):
        v = Violation(cls, detail, self.elapsed(), self.name)
        if cls in self.ignore:
            self.ignored.append(v)
            return
        self.violations.append(v)
        v.hit = bool(self.stop_when and self.stop_when(v, self))
        if (cls, detail[:60]) not in self.seen or v.hit:
            self.seen.add((cls, detail[:60]))
            self.report(v)
        if fatal or not self.keep_going or v.hit:
            raise Found(str(v))

    def step(self, what):
        self.stats['steps'] += 1
        self.steps.append('%7.2f %s' % (self.elapsed(), what))
        self.log(what)

    def client(self, name):
        return self.world.client(name)

    def call(self, who, path, iface, method, *args):
        """A call by client @who; checks the answer came within 5 s with a clean error."""
        c = self.client(who)
        r = c.call(path, iface, method, *args)
        self.stats['calls'] += 1
        if not self.world.running():
            return r
        if r.error in ('org.freedesktop.DBus.Error.NoReply',
                       'org.freedesktop.DBus.Error.Timeout') and r.took < CALL_TIMEOUT_S - 0.5:
            harness.pump(0.3)              # the daemon went away while answering?
            self.check_alive()
        if r.error in ('org.freedesktop.DBus.Error.NoReply',
                       'org.freedesktop.DBus.Error.Timeout') or r.took > CALL_TIMEOUT_S:
            self.found('no-reply', '%s.%s%r by %s: no answer in %.1f s (%s)' % (
                iface.rsplit('.', 1)[1], method, tuple(_short(a) for a in args), who,
                r.took, r.error))
        if r.error and re.search(r'[\x00-\x08\x0b-\x1f\x7f]', r.message):
            self.found('echo-control', '%s.%s error message carries a control character: %r'
                       % (iface.rsplit('.', 1)[1], method, r.message[:120]))
        return r

    def sim(self, serial, method, *args):
        u = self.units[serial]
        if method == 'DropNextReply':
            # one slot: the next pulse's report is lost (pulse-report), or nothing is
            self.drain()
            u['drop_pulse_pending'] = bool(args) and args[0] == 'pulse-report'
        if method == 'SetHostile':
            self.taint(serial, 'hostile')
            u['hostile_until'] = time.monotonic() + 3.0
        return self.call('hands', self.units[serial]['path'], SIMULATOR, method, *args)

    # --- the truth, online --------------------------------------------------------------

    def _on_pulse(self, s, p):
        u = self.units[s]
        tgt = p['target']
        if tgt is None:
            self.found('S1-unarmed', '%s fired shot %d with no arm issued since its last '
                       'disarm' % (s, p['shot']))
            return
        if u['stopped_at'] is not None and u['stopped_at'][0] == tgt['arm']:
            self.found('S4-after-disarm', '%s fired shot %d (arm %d, session %d) after %s '
                       'was answered' % (s, p['shot'], tgt['arm'], tgt['sid'],
                                         u['stopped_at'][1]))
        for (ls, ltgt, when) in self.left:
            if ls == s and ltgt is tgt and p['seen'] > when + 1.5:
                self.found('S4-owner-gone', '%s fired shot %d %.1f s after the owner of '
                           'session %d left the bus' % (s, p['shot'], p['seen'] - when,
                                                        tgt['sid']))
        unseen = False                  # its report lost on the way: the daemon cannot judge it
        if u.get('drop_pulse_pending'):
            u['drop_pulse_pending'] = False
            tgt['taint'].add('pulse report dropped')
            unseen = True
        if u.get('hostile_until', 0) > p['seen']:
            tgt['taint'].add('hostile')
            unseen = True
        dev = p['measured'] / p['set'] - 1 if p['set'] else 0
        if u['bad_pulse_arm'] == tgt['arm']:
            self.found('S5-energy', '%s fired shot %d after a pulse outside +/-20%% in the '
                       'same arming' % (s, p['shot']))
        if abs(dev) > TOLERANCE + 0.005 and not unseen:
            u['bad_pulse_arm'] = tgt['arm']
        tgt['fired'] += 1

    def drain(self):
        self.truth.drain()

    def taint(self, serial, why):
        """The pulse reports of the unit's current arming may be lost for a reason the
        daemon cannot help (a SIGKILL, an unplug, a report dropped on the wire): its
        count must still be right, its rows may be fewer."""
        self.drain()
        t = self.truth.target.get(serial)
        if t is not None:
            t['taint'].add(why)

    def emitted_sessions(self):
        """{(patient casefolded, patch): {session id: (patient as typed, serial, pulses)}}."""
        out = {}
        for s in self.serials:
            for p in self.truth.pulses[s]:
                t = p['target']
                if t is None:
                    continue
                d = out.setdefault((t['patient'].casefold(), t['patch']), {})
                prev = d.get(t['sid'])
                d[t['sid']] = (t['patient'], s, (prev[2] if prev else 0) + 1)
        return out

    def emitted_patients(self):
        out = {}
        for (pat, patch), d in self.emitted_sessions().items():
            for sid, (typed, s, n) in d.items():
                out.setdefault(pat, {})[(sid, patch)] = (typed, s, n)
        return out

    # --- the world ---------------------------------------------------------------------

    def check_alive(self):
        if self.world.daemon is not None and self.world.daemon.poll() is not None:
            rc = self.world.daemon.returncode
            self.world.daemon = None
            tail = self.world.log()[-1500:]
            self.found('crash', 'smplaserd exited by itself with %s: ...%s' % (rc, tail[-600:]),
                       fatal=True)

    def sanitizer_check(self):
        log = self.world.log()
        for bad in ('AddressSanitizer', 'LeakSanitizer', 'runtime error:'):
            i = log.find(bad)
            if i >= 0:
                self.found('crash', 'sanitizer: %s' % log[max(0, i - 200):i + 400], fatal=True)

    def start(self):
        if not self.world.start():
            self.found('crash', 'smplaserd did not start: %s' % self.world.log()[-800:],
                       fatal=True)
        for s in self.serials:
            u = self.units[s]
            u['plugged'], u['session'], u['open'] = True, None, set()
            u['armed_at'] = None
            u['hold_until'] = None
            self.truth.target[s] = None
        self.check_api_names()

    def down(self, how):
        """The daemon is gone (@how): its sessions with it."""
        self.drain()
        for sp, sess in self.sessions.items():
            if sess['state'] == 'open':
                sess['state'] = how
        for s in self.serials:
            self.units[s]['session'] = None
            self.truth.target[s] = None
            self.units[s]['stopped_at'] = None
            self.units[s]['drop_pulse_pending'] = False

    # --- checks after every step ---------------------------------------------------------

    def after_step(self, compare=True):
        harness.pump(0)
        self.drain()
        self.check_alive()
        if self.world.running():
            self.release_reports()
        if compare and self.world.running():
            self.compare_cache()
            self.check_pulse_counts()

    def hold_reports(self, serial, ms):
        """The unit's interrupt reports held back @ms (Simulator.HoldReports; the
        unit goes on firing and answering), then released, late and in order."""
        self.step('reports of %s held back %d ms' % (serial, ms))
        r = self.sim(serial, 'HoldReports', True)
        if r.error and 'UnknownMethod' in r.error:      # a daemon before HoldReports
            return self.sim(serial, 'SetHostile', 'late-reports', dbus.UInt32(ms))
        if r.ok:
            self.units[serial]['hold_until'] = time.monotonic() + ms / 1000.0
        return r

    def release_reports(self, force=False):
        now = time.monotonic()
        for s in self.serials:
            u = self.units[s]
            if u.get('hold_until') and (force or now >= u['hold_until']):
                u['hold_until'] = None
                self.sim(s, 'HoldReports', False)

    def check_pulse_counts(self):
        """A session's PulseCount (as a client's cache has it) never exceeds the pulses
        its unit fired for it."""
        cache = self.world.cache
        counts = {}
        for path, ifaces in list(cache.objects.items()):
            props = ifaces.get(SESSION)
            if props and 'PulseCount' in props and '/session/' in path:
                counts[session_id(path)] = int(props['PulseCount'])
        if not counts:
            return
        self.drain()
        fired = {}
        for s in self.serials:
            for p in self.truth.pulses[s]:
                if p['target'] is not None:
                    fired[p['target']['sid']] = fired.get(p['target']['sid'], 0) + 1
        for sid, n in counts.items():
            if n > fired.get(sid, 0):
                self.found('S3-session-count', 'session %d counts %d pulses, its unit fired %d '
                           'for it' % (sid, n, fired.get(sid, 0)))

    def compare_cache(self):
        """GetManagedObjects and, in its reply, the cache as it stood: equal, or a
        property stays wrong across two looks (a missed PropertiesChanged)."""
        cache = self.world.cache
        if not cache.loaded and not cache.load():
            return
        done = {}

        def ok(objs):
            done['truth'] = {str(p): {str(i): {str(k): norm(v) for k, v in props.items()}
                                      for i, props in ifaces.items()}
                             for p, ifaces in objs.items() if str(p) != ROOT}
            done['cache'] = {p: {i: {k: norm(v) for k, v in props.items()}
                                 for i, props in ifaces.items()}
                             for p, ifaces in cache.objects.items()}

        def root_ok(props):
            done['root'] = ({str(k): norm(v) for k, v in props.items()},
                            {k: norm(v) for k, v in cache.root.items()})

        def err(e):
            done['err'] = e
        root = cache.bus.get_object(harness.BUS_NAME, ROOT, introspect=False)
        root.GetAll(MANAGER, dbus_interface=PROPS, reply_handler=root_ok, error_handler=err,
                    timeout=CALL_TIMEOUT_S)
        root.GetManagedObjects(dbus_interface=OBJMGR, reply_handler=ok, error_handler=err,
                               timeout=CALL_TIMEOUT_S)
        end = time.monotonic() + CALL_TIMEOUT_S + 0.5
        while not ('truth' in done and 'root' in done) and 'err' not in done and \
                time.monotonic() < end:
            harness.pump(0.002)
        if 'truth' not in done or 'root' not in done:
            if 'err' not in done and self.world.running():
                self.found('no-reply', 'GetManagedObjects/GetAll not answered in 5 s')
            return
        truth, snap = done['truth'], done['cache']
        truth[ROOT] = {MANAGER: done['root'][0]}
        snap[ROOT] = {MANAGER: done['root'][1]}
        now = time.monotonic()
        seen = set()
        for p in set(truth) | set(snap):
            for i in set(truth.get(p, {})) | set(snap.get(p, {})):
                if i.startswith('org.freedesktop.DBus.'):
                    continue
                tp, cp = truth.get(p, {}).get(i), snap.get(p, {}).get(i)
                if tp is None or cp is None:      # an object or interface added or gone
                    self._suspect((p, i, '(object)'), (
                        'present' if tp is not None else 'absent',
                        'present' if cp is not None else 'absent'), now, seen)
                    continue
                for k in set(tp) | set(cp):
                    if (p, i, k) in cache.invalidated:
                        continue
                    if tp.get(k, '<none>') != cp.get(k, '<none>'):
                        self._suspect((p, i, k), (repr(tp.get(k, '<none>')),
                                                  repr(cp.get(k, '<none>'))), now, seen)
        for k in list(self.suspects):
            if k not in seen:
                del self.suspects[k]

    def _suspect(self, key, val, now, seen):
        seen.add(key)
        prev = self.suspects.get(key)
        if prev and prev[0] == val and now - prev[1] >= 0.3:
            p, i, k = key
            self.found('prop-cache', '%s %s.%s: GetAll says %s, a client fed by the signals '
                       'still has %s' % (p.rsplit('/', 1)[1], i.rsplit('.', 1)[1], k,
                                         val[0], val[1]))
            self.suspects[key] = (val, now + 1e9)
        elif not prev or prev[0] != val:
            self.suspects[key] = (val, now)

    def check_api_names(self):
        if 'api-names' in self.oracles_off:
            return
        r = self.call('probe', self.units[self.serials[0]]['path'],
                      'org.freedesktop.DBus.Introspectable', 'Introspect')
        if not r.ok:
            return
        import xml.etree.ElementTree as ET
        for iface in ET.fromstring(str(r.value)).iter('interface'):
            props = {m.get('name') for m in iface if m.tag == 'property'}
            sigs = {m.get('name') for m in iface if m.tag in ('signal', 'method')}
            for clash in sorted(props & sigs):
                self.found('api-name-clash', '%s has a property and a signal/method both '
                           'named %s (pydbus, dasbus cannot read it)' % (iface.get('name'),
                                                                         clash))

    # --- the actors' actions -------------------------------------------------------------

    def owner_of(self, serial):
        sp = self.units[serial]['session']
        return self.sessions[sp]['owner'] if sp else None

    def start_session(self, who, serial, patient):
        self.step('%s StartSession(%r) on %s' % (who, patient, serial))
        r = self.call(who, self.units[serial]['path'], UNIT, 'StartSession', patient)
        if r.ok:
            sp = str(r.value)
            self.sessions[sp] = {'path': sp, 'sid': session_id(sp), 'serial': serial,
                                 'owner': who, 'patient': patient, 'patch': None,
                                 'state': 'open', 'eyewear': False}
            self.units[serial]['session'] = sp
        return r

    def _s6(self, who, sess, what, r):
        if r.ok and sess and who != sess['owner'] and sess['state'] == 'open':
            self.found('S6-not-owner', '%s (not the owner %s) %s on session %d: it succeeded'
                       % (who, sess['owner'], what, sess['sid']))

    def select_patch(self, who, sp, patch):
        sess = self.sessions.get(sp)
        if self._owns(who, sess):
            # issue 16: another patch only once the ones treated have their endpoint
            self.document(who, sp, except_patch=patch)
        self.step('%s SelectPatch(%r) on session %s' % (who, _short(patch), sp.rsplit('/', 1)[1]))
        r = self.call(who, sp, SESSION, 'SelectPatch', patch)
        self._s6(who, sess, 'SelectPatch(%r)' % _short(patch), r)
        if r.ok and sess:
            self.drain()
            em = self.emitted_sessions().get((sess['patient'].casefold(), patch), {})
            other = [sid for sid in em if sid != sess['sid']]
            if other:
                typed = em[other[0]][0]
                self.found('S2-decision', 'SelectPatch(%s) for %r accepted: %r (session %d) '
                           'had it emitted on already' % (patch, sess['patient'], typed,
                                                          other[0]))
            if self.test_spot:
                pts = self.emitted_patients().get(sess['patient'].casefold(), {})
                if any(sid != sess['sid'] or p != patch for sid, p in pts):
                    self.found('S2-testspot', 'SelectPatch(%s) for %r accepted within the '
                               'review of its test spot %s' % (patch, sess['patient'],
                                                              sorted(pts)))
            sess['patch'] = patch
            self.ok_calls.append(('patch', sess['sid'], sess['serial'], patch, time.monotonic()))
        return r

    def confirm_eyewear(self, who, sp):
        sess = self.sessions.get(sp)
        self.step('%s ConfirmEyewear on session %s' % (who, sp.rsplit('/', 1)[1]))
        r = self.call(who, sp, SESSION, 'ConfirmEyewear')
        self._s6(who, sess, 'ConfirmEyewear', r)
        if r.ok and sess:
            sess['eyewear'] = True
            self.ok_calls.append(('eyewear', sess['sid'], sess['serial'], '', time.monotonic()))
        return r

    def set_params(self, who, serial, p):
        sp = self.units[serial]['session']
        sess = self.sessions.get(sp) if sp else None
        self.step('%s SetParameters(%s) on %s' % (who, _short(dict(p)), serial))
        r = self.call(who, self.units[serial]['path'], UNIT, 'SetParameters', p)
        self._s6(who, sess, 'SetParameters', r)
        if r.ok:
            self.ok_calls.append(('params', sess['sid'] if sess else None, serial, '',
                                  time.monotonic()))
        return r

    def arm(self, who, serial):
        u = self.units[serial]
        sp = u['session']
        sess = self.sessions.get(sp) if sp else None
        self.drain()
        # Whatever the daemon answers, the unit may now be armed for this session and
        # its patch: every pulse until the next arm belongs to them.
        before = self.truth.target[serial]
        if sess:
            self.arm_no += 1
            self.truth.target[serial] = {'arm': self.arm_no, 'sid': sess['sid'],
                                         'patient': sess['patient'], 'patch': sess['patch'],
                                         'serial': serial, 'fired': 0,
                                         'clock': self.world.clock_offset,
                                         'at': time.monotonic(), 'taint': set(),
                                         'jumped': u.pop('jumped', False)}
            u['stopped_at'] = None
        self.step('%s Arm on %s (session %s)' % (who, serial, sess['sid'] if sess else '-'))
        r = self.call(who, u['path'], UNIT, 'Arm')
        self._s6(who, sess, 'Arm', r)
        if not r.ok and before is not None and sess and before['sid'] == sess['sid'] and \
                before['patch'] == sess['patch'] and u['stopped_at'] is None:
            self.truth.target[serial] = before     # refused: the arming before goes on
        if r.ok:
            self.stats['arms_ok'] += 1
            u['last_arm_ok'] = True
            skew = self.world.clock_offset - self.world.rtc_skew[serial]
            if abs(skew) > RTC_MAX_SKEW_S + 5:
                self.found('S8-clock', 'Arm on %s accepted with the host clock %+d s off the '
                           "unit's RTC" % (serial, skew))
        return r

    def disarm(self, who, serial):
        u = self.units[serial]
        self.step('%s Disarm %s' % (who, serial))
        r = self.call(who, u['path'], UNIT, 'Disarm')
        if not r.ok and r.short() not in GONE and self.world.running():
            self.found('S6-disarm', 'Disarm by %s refused: %s %s' % (who, r.error, r.message))
        if r.ok:
            self.drain()
            t = self.truth.target[serial]
            if t:
                u['stopped_at'] = (t['arm'], 'Disarm by %s' % who)
        return r

    def _owns(self, who, sess):
        return sess is not None and who == sess['owner'] and sess['state'] == 'open'

    def endpoints_missing(self, who, sp):
        r = self.call(who, sp, PROPS, 'Get', SESSION, 'EndpointsMissing')
        return [str(p) for p in r.value] if r.ok else []

    def record_endpoint(self, who, sp, patch, endpoint=None):
        sess = self.sessions.get(sp)
        if endpoint is None:
            endpoint = ENDPOINTS[(sess['sid'] if sess else 0) % len(ENDPOINTS)]
        self.step('%s RecordEndpoint(%r, %s) on session %s' % (
            who, _short(patch), endpoint, sp.rsplit('/', 1)[1]))
        r = self.call(who, sp, SESSION, 'RecordEndpoint', patch, endpoint, '')
        self._s6(who, sess, 'RecordEndpoint', r)
        if r.ok and sess:
            self.stats['endpoints'] = self.stats.get('endpoints', 0) + 1
            self.ok_calls.append(('endpoint', sess['sid'], sess['serial'], patch,
                                  time.monotonic()))
        return r

    def document(self, who, sp, except_patch=None):
        """What a technician does when a treatment ends (issue 16): the endpoint of
        every patch of the session whose treatment emitted without one
        (EndpointsMissing), but @except_patch.  Refusals are the daemon's to make
        (the unit still armed for the patch: Busy); no oracle judges them."""
        for patch in self.endpoints_missing(who, sp):
            if patch != except_patch:
                self.record_endpoint(who, sp, patch)

    def end(self, who, sp, notes='done'):
        """End(@notes) by @who.  The owner documents first, as a real client does:
        End after an emission is refused (EndpointMissing) until each treated patch
        has its endpoint.  When the refusal comes anyway (a pulse report that came in
        after EndpointsMissing was read), the owner documents again; when the unit is
        still armed for the patch (RecordEndpoint: Busy), the owner disarms first (the
        endpoint is seen when the treatment ends) and that Disarm is what stops the
        unit.  Intruders only call End: it must fail for them (S6)."""
        sess = self.sessions.get(sp)
        owner = self._owns(who, sess)
        for attempt in range(3):
            if owner:
                self.document(who, sp)
            r = self._end(who, sp, sess, notes)
            if r.ok or not owner or r.short() != 'EndpointMissing':
                return r
            s = sess['serial']
            if self.unit_state(s) in ('arming', 'ready', 'emitting'):
                self.disarm(who, s)
                self.wait_state(s, ('standby', 'fault'), 3)
            else:
                self.wait(0.2)
        return r

    def _end(self, who, sp, sess, notes):
        self.step('%s End(%r) session %s' % (who, _short(notes), sp.rsplit('/', 1)[1]))
        r = self.call(who, sp, SESSION, 'End', notes)
        self._s6(who, sess, 'End', r)
        if r.ok and sess:
            self.drain()
            s = sess['serial']
            t = self.truth.target[s]
            if t and t['sid'] == sess['sid']:
                self.units[s]['stopped_at'] = (t['arm'], 'End by %s' % who)
            sess['state'] = 'ended'
            if self.units[s]['session'] == sp:
                self.units[s]['session'] = None
        return r

    def check_patch(self, who, patient, patch):
        self.drain()
        self.step('%s CheckPatch(%r, %r)' % (who, patient, _short(patch)))
        r = self.call(who, ROOT, MANAGER, 'CheckPatch', patient, patch)
        if r.ok and bool(r.value[0]):
            em = self.emitted_sessions().get((patient.casefold(), patch), {})
            if em:
                sid, (typed, s, n) = next(iter(em.items()))
                self.found('S2-decision', 'CheckPatch(%r, %s) says eligible; %r had %d '
                           'pulse(s) on it in session %d' % (patient, patch, typed, n, sid))
            elif self.test_spot and self.emitted_patients().get(patient.casefold()):
                self.found('S2-testspot', 'CheckPatch(%r, %s) says eligible within the '
                           'review of its test spot' % (patient, patch))
        return r

    def history(self, who, patient):
        self.drain()
        self.step('%s History(%r)' % (who, patient))
        r = self.call(who, ROOT, MANAGER, 'History', patient)
        if r.ok:
            got = {int(t['session']) for t in r.value}
            want = {sid for (pat, patch), d in self.emitted_sessions().items()
                    if pat == patient.casefold() for sid in d}
            missing = want - got
            if missing:
                self.found('S2-history', 'History(%r) misses the emitting session(s) %s of '
                           'the same patient' % (patient, sorted(missing)))
        return r

    def footswitch(self, serial, held):
        self.step('footswitch %s on %s' % ('held' if held else 'released', serial))
        r = self.sim(serial, 'SetFootswitch', held)
        if r.ok:
            self.units[serial]['fs'] = held
        return r

    def leave(self, who):
        """Client @who leaves the bus; the units armed for its sessions must stop."""
        self.drain()
        self.step('%s leaves the bus' % who)
        now = time.monotonic()
        for sp, sess in self.sessions.items():
            if sess['owner'] == who and sess['state'] == 'open':
                t = self.truth.target[sess['serial']]
                if t and t['sid'] == sess['sid']:
                    self.left.append((sess['serial'], t, now))
                sess['state'] = 'owner-gone'
                if self.units[sess['serial']]['session'] == sp:
                    self.units[sess['serial']]['session'] = None
        self.world.clients[who].close()

    def kill(self, nv_back=None, free_disk=None):
        """SIGKILL at this instant, maybe the unit's NV counter set back while the
        host is down, then a restart on the same state directory."""
        self.step('SIGKILL%s' % (' (unit %s comes back %d shots lower)' % nv_back
                                 if nv_back else ''))
        for s in self.serials:
            self.taint(s, 'SIGKILL')
        self.kills.append(time.monotonic())
        self.world.kill(signal.SIGKILL)
        self.down('killed')
        self.unit_counts_what_it_fired()
        self.stats['restarts'] += 1
        if nv_back:
            s, back = nv_back
            shots = self.world.nv_shots(s) or 0
            if self.world.write_nv(s, max(0, shots - back), 0):
                self.units[s]['counter_back_at'].append(time.monotonic())
                self.units[s]['counter_set_at'] = time.monotonic()
        if free_disk and self.world.fs:
            self.world.fs.free()
        self.start()

    def unit_counts_what_it_fired(self):
        """The simulated unit writes its fired log as it fires but saves its counter
        (sim-<serial>.nv) at the end of the daemon's 8 ms report tick: a SIGKILL in
        between would bring the unit back with a counter one shot behind what it fired,
        which no real unit does (its counter is part of firing).  With the daemon dead,
        the unit's counter is set to its last fired shot, unless the attacker set the
        counter after that pulse."""
        for s in self.serials:
            pulses = self.truth.pulses[s]
            if not pulses or self.units[s].get('counter_set_at', 0) > pulses[-1]['seen']:
                continue
            nv = self.world.nv_read(s)
            last = pulses[-1]['shot']
            if nv is not None and nv[0] != last:
                self.step('%s: its counter saved as %d, it fired shot %d: set to %d' % (
                    s, nv[0], last, last))
                self.world.write_nv(s, last, nv[1])

    def stop_and_start(self, sig=signal.SIGTERM):
        self.step('signal %s' % signal.Signals(sig).name)
        self.drain()
        self.world.daemon.send_signal(sig)
        try:
            rc = self.world.daemon.wait(10 if sig in (signal.SIGTERM, signal.SIGINT) else 1.5)
        except Exception:
            rc = None
        if rc is None:
            if sig in (signal.SIGTERM, signal.SIGINT):
                self.found('crash', 'smplaserd did not stop within 10 s of %s' % sig,
                           fatal=True)
            return                      # it ignores the signal: fine
        self.world.daemon = None
        self.down('stopped')
        self.stats['restarts'] += 1
        if rc != 0 and 'signals' not in self.oracles_off:
            self.found('signal-unorderly', '%s ended smplaserd with status %s, not the '
                       'orderly stop' % (signal.Signals(sig).name, rc))
        self.start()

    def inject_fault(self, serial, name):
        cache = self.world.cache
        before = len(cache.signals)
        self.step('InjectFault(%s) on %s' % (name, serial))
        r = self.sim(serial, 'InjectFault', name)
        if not r.ok:
            return r
        end = time.monotonic() + 1.0
        while time.monotonic() < end:
            harness.pump(0.01)
            for member, path, args, t in cache.signals[before:]:
                if member == 'Fault' and path == self.units[serial]['path']:
                    code, msg = str(args[0]), str(args[1])
                    words = FAULT_WORDS[name]
                    if 'fault-name' in self.oracles_off:
                        return r
                    if not any(w in code.lower() for w in words):
                        self.found('fault-name', 'InjectFault(%s): the Fault signal says code '
                                   '%r, message %r' % (name, code, msg[:80]))
                    return r
        return r

    def unplug(self, serial):
        cache = self.world.cache
        before = len(cache.events)
        self.step('Unplug %s' % serial)
        self.taint(serial, 'unplug')
        r = self.sim(serial, 'Unplug')
        if r.ok:
            u = self.units[serial]
            u['plugged'] = False
            sp = u['session']
            if sp:                      # the session goes with its unit (or is closed)
                self.sessions[sp]['state'] = 'unplugged'
                u['session'] = None
            wanted = ('removed', u['path'])
            if 'unplug-objects' not in self.ignore and not self._wait_event(before, wanted):
                self.found('unplug-objects', 'Simulator.Unplug of %s: no InterfacesRemoved for '
                           'the unit (a real unplug removes it)' % serial)
        return r

    def replug(self, serial):
        cache = self.world.cache
        before = len(cache.events)
        self.step('Replug %s' % serial)
        r = self.sim(serial, 'Replug')
        if r.ok:
            u = self.units[serial]
            u['plugged'] = True
            if 'unplug-objects' not in self.ignore and \
                    not self._wait_event(before, ('added', u['path'])):
                self.found('unplug-objects', 'Simulator.Replug of %s: no InterfacesAdded for '
                           'the unit (a real plug-in adds it)' % serial)
        return r

    def _wait_event(self, before, wanted, timeout=2.0):
        cache = self.world.cache
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            harness.pump(0.01)
            self.release_reports()      # a unit whose reports are held is not seen back
            for kind, path, ifaces in cache.events[before:]:
                if (kind, path) == wanted and UNIT in ifaces:
                    return True
        return False

    def set_shot_counter(self, serial, count):
        self.step('SetShotCounter(%d) on %s' % (count, serial))
        self.drain()
        cur = self.truth.max_shot[serial]
        self.taint(serial, 'counter set')
        r = self.sim(serial, 'SetShotCounter', dbus.UInt32(count))
        self.units[serial]['counter_set_at'] = time.monotonic()
        if r.ok and count <= cur:
            self.units[serial]['counter_back_at'].append(time.monotonic())
        if r.ok and count > cur + 1:
            self.units[serial]['jumped'] = True     # the next arming's count may include it
            self.units[serial]['set_forward_to'] = max(
                count, self.units[serial].get('set_forward_to', 0))
            t = self.truth.target[serial]
            if t is not None:
                t['jumped'] = True
        return r

    def set_clock(self, offset):
        if self.world.set_clock(offset):
            self.step('host clock %+d s' % offset)
            if offset > 0:
                self.clock_was_ahead = True

    def rtc_skew(self, serial, skew):
        """The unit's RTC is off the true time by @skew s."""
        arg = skew - self.world.offset_at_start
        self.step('RTC of %s %+d s' % (serial, skew))
        r = self.sim(serial, 'SetRtcSkew', dbus.Int64(arg))
        if r.ok:
            self.world.rtc_skew[serial] = skew
        return r

    def wait(self, seconds):
        """Time passes: the truth drained and the property cache compared every 0.25 s."""
        end = time.monotonic() + seconds
        last = time.monotonic()
        while True:
            now = time.monotonic()
            self.after_step(compare=now - last >= 0.25)
            if now - last >= 0.25:
                last = now
            if time.monotonic() >= end:
                break
            harness.pump(min(0.05, max(0, end - time.monotonic())))
        self.after_step()

    def wait_state(self, serial, states, timeout=4.0):
        path = self.units[serial]['path']
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            self.after_step(compare=False)
            r = self.call('probe', path, PROPS, 'Get', UNIT, 'State')
            if r.ok and str(r.value) in states:
                return str(r.value)
            harness.pump(0.03)
        return None

    def unit_state(self, serial):
        r = self.call('probe', self.units[serial]['path'], PROPS, 'Get', UNIT, 'State')
        return str(r.value) if r.ok else None

    # --- settle and judge ---------------------------------------------------------------

    def settle(self):
        """Back to a usable world: everything released and closed, faults acknowledged,
        the clock right, the disk free, every unit plugged in."""
        self.step('settle')
        if self.world.fs and self.world.fs.full:
            self.world.fs.free()
        self.set_clock(0)
        if not self.world.running():
            self.start()
        self.release_reports(force=True)
        for s in self.serials:
            if self.unit_state(s) in ('disconnected', None) or not self.units[s]['plugged']:
                self.replug(s)
                self.wait_state(s, ('standby', 'fault'), 5)
        for s in self.serials:
            self.footswitch(s, False)
            for name in INTERLOCKS:
                self.sim(s, 'SetInterlock', name, False)
            self.units[s]['open'] = set()
            self.sim(s, 'ClearFaultCause')
            self.sim(s, 'SetEnergyDrift', dbus.Int32(0))
            if self.world.rtc_skew[s]:
                self.rtc_skew(s, 0)
        for s in self.serials:
            sp = self.units[s]['session']
            if sp:
                self.end(self.sessions[sp]['owner'], sp, 'settle')
            self.disarm('hands', s)
        for s in self.serials:
            self.wait_state(s, ('standby', 'fault'), 6)
            self.call('hands', self.units[s]['path'], UNIT, 'AcknowledgeFault')
        self.wait(0.5)

    def liveness(self):
        """Every unit arms again for a fresh patient (a failed reconcile must not block
        a unit for ever), and fires, and the pulses are recorded (judged later)."""
        for i, s in enumerate(self.serials):
            patient = 'fresh-%d-%d' % (self.world.incarnation, i)
            ok = False
            last = None
            for attempt in range(3):
                r = self.start_session('probe', s, patient)
                if not r.ok:
                    last = r
                    self.call('hands', self.units[s]['path'], UNIT, 'AcknowledgeFault')
                    self.wait(0.5)
                    continue
                sp = str(r.value)
                self.select_patch('probe', sp, 'crown')
                self.confirm_eyewear('probe', sp)
                self.set_params('probe', s, params())
                r = self.arm('probe', s)
                last = r
                if r.ok and self.wait_state(s, ('ready',), 4):
                    self.footswitch(s, True)
                    self.wait(0.5)
                    self.footswitch(s, False)
                    ok = True
                self.disarm('probe', s)
                self.wait_state(s, ('standby', 'fault'), 3)
                self.end('probe', sp, 'liveness')
                if ok:
                    break
                self.call('hands', self.units[s]['path'], UNIT, 'AcknowledgeFault')
                self.wait(0.5)
            if not ok:
                # records written while the host clock was ahead (within the RTC bound, or
                # calls that write no arming) legitimately hold arming until true time
                # catches up with them (S8)
                clockish = last is not None and last.short() == 'ClockUnreliable' and \
                    self.clock_was_ahead
                if last is not None and 'records store fails' in last.message:
                    self.found('store-outage', 'after settling, %s refuses to arm: %s' % (
                        s, last.message[:200]))
                elif not clockish:
                    self.found('liveness-arm', 'after settling, %s never armed again for a '
                               'fresh patient: %s %s' % (s, last.short() if last else '?',
                                                         last.message[:160] if last else ''))


    def judge(self):
        """After a clean stop: the records against the truth."""
        self.drain()
        w = self.world
        treatments = w.db_rows('SELECT * FROM treatments ORDER BY id')
        pulses = w.db_rows('SELECT treatment_id, unit_serial, shot FROM pulses')
        by_tid = {t['id']: t for t in treatments}

        # fired per (serial, session), and every shot fired per session
        fired, shots = {}, {}
        for s in self.serials:
            for p in self.truth.pulses[s]:
                if p['target'] is None:
                    continue
                key = (s, p['target']['sid'])
                fired[key] = fired.get(key, 0) + 1
                shots.setdefault((s, p['shot']), set()).add(p['target']['sid'])

        # sessions whose every report could reach the daemon: as many rows as pulses
        tainted, targets = set(), {}
        for s in self.serials:
            for p in self.truth.pulses[s]:
                t = p['target']
                if t is not None:
                    targets[id(t)] = t
        for t in targets.values():
            if t['taint']:
                tainted.add((t['serial'], t['sid']))
        rows_of = {}
        for row in pulses:
            t = by_tid.get(row['treatment_id'])
            if t:
                k = (row['unit_serial'], t['session_id'])
                rows_of[k] = rows_of.get(k, 0) + 1
        # shots a unit fired again after its counter went back (a reflash, NV loss)
        reused = set()
        for s in self.serials:
            seen = set()
            for p in self.truth.pulses[s]:
                if p['shot'] in seen and p['target'] is not None:
                    reused.add((s, p['target']['sid']))
                seen.add(p['shot'])
        for key, n in sorted(fired.items()):
            if key in tainted:
                continue
            got = rows_of.get(key, 0)
            if got < n:
                self.found('S3-rows-reset' if key in reused else 'S3-rows-lost',
                           'session %d on %s: the unit fired %d pulses and reported each; '
                           '%d pulse rows (measured energy) in the records%s' % (
                               key[1], key[0], n, got,
                               ' (shot numbers fired again after its counter went back)'
                               if key in reused else ''))

        jumped = {(t['serial'], t['sid']) for t in targets.values() if t.get('jumped')}
        recs = {}
        for t in treatments:
            if self.judge_missing_shots(t):
                continue
            recs.setdefault((t['unit_serial'], t['session_id']), []).append(t)
        first_arm = {}
        for t in targets.values():
            k = (t['serial'], t['sid'])
            first_arm[k] = min(first_arm.get(k, t['at']), t['at'])
        for key in sorted(set(fired) | set(recs)):
            s, sid = key
            n = fired.get(key, 0)
            rows = recs.get(key, [])
            backs = [t for t in self.units.get(s, {}).get('counter_back_at', [])
                     if t >= first_arm.get(key, 0) - 0.5]
            known, accepted_unknown = 0, False
            for t in rows:
                if t['outcome'] == 'open':
                    self.found('S3-open', 'treatment %d (session %d, %s) still open after a '
                               'clean stop' % (t['id'], sid, s))
                elif t['outcome'] == 'unknown':
                    if backs:
                        accepted_unknown = True
                        known += t['pulses_recorded'] or 0
                    else:
                        self.found('S3-open', 'treatment %d (session %d, %s) stays unknown '
                                   'although its unit came back: %d fired' % (t['id'], sid, s, n))
                        accepted_unknown = True
                elif t['pulse_count'] is None:
                    self.found('S3-uncounted', 'treatment %d (session %d, %s) closed %s with no '
                               'pulse count (%d recorded, %d fired)' % (
                                   t['id'], sid, s, t['outcome'], t['pulses_recorded'], n))
                    known += t['pulses_recorded'] or 0
                else:
                    known += t['pulse_count']
            if accepted_unknown:
                if known > n:
                    self.found('S3-extra', 'session %d on %s: %d pulses recorded, %d fired'
                               % (sid, s, known, n))
            elif known != n:
                cls = 'S3-lost' if known < n else 'S3-extra'
                if known > n and key in jumped:
                    cls = 'S3-counter-jump'
                if known < n and backs and any(t['outcome'] == 'reconciled' for t in rows):
                    cls = 'S3-reset-count'
                self.found(cls, 'session %d on %s (%s): the unit fired %d pulses, the records '
                           'count %d (%s)' % (sid, s, rows[0]['patient'] if rows else '?', n,
                                              known, ', '.join('%s/%s/%s' % (
                                                  t['outcome'], t['pulse_count'],
                                                  t['pulses_recorded']) for t in rows)))
        # pulse rows: each a shot this unit fired in that very session
        for row in pulses:
            t = by_tid.get(row['treatment_id'])
            sids = shots.get((row['unit_serial'], row['shot']))
            if not sids:
                self.found('S3-phantom', 'pulse row shot %d of %s (treatment %d): never fired'
                           % (row['shot'], row['unit_serial'], row['treatment_id']))
            elif t and t['session_id'] not in sids:
                self.found('S3-misattributed', 'shot %d of %s fired in session %s, recorded in '
                           'treatment %d of session %d' % (row['shot'], row['unit_serial'],
                                                          sorted(sids), t['id'],
                                                          t['session_id']))
        self.judge_s2()
        self.judge_limits()
        self.judge_operators()
        self.judge_fault_claims()
        self.world.db_rows('SELECT * FROM audit')
        self.world.db_rows('SELECT * FROM sessions')
        if self.world.bad_text:
            self.found('records-utf8', 'the records hold text that is not UTF-8: %r' %
                       self.world.bad_text[0][:120])
        if 'audit' not in self.oracles_off:
            self.judge_audit()

    def judge_s2(self):
        for (pat, patch), d in sorted(self.emitted_sessions().items()):
            if len(d) > 1:
                desc = ', '.join('session %d %r on %s: %d pulses' % (sid, typed, s, n)
                                 for sid, (typed, s, n) in sorted(d.items()))
                self.found('S2-reemit', '%s of patient %s emitted on in %d sessions: %s' % (
                    patch, pat, len(d), desc))
        if self.test_spot:
            for pat, d in sorted(self.emitted_patients().items()):
                if len(d) > 1:
                    self.found('S2-testspot', 'patient %s: %d emitting treatments within the '
                               'test-spot review: %s' % (pat, len(d), sorted(
                                   (sid, patch, n) for (sid, patch), (_, _, n) in d.items())))
                for (sid, patch), (typed, s, n) in d.items():
                    if n > self.test_spot:
                        self.found('S2-testspot', 'test spot of %r (session %d, %s) fired %d '
                                   'pulses, limit %d' % (typed, sid, patch, n, self.test_spot))

    def judge_fault_claims(self):
        """A fault the daemon latched for a pulse "fired outside any treatment" (or "while
        not armed") must be about a pulse the unit fired with no arming for it."""
        by_path = {self.units[s]['path']: s for s in self.serials}
        for member, path, args, _ in self.world.cache.signals:
            if member != 'Fault' or path not in by_path or len(args) < 2:
                continue
            msg = str(args[1])
            m = re.search(r'pulse (\d+)\b.*(outside any treatment|while not armed)', msg)
            if not m:
                continue
            s, shot = by_path[path], int(m.group(1))
            fired = [p for p in self.truth.pulses[s] if p['shot'] == shot]
            if fired and fired[-1]['target'] is not None:
                t = fired[-1]['target']
                self.found('false-fault', '%s faulted: "%s"; the unit fired shot %d armed for '
                           'session %d (%s)' % (s, msg[:120], shot, t['sid'], t['patch']))

    def judge_missing_shots(self, t):
        """Whether treatment row @t is the daemon's account of shots its records miss
        (issue 15: a unit whose counter is ahead of the records on probe; the shots count
        as an emission on each patch of the unit's last session, by nobody known).  Such a
        row is no operator's and none of the session's pulses; it must stand for shots the
        unit's counter really claims: the attacker set that unit's counter forward at
        least that far.  Otherwise it is extra pulses in the records."""
        if t['operator_name'] != MISSING_OPERATOR_NAME:
            return False
        to = self.units.get(t['unit_serial'], {}).get('set_forward_to', 0)
        if t['outcome'] != 'reconciled' or t['shot_at_end'] is None or t['shot_at_end'] > to \
                or t['pulse_count'] != t['shot_at_end'] - t['shot_at_arm']:
            self.found('S3-extra', 'treatment %d (session %s, %s) counts %s shots "%s" '
                       '(%s..%s, %s) the unit\'s counter never claimed (set forward to %d)' % (
                           t['id'], t['session_id'], t['unit_serial'], t['pulse_count'],
                           MISSING_OPERATOR_NAME, t['shot_at_arm'], t['shot_at_end'],
                           t['outcome'], to))
        return True

    def judge_operators(self):
        """Every session and treatment record carries the uid of the client that opened
        the session (the only one who may arm for it)."""
        sessions = {r['id']: r for r in self.world.db_rows('SELECT id, operator_uid FROM sessions')}
        arms = self.world.db_rows('SELECT session_id, operator_uid FROM treatments'
                                  ' WHERE operator_name != ?', (MISSING_OPERATOR_NAME,))
        for sess in self.sessions.values():
            want = self.world.uid_of(sess['owner'])
            row = sessions.get(sess['sid'])
            if row and row['operator_uid'] != want:
                self.found('S6-operator-uid', 'session %d opened by uid %d is recorded for uid '
                           '%s' % (sess['sid'], want, row['operator_uid']))
            for t in arms:
                if t['session_id'] == sess['sid'] and t['operator_uid'] != want:
                    self.found('S6-operator-uid', 'a treatment of session %d (opened by uid %d) '
                               'is recorded as armed by uid %s' % (sess['sid'], want,
                                                                   t['operator_uid']))
                    break

    def polkit_hang(self, who, serial):
        """polkit hangs while privileged calls wait on it and the client that made them
        leaves the bus; once polkit answers again, authorized calls must succeed."""
        mock = self.world.polkit
        if mock is None:
            return
        self.step('polkit hangs; %s makes calls and leaves' % who)
        mock.SimulateHang(True)
        c = self.client(who)
        u = self.units[serial]
        pending = []
        if isinstance(c, type(self.world.client('probe'))):
            for method, args in (('SetParameters', (params(),)), ('Arm', ()),
                                 ('AcknowledgeFault', ())):
                try:
                    c.bus.get_object(harness.BUS_NAME, u['path'], introspect=False). \
                        get_dbus_method(method, UNIT)(*args, reply_handler=lambda *a: None,
                                                      error_handler=lambda e: None,
                                                      timeout=CALL_TIMEOUT_S)
                    pending.append(method)
                except dbus.DBusException:
                    pass
        harness.pump(0.2)
        self.leave(who)
        harness.pump(0.3)
        mock.ReleaseHangingCalls()
        mock.SimulateHang(False)
        self.wait(0.3)
        r = self.call('op1', ROOT, MANAGER, 'CheckPatch', 'pat-00', 'crown')
        if not r.ok and r.short() == 'NotAuthorized':
            self.found('polkit-stuck', 'after polkit hung and %s left with %d calls waiting, '
                       'an authorized CheckPatch is refused: %s' % (who, len(pending), r.message))

    def judge_limits(self):
        """No patch fires past its pulse limit in a session; the daemon disarms for the
        limit only when it was reached."""
        limit = min(x for x in (self.patch_limit, self.test_spot, 10 ** 9) if x)
        per = {}
        for s in self.serials:
            for p in self.truth.pulses[s]:
                t = p['target']
                if t is not None:
                    k = (t['sid'], t['patch'])
                    per[k] = per.get(k, 0) + 1
        if limit < 10 ** 9:
            for (sid, patch), n in sorted(per.items()):
                if n > limit:
                    self.found('S5-limit', 'session %d fired %d pulses on %s, limit %d' % (
                        sid, n, patch, limit))
        rows = self.world.db_rows("SELECT session_id, reason, detail FROM audit "
                                  "WHERE reason LIKE '%pulse-limit%'")
        for r in rows:
            n = max([c for (sid, patch), c in per.items() if sid == r['session_id']] or [0])
            if n < limit:
                self.found('limit-early', 'session %s disarmed for its pulse limit (%s) after '
                           '%d pulses fired, limit %d' % (r['session_id'], r['detail'], n,
                                                          limit))

    def judge_audit(self):
        rows = self.world.db_rows('SELECT session_id, unit_serial, kind, reason, detail '
                                  'FROM audit')
        text = {}
        for r in rows:
            line = ' '.join(str(r[k] or '') for k in ('kind', 'reason', 'detail')).lower()
            text.setdefault(r['session_id'], []).append(line)
            text.setdefault(('unit', r['unit_serial']), []).append(line)
        words = {'patch': None, 'eyewear': ['eyewear'], 'params': ['param'],
                 'endpoint': ['endpoint']}
        done = set()
        for kind, sid, serial, detail, when in self.ok_calls:
            # a step a SIGKILL cut short may lose its audit row with the flush window
            if any(when <= k <= when + 1.0 for k in self.kills):
                continue
            if (kind, sid) in done:
                continue
            done.add((kind, sid))
            lines = text.get(sid, []) if sid is not None else text.get(('unit', serial), [])
            want = words[kind] or [detail.lower()]
            if not any(w in line for line in lines for w in want):
                self.found('audit-missing', '%s of session %s on %s succeeded, no audit row '
                           'says so' % ({'patch': 'SelectPatch(%s)' % detail,
                                         'eyewear': 'ConfirmEyewear',
                                         'params': 'SetParameters',
                                         'endpoint': 'RecordEndpoint(%s)' % detail}[kind],
                                        sid, serial))
                break

    def finish(self):
        """Settle, liveness, clean stop, judge."""
        self.settle()
        if self.cfg.get('liveness', True):
            self.liveness()
        self.after_step()
        self.drain()
        rc = self.world.stop()
        self.down('stopped')
        if rc not in (0, None):
            self.found('crash', 'smplaserd exited with %s after SIGTERM: %s' % (
                rc, self.world.log()[-600:]), fatal=True)
        # Treatments closed with their end counter unread are settled from the unit's
        # counter when the daemon next reads it: start it once more, let it read every
        # unit, stop it, and judge then.
        self.step('restart to settle what waits for a counter')
        self.start()
        for s in self.serials:
            self.wait_state(s, ('standby', 'fault'), 5)
        self.wait(1.0)
        rc = self.world.stop()
        self.down('stopped')
        if rc not in (0, None):
            self.found('crash', 'smplaserd exited with %s after SIGTERM: %s' % (
                rc, self.world.log()[-600:]), fatal=True)
        self.sanitizer_check()
        self.judge()

    def close(self):
        self.world.close()


def _short(v):
    s = repr(v)
    return s if len(s) <= 70 else s[:67] + '...'
