# SPDX-License-Identifier: MIT
"""The attacker's world: a private bus, the real smplaserd --sim=N on a state
directory that survives restarts, several client connections, the truth read
from the simulated units' fired logs, and a GLib-style property cache.

Nothing here trusts the daemon's own account: what the units fired is read
from <state>/sim-<serial>.fired (each a symlink to a file outside the state
directory, so a full disk there cannot hide a pulse), and which session and
patch each pulse belongs to is what THIS process knows it armed for.
"""
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time

import dbus
import dbus.bus

HERE = os.path.dirname(os.path.abspath(__file__))
TOP = os.path.abspath(os.path.join(HERE, '..', '..'))
sys.path.insert(0, os.path.join(TOP, 'tests', 'integration'))
import harness  # noqa: E402
from harness import BUS_NAME, ROOT, MANAGER, UNIT, SESSION, SIMULATOR, PROPS, ERR  # noqa: E402,F401 (re-exported)

OBJMGR = 'org.freedesktop.DBus.ObjectManager'
LIBFAKETIME = '/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1'
PASSTHROUGH = os.path.join(TOP, 'build', 'tests', 'timerfd-passthrough.so')
PLAIN = os.path.join(TOP, 'build', 'smplaserd')
SAN = os.path.join(TOP, 'build', 'san', 'smplaserd')
CALL_TIMEOUT_S = 5.0
POLKIT = 'org.freedesktop.PolicyKit1'
DAY_S = 86400


_COPIES = {}


def daemon_binary(sanitized):
    """$SMPLASERD; else the sanitized build (when asked for and at least as new as the
    plain one: LD_PRELOAD of libfaketime does not work into ASan), else the plain one.
    A private copy: "make" rebuilding build/ meanwhile must not pull it away."""
    path = os.environ.get('SMPLASERD')
    if not path:
        path = PLAIN
        try:
            if sanitized and os.path.getmtime(SAN) >= os.path.getmtime(PLAIN):
                path = SAN
        except OSError:
            pass
    if path not in _COPIES:
        _COPIES[path] = harness._private_copy(path)
    return _COPIES[path]


def unit_serial(i):
    return 'SIM%05u' % i


def unit_path(i):
    return ROOT + '/unit/' + unit_serial(i)


def session_id(path):
    return int(str(path).rsplit('/', 1)[1])


class Found(Exception):
    """A violation that ends the episode (the world can no longer be judged)."""


class Result:
    """The outcome of one D-Bus call."""

    def __init__(self, value=None, error=None, message='', took=0.0):
        self.value, self.error, self.message, self.took = value, error, message, took

    @property
    def ok(self):
        return self.error is None

    def short(self):
        if self.ok:
            return 'ok'
        e = self.error
        return e[len(ERR):] if e.startswith(ERR) else e

    def __repr__(self):
        return '<%s %s>' % (self.short(), self.message[:80])


class Client:
    """One connection to the bus: an operator's program (or an intruder's)."""

    def __init__(self, world, name):
        self.world, self.name = world, name
        self.bus = dbus.bus.BusConnection(world.address)
        self.unique = self.bus.get_unique_name()
        self.alive = True

    def close(self):
        if self.alive:
            self.alive = False
            try:
                self.bus.close()
            except Exception:
                pass

    def call(self, path, iface, method, *args):
        """A call answered within CALL_TIMEOUT_S, or a Result with error NoReply."""
        start = time.monotonic()
        try:
            obj = self.bus.get_object(BUS_NAME, path, introspect=False)
            value = obj.get_dbus_method(method, iface)(*args, timeout=CALL_TIMEOUT_S)
            return Result(value, took=time.monotonic() - start)
        except dbus.DBusException as e:
            return Result(error=e.get_dbus_name() or 'unknown',
                          message=e.get_dbus_message() or '', took=time.monotonic() - start)


def _wire(a):
    """[signature, value] of a call argument, for RemoteClient."""
    if isinstance(a, dbus.Dictionary) or isinstance(a, dict):
        return ['a{sv}', {str(k): _wire(v) for k, v in a.items()}]
    if isinstance(a, (bool, dbus.Boolean)):
        return ['b', bool(a)]
    if isinstance(a, dbus.UInt32):
        return ['u', int(a)]
    if isinstance(a, dbus.Int32):
        return ['i', int(a)]
    if isinstance(a, (dbus.Int64, int)):
        return ['x', int(a)]
    return ['s', str(a)]


class RemoteClient:
    """A connection of another user (uid @uid): tests/attack/remote.py run as that user,
    making the calls this process sends it."""

    def __init__(self, world, name, uid):
        self.world, self.name, self.uid = world, name, uid
        self.proc = subprocess.Popen(
            ['setpriv', '--reuid=%d' % uid, '--regid=%d' % uid, '--clear-groups',
             '/usr/bin/python3', os.path.join(HERE, 'remote.py'), world.address],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd='/')
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError('the client of uid %d did not start' % uid)
        self.unique = json.loads(line)['ready']
        self.alive = True

    def close(self):
        if self.alive:
            self.alive = False
            try:
                self.proc.stdin.close()
                self.proc.wait(5)
            except Exception:
                self.proc.kill()
                self.proc.wait()

    def call(self, path, iface, method, *args):
        start = time.monotonic()
        self.proc.stdin.write(json.dumps({'path': str(path), 'iface': iface, 'method': method,
                                          'args': [_wire(a) for a in args]}) + '\n')
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            return Result(error='org.freedesktop.DBus.Error.NoReply',
                          message='the client of uid %d died' % self.uid,
                          took=time.monotonic() - start)
        out = json.loads(line)
        return Result(out.get('value'), out.get('error'), out.get('message', ''),
                      out.get('took', time.monotonic() - start))


class Truth:
    """What each simulated unit fired, read from its fired log, and whom each pulse was
    for.  attribute() is called by the attacker whenever it arms (the unit's target)."""

    def __init__(self, world, n_units):
        self.world = world
        self.paths = {}
        self.offset = {}
        self.partial = {}
        self.pulses = {}         # serial -> [pulse dict]
        self.target = {}         # serial -> current arm target (dict) or None
        self.max_shot = {}
        self.epoch = {}
        for i in range(1, n_units + 1):
            s = unit_serial(i)
            self.paths[s] = os.path.join(world.truth_dir, 'sim-%s.fired' % s)
            open(self.paths[s], 'a').close()
            self.offset[s], self.partial[s], self.pulses[s] = 0, b'', []
            self.target[s], self.max_shot[s], self.epoch[s] = None, -1, 0
        self.listeners = []      # fn(serial, pulse) called for each new pulse

    def drain(self):
        """Read every pulse fired since the last drain; returns them (serial, pulse)."""
        new = []
        for s, path in self.paths.items():
            with open(path, 'rb') as f:
                f.seek(self.offset[s])
                data = f.read()
            self.offset[s] += len(data)
            data = self.partial[s] + data
            lines = data.split(b'\n')
            self.partial[s] = lines.pop()
            for line in lines:
                kv = dict(x.split('=', 1) for x in line.decode().split())
                shot = int(kv['shot'])
                if shot <= self.max_shot[s]:
                    self.epoch[s] += 1          # the unit's counter went back
                self.max_shot[s] = shot
                p = {'serial': s, 'shot': shot, 'measured': int(kv['measured_uj']),
                     'set': int(kv['set_uj']), 'epoch': self.epoch[s],
                     'target': self.target[s], 'seen': time.monotonic(),
                     'index': len(self.pulses[s])}
                self.pulses[s].append(p)
                new.append((s, p))
        for s, p in new:
            for fn in self.listeners:
                fn(s, p)
        return new

    def count(self, serial):
        return len(self.pulses[serial])


class Cache:
    """A client's view of every object and property, fed only by InterfacesAdded,
    InterfacesRemoved and PropertiesChanged (GDBusObjectManagerClient's way), on its
    own connection.  compare() checks it against GetAll of every object."""

    def __init__(self, world):
        self.world = world
        self.bus = dbus.bus.BusConnection(world.address)
        self.objects = {}        # path -> iface -> {name: value}
        self.root = {}           # the Manager's properties (its own GDBusProxy)
        self.invalidated = set()
        self.owner = None
        self.events = []         # (kind, path, ifaces) of added/removed, for checks
        self.signals = []        # (member, path, args) of our own signals
        self.bus.add_match_string("type='signal',sender='%s'" % BUS_NAME)
        self.bus.add_match_string("type='signal',sender='org.freedesktop.DBus',"
                                  "member='NameOwnerChanged',arg0='%s'" % BUS_NAME)
        self.filter = self._filter
        self.bus.add_message_filter(self.filter)
        self.loaded = False
        self.pending = []

    def close(self):
        try:
            self.bus.remove_message_filter(self.filter)
            self.bus.close()
        except Exception:
            pass

    def _filter(self, bus, msg):
        if msg.get_type() != 4:          # signal
            return None
        member, iface, path = msg.get_member(), msg.get_interface(), msg.get_path()
        args = msg.get_args_list()
        if member == 'NameOwnerChanged' and iface == 'org.freedesktop.DBus':
            if str(args[0]) == BUS_NAME:
                self.objects.clear()
                self.root = {}
                self.invalidated.clear()
                self.loaded = False
                self.owner = str(args[2]) or None
            return None
        if self.owner is None or msg.get_sender() != self.owner:
            return None
        if iface == OBJMGR and member == 'InterfacesAdded':
            p = str(args[0])
            self.events.append(('added', p, sorted(str(i) for i in args[1])))
            obj = self.objects.setdefault(p, {})
            for i, props in args[1].items():
                obj[str(i)] = {str(k): v for k, v in props.items()}
        elif iface == OBJMGR and member == 'InterfacesRemoved':
            p = str(args[0])
            self.events.append(('removed', p, sorted(str(i) for i in args[1])))
            obj = self.objects.get(p, {})
            for i in args[1]:
                obj.pop(str(i), None)
            if not obj:
                self.objects.pop(p, None)
        elif iface == PROPS and member == 'PropertiesChanged':
            i = str(args[0])
            if path == ROOT and i == MANAGER:
                d = self.root          # the manager's own proxy
            elif i in self.objects.get(path, {}):
                d = self.objects[path][i]
            else:
                return None            # not a managed interface (yet): a GLib client drops it
            for k, v in args[1].items():
                d[str(k)] = v
                self.invalidated.discard((path, i, str(k)))
            for k in args[2]:
                d.pop(str(k), None)
                self.invalidated.add((path, i, str(k)))
        elif iface and iface.startswith('org.smplaser.'):
            self.signals.append((member, path, args, time.monotonic()))
        return None

    def load(self):
        """GetManagedObjects, as a GLib client does when the name gets an owner."""
        try:
            self.owner = self.bus.get_name_owner(BUS_NAME)
        except dbus.DBusException:
            self.owner = None
            return False
        done = {}

        # Each answer is taken in the order it came among the signals (in its reply
        # handler): a PropertiesChanged that follows it applies on top of it.
        def ok(objs):
            self.objects = {str(p): {str(i): {str(k): v for k, v in props.items()}
                                     for i, props in ifaces.items()}
                            for p, ifaces in objs.items() if str(p) != ROOT}
            done['v'] = True

        def root_ok(props):
            self.root = {str(k): v for k, v in props.items()}
            done['root'] = True

        def err(e):
            done['e'] = e
        root = self.bus.get_object(BUS_NAME, ROOT, introspect=False)
        root.GetManagedObjects(dbus_interface=OBJMGR, reply_handler=ok, error_handler=err,
                               timeout=CALL_TIMEOUT_S)
        root.GetAll(MANAGER, dbus_interface=PROPS, reply_handler=root_ok, error_handler=err,
                    timeout=CALL_TIMEOUT_S)
        end = time.monotonic() + CALL_TIMEOUT_S + 1
        while not ('v' in done and 'root' in done) and 'e' not in done and \
                time.monotonic() < end:
            harness.pump(0.005)
        if 'v' not in done or 'root' not in done:
            return False
        self.loaded = True
        return True


def norm(v):
    """A D-Bus value as plain Python, for comparing."""
    if isinstance(v, dbus.Dictionary) or isinstance(v, dict):
        return {str(k): norm(x) for k, x in v.items()}
    if isinstance(v, (dbus.Array, list, tuple)):
        return [norm(x) for x in v]
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (dbus.String, dbus.ObjectPath)):
        return str(v)
    if isinstance(v, (int, float)):
        return v
    return v


class Tmpfs:
    """A small tmpfs at @path, for a disk that fills (root only)."""

    def __init__(self, path, size_kib):
        self.path = path
        os.makedirs(path, mode=0o700, exist_ok=True)
        r = subprocess.run(['mount', '-t', 'tmpfs', '-o', 'size=%dk,mode=0700' % size_kib,
                            'smpl-attack', path], capture_output=True, text=True)
        self.mounted = r.returncode == 0
        self.filler = os.path.join(path, 'filler')
        self.full = False

    def fill(self):
        fd = os.open(self.filler, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            while os.write(fd, b'\0' * 65536) > 0:
                pass
        except OSError:
            pass
        try:
            while os.write(fd, b'\0' * 512) > 0:
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        self.full = True

    def free(self):
        try:
            os.unlink(self.filler)
        except OSError:
            pass
        self.full = False

    def close(self):
        if self.mounted:
            subprocess.run(['umount', '-l', self.path], capture_output=True)
            self.mounted = False


class World:
    """A private bus, one state directory, smplaserd --sim=N (started, killed,
    restarted), the clients, the truth and the cache."""

    def __init__(self, n_units=2, config='', faketime=False, disk=False, sanitized=None,
                 bus='session', remote_uids=None):
        self.bus_type = bus
        if bus == 'system':
            # polkit's answer within a call's 5 s, also when it hangs
            config = '[auth]\npolkit_timeout_s = 2\n' + config
        self.env = harness.Env(config=config, bus_type=bus)
        self.remote_uids = dict(remote_uids or {})     # client name -> uid
        self.polkit = None
        self.tmp = self.env.tmp
        self.address = self.env.address
        self.n = n_units
        self.state_dir = self.env.state_dir
        self.truth_dir = os.path.join(self.tmp, 'truth')
        os.makedirs(self.truth_dir)
        self.fs = None
        if disk:
            fs = Tmpfs(self.state_dir, 16384)
            if fs.mounted:
                self.fs = fs
        os.makedirs(self.state_dir, exist_ok=True)
        for i in range(1, n_units + 1):
            link = os.path.join(self.state_dir, 'sim-%s.fired' % unit_serial(i))
            os.symlink(os.path.join(self.truth_dir, 'sim-%s.fired' % unit_serial(i)), link)
        self.faketime = faketime and os.path.exists(LIBFAKETIME) and os.path.exists(PASSTHROUGH)
        self.offset_file = os.path.join(self.tmp, 'faketime')
        self.clock_offset = 0            # the daemon's wall clock = true time + this
        self.offset_at_start = 0         # the offset when the running daemon started
        self.rtc_skew = {unit_serial(i): 0 for i in range(1, n_units + 1)}
        self._write_offset(0)
        self.binary = daemon_binary(sanitized if sanitized is not None else not self.faketime)
        self.truth = Truth(self, n_units)
        self.daemon = None
        self.incarnation = 0
        self.log_path = os.path.join(self.tmp, 'smplaserd.log')
        self.cache = Cache(self)
        self.clients = {}
        self.bad_text = []       # text in the records that is not UTF-8

    # --- the daemon ---------------------------------------------------------------

    def _write_offset(self, seconds):
        new = self.offset_file + '.new'
        with open(new, 'w') as f:
            f.write('%+d\n' % seconds)
        os.rename(new, self.offset_file)

    def set_clock(self, seconds):
        """The daemon's host clock becomes true time + @seconds (no-op without faketime)."""
        if not self.faketime:
            return False
        self.clock_offset = seconds
        self._write_offset(seconds)
        return True

    def daemon_env(self):
        e = self.env.env()
        if self.faketime:
            e['LD_PRELOAD'] = PASSTHROUGH + ':' + LIBFAKETIME
            e['FAKETIME_TIMESTAMP_FILE'] = self.offset_file
            e['FAKETIME_NO_CACHE'] = '1'
            e['FAKETIME_DONT_FAKE_MONOTONIC'] = '1'
        return e

    def _fix_rtcs(self):
        """The simulated RTC starts from the host clock at start (sim/model.c): a unit's
        battery-backed clock keeps true time whatever the host says, so its NV offset is
        set to (its skew - the host's offset) before the daemon starts."""
        for s, skew in self.rtc_skew.items():
            shots = self.nv_shots(s)
            if shots is None and skew == 0 and self.clock_offset == 0:
                continue
            self.write_nv(s, shots or 0, skew - self.clock_offset)

    def nv_read(self, serial):
        """(shot_count, rtc_offset_s) of the unit's battery-backed state, or None."""
        try:
            with open(os.path.join(self.state_dir, 'sim-%s.nv' % serial)) as f:
                kv = dict(x.split('=', 1) for x in f.read().split())
            return int(kv['shot_count']), int(kv['rtc_offset_s'])
        except (OSError, KeyError, ValueError):
            return None

    def nv_shots(self, serial):
        nv = self.nv_read(serial)
        return nv[0] if nv else None

    def write_nv(self, serial, shots, rtc_offset):
        """The unit's battery-backed state rewritten while the daemon is down (it lives
        in the state directory: on a full disk, room is made for it and taken again)."""
        full = self.fs is not None and self.fs.full
        if full:
            self.fs.free()
        try:
            return self._write_nv(serial, shots, rtc_offset)
        finally:
            if full:
                self.fs.fill()

    def _write_nv(self, serial, shots, rtc_offset):
        path = os.path.join(self.state_dir, 'sim-%s.nv' % serial)
        try:
            with open(path + '.attack', 'w') as f:
                f.write('shot_count=%d rtc_offset_s=%d\n' % (shots, rtc_offset))
            os.rename(path + '.attack', path)
            return True
        except OSError:
            return False

    def start(self):
        self._fix_rtcs()
        self.offset_at_start = self.clock_offset
        log = open(self.log_path, 'a')
        args = [self.binary, '--config', self.env.config_path, '--state-dir', self.state_dir,
                '--sim=%d' % self.n]
        if self.bus_type == 'session':
            args.append('--session')
        elif self.polkit is None:
            self.start_polkit()
        self.daemon = subprocess.Popen(args, env=self.daemon_env(), stdout=log,
                                       stderr=subprocess.STDOUT)
        log.close()
        self.incarnation += 1
        end = time.monotonic() + 20
        probe = self.client('probe')
        while time.monotonic() < end:
            if self.daemon.poll() is not None:
                return False
            r = probe.call(ROOT, PROPS, 'Get', MANAGER, 'State')
            if r.ok and str(r.value) == 'running':
                self.cache.load()
                return True
            time.sleep(0.05)
        return False

    def running(self):
        return self.daemon is not None and self.daemon.poll() is None

    def kill(self, sig=signal.SIGKILL):
        if not self.running():
            return None
        self.daemon.send_signal(sig)
        try:
            rc = self.daemon.wait(15)
        except subprocess.TimeoutExpired:
            self.daemon.kill()
            rc = self.daemon.wait()
            rc = 'hang'
        return rc

    def stop(self):
        """SIGTERM: the orderly stop.  Returns the exit status."""
        return self.kill(signal.SIGTERM)

    def log(self):
        try:
            with open(self.log_path, errors='replace') as f:
                return f.read()
        except OSError:
            return ''

    # --- clients ------------------------------------------------------------------

    def client(self, name):
        c = self.clients.get(name)
        if c is None or not c.alive:
            if self.bus_type == 'system' and name in self.remote_uids:
                c = RemoteClient(self, name, self.remote_uids[name])
            else:
                c = Client(self, name)
            self.clients[name] = c
        return c

    def uid_of(self, name):
        return self.remote_uids.get(name, os.getuid())

    def start_polkit(self):
        """python-dbusmock's polkitd on the private system bus, every action allowed
        (for every user: the session owner rule is the daemon's own)."""
        p = subprocess.Popen(['/usr/bin/python3', '-m', 'dbusmock', '--system', '--template',
                              'polkitd'], env=self.env.env(), stdout=subprocess.DEVNULL,
                             stderr=subprocess.DEVNULL)
        self.env.helpers.append(p)
        bus = dbus.bus.BusConnection(self.address)
        end = time.monotonic() + 10
        while not bus.name_has_owner(POLKIT) and time.monotonic() < end:
            time.sleep(0.05)
        self.polkit = dbus.Interface(bus.get_object(POLKIT, '/org/freedesktop/PolicyKit1/Authority'),
                                     'org.freedesktop.DBus.Mock')
        self.polkit.SetAllowed(['org.smplaser.treat', 'org.smplaser.configure',
                                'org.smplaser.records', 'org.smplaser.acknowledge',
                                'org.smplaser.document'])

    # --- the records, read directly (read-only) --------------------------------

    def _text(self, b):
        try:
            return b.decode('utf-8')
        except UnicodeDecodeError:
            self.bad_text.append(b)
            return b.decode('utf-8', 'replace')

    def db_rows(self, sql, args=()):
        path = os.path.join(self.state_dir, 'records.db')
        if not os.path.exists(path):
            return []
        for attempt in range(20):
            try:
                db = sqlite3.connect('file:%s?mode=ro' % path, uri=True, timeout=5)
                try:
                    db.row_factory = sqlite3.Row
                    db.text_factory = self._text
                    return [dict(r) for r in db.execute(sql, args).fetchall()]
                finally:
                    db.close()
            except sqlite3.OperationalError as e:
                last = e
                time.sleep(0.1)
        raise last

    def close(self):
        for c in list(self.clients.values()):
            c.close()
        self.cache.close()
        if self.running():
            self.kill(signal.SIGKILL)
        self.daemon = None
        self.env.daemon = None
        if self.fs:
            self.fs.close()
        self.env.close()


__all__ = ['World', 'Client', 'Result', 'Truth', 'Cache', 'Found', 'norm', 'unit_serial',
           'unit_path', 'session_id', 'CALL_TIMEOUT_S', 'DAY_S', 'BUS_NAME', 'ROOT', 'MANAGER',
           'UNIT', 'SESSION', 'SIMULATOR', 'PROPS', 'ERR', 'OBJMGR']
