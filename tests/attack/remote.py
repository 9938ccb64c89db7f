#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""A client of another user, for the attacker (world.RemoteClient): run as that
user (setpriv), connects to the bus at argv[1] and makes the calls it reads on
stdin, one JSON object a line {"path", "iface", "method", "args": [[sig, value]]},
answering each with one JSON line {"value", "error", "message", "took"}."""
import json
import sys
import time

import dbus
import dbus.bus

BUS_NAME = 'org.smplaser.Laser1'
TIMEOUT_S = 5.0


def arg(sig, value):
    if sig == 's':
        return dbus.String(value)
    if sig == 'b':
        return dbus.Boolean(value)
    if sig == 'u':
        return dbus.UInt32(value)
    if sig == 'i':
        return dbus.Int32(value)
    if sig == 'x':
        return dbus.Int64(value)
    if sig == 'a{sv}':
        return dbus.Dictionary({k: arg(*v) for k, v in value.items()}, signature='sv')
    raise ValueError(sig)


def plain(v):
    if isinstance(v, dict):
        return {str(k): plain(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [plain(x) for x in v]
    if isinstance(v, dbus.Boolean):
        return bool(v)
    if isinstance(v, (int, float)):
        return v
    return str(v)


def main():
    bus = dbus.bus.BusConnection(sys.argv[1])
    print(json.dumps({'ready': bus.get_unique_name()}), flush=True)
    for line in sys.stdin:
        req = json.loads(line)
        start = time.monotonic()
        out = {}
        try:
            obj = bus.get_object(BUS_NAME, req['path'], introspect=False)
            value = obj.get_dbus_method(req['method'], req['iface'])(
                *[arg(*a) for a in req['args']], timeout=TIMEOUT_S)
            out['value'] = plain(value)
        except dbus.DBusException as e:
            out['error'] = e.get_dbus_name() or 'unknown'
            out['message'] = e.get_dbus_message() or ''
        out['took'] = time.monotonic() - start
        print(json.dumps(out), flush=True)


if __name__ == '__main__':
    main()
