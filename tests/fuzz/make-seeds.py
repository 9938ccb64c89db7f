#!/usr/bin/python3
"""Write the small seed corpora of the fuzz harnesses into tests/fuzz/corpus/.

Run from the top of the tree.  The records-database seeds come from
tests/fuzz/seed_store.c (a real database written by daemon/store.c); this
script writes the codec, config and D-Bus argument seeds.
"""
import os
import struct
import zlib

ROOT = "tests/fuzz/corpus"
MAGIC, VERSION, REPLY = 0x4C53, 1, 0x80


def frame(op, seq, status, payload=b""):
    hdr12 = struct.pack("<HBBHHHH", MAGIC, VERSION, op, seq, len(payload), status, 0)
    crc = zlib.crc32(hdr12 + payload) & 0xFFFFFFFF
    return hdr12 + struct.pack("<I", crc) + payload


def write(harness, name, data):
    d = os.path.join(ROOT, harness)
    os.makedirs(d, exist_ok=True)
    with open(os.path.join(d, name), "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)


def codec_seeds():
    params = struct.pack("<HHIII", 1064, 3000, 4000, 10000, 5000)
    status = struct.pack("<BBHBBBBIIq", 2, 0, 0, 0, 0, 0, 0, 42, 1200, 1700000000)
    pulse = struct.pack("<III", 7, 1190, 1200) + bytes(4)
    info = (b"SIM-0001".ljust(16, b"\0") + b"SMP-1064".ljust(16, b"\0") +
            bytes([1, 2, 3, 0]) + struct.pack("<HHIHHIIIHH", 1064, 0, 10000,
                                              2000, 6000, 5000, 25000, 10000,
                                              500, 2000) + bytes(4))
    seeds = {
        "get_info": frame(0x01, 1, 0),
        "get_info_reply": frame(0x01 | REPLY, 1, 0, info[:64]),
        "set_params": frame(0x02, 2, 0, params),
        "set_params_reply": frame(0x02 | REPLY, 2, 0, params),
        "arm": frame(0x03, 3, 0),
        "arm_refused": frame(0x03 | REPLY, 3, 4),
        "heartbeat_reply": frame(0x05 | REPLY, 9, 0),
        "get_rtc_reply": frame(0x07 | REPLY, 4, 0, struct.pack("<q", 1700000000)),
        "status_report": frame(0x40, 100, 0, status[:24]),
        "pulse_report": frame(0x41, 101, 0, pulse[:16]),
        "bad_crc": frame(0x04, 5, 0)[:12] + b"\0\0\0\0",
        "truncated": frame(0x02, 2, 0, params)[:20],
    }
    for name, data in seeds.items():
        write("fuzz_codec", name, data)


def config_seeds():
    with open("data/smplaserd.conf") as f:
        write("fuzz_config", "shipped", f.read())
    write("fuzz_config", "all_keys", """[rules]
cooldown_days = 60
test_spot = yes
test_spot_pulses = 20
test_spot_review_days = 14
[protocol]
wavelengths_nm = 1064,532
fluence_min_mj_cm2 = 1000
fluence_max_mj_cm2 = 10000
spot_min_um = 2000
spot_max_um = 6000
qswitch_pulse_min_ns = 5
qswitch_pulse_max_ns = 25
pico_pulse_min_ps = 300
pico_pulse_max_ps = 750
rate_max_mhz = 10000
pulses_per_patch = 3000
max_session_energy_j = 10000
[safety]
heartbeat_ms = 500
idle_timeout_s = 60
energy_tolerance_pct = 15
rtc_max_skew_s = 300
[patches]
nape = Nape of the neck
scar-1 = Scar, left
[auth]
allow_root = false
session_bus = deny
[backends]
kmod = true
libusb = off
sim = 1
""")
    write("fuzz_config", "short_cooldown", "[rules]\ncooldown_days = 41\n")
    write("fuzz_config", "twice", "[safety]\nheartbeat_ms = 500\nheartbeat_ms = 400\n")
    write("fuzz_config", "unknown", "[lasers]\npower = 11\n")


def s(text):
    b = text.encode()
    return bytes([len(b)]) + b


def q(v, n):
    return (v & ((1 << (8 * n)) - 1)).to_bytes(n, "little")


def dbus_seeds():
    # opcodes: 0 patient id, 1 add patch, 2 patch name, 3 set field,
    # 4 params check, 5 check patch (see fuzz_dbus_args.c)
    write("fuzz_dbus_args", "patients", b"\0" + s("P-0001") + b"\0" + s("bad id!") +
          b"\0" + s("x" * 65) + b"\0" + s(""))
    write("fuzz_dbus_args", "patches", b"\2" + s("crown") + b"\2" + s("Crown") +
          b"\1" + s("nape") + s("Nape") + b"\2" + s("nape") + b"\1" + s("-bad") + s("x"))
    setp = b""
    for field, val in ((0, 1064), (2, 3000), (4, 5000), (6, 10000), (8, 3000)):
        setp += b"\3" + bytes([field, 4]) + q(val, 8)   # 'u'
    write("fuzz_dbus_args", "params_ok", setp + b"\4\0" + b"\4\2" + bytes([0]) +
          q(1064, 2) + q(0, 2) + q(10000, 4) + q(2000, 2) + q(6000, 2) +
          q(5000, 4) + q(25000, 4) + q(10000, 4))
    write("fuzz_dbus_args", "params_bad", b"\3" + bytes([0, 9]) + q(1064, 8) +
          b"\3" + bytes([41, 4]) + q(-1, 8) + b"\3" + bytes([200, 4]) + q(5, 8) +
          s("laser_power") + b"\4\0")
    day = 86400 * 1000
    now = 1764000000000
    write("fuzz_dbus_args", "cooldown", b"\5" + q(42, 4) + b"\0" + q(20, 2) + q(14, 4) +
          b"\1" + q(now - 41 * day, 8) + q(1, 4) + q(now - 100 * day, 8) + q(now, 8) +
          b"\5" + q(42, 4) + b"\1" + q(20, 2) + q(14, 4) +
          b"\0" + q(0, 8) + q(0, 4) + q(0, 8) + q(now, 8))
    top = (1 << 63) - 1      # dates at the ends of int64: saturation, no overflow
    write("fuzz_dbus_args", "int64_edges", b"\5" + q(42, 4) + b"\0" + q(20, 2) + q(14, 4) +
          b"\1" + q(top - 1000, 8) + q(0, 4) + q(0, 8) + q(top, 8) +
          b"\5" + q(42, 4) + b"\1" + q(20, 2) + q(14, 4) +
          b"\0" + q(0, 8) + q(3, 4) + q(-(1 << 63), 8) + q(-(1 << 63), 8))



# fuzz_dbus_dispatch (see its step_* functions).  Must match the C tables:
DISPATCH_WORDS = [
    "P-0001", "P-0002", "crown", "occipital", "mid-scalp", "nape", "",
    "key", "door", "estop", "handpiece", "cooling", "temperature", "shutter",
    "watchdog", "interlock", "self-test", "energy", "overtemp", "internal",
    "none", "short", "oversize", "bad-crc", "wrong-seq", "stall", "no-answer", "flood",
    "get-info", "set-params", "arm", "disarm", "heartbeat", "get-rtc", "ack-fault",
    "get-status", "pulse-report",
    "wavelength_nm", "fluence_mj_cm2", "spot_um", "pulse_ps", "rate_mhz",
    "done\nall fine", "bad\x01note",
    "P-0003", "whitening", "partial-whitening", "no-whitening", "follicle-damage",
    "hair-loss", "blistering", "scarring", "infection", "hypopigmentation", "other",
    "redness_resolved", "pigment_remaining_pct", "adverse", "note", "left-temporal",
]
DISPATCH_METHODS = [
    "ListUnits", "ListPatches", "CheckPatch", "History", "StartSession", "SetParameters",
    "Arm", "Disarm", "AcknowledgeFault", "SelectPatch", "ConfirmEyewear", "End",
    "SetFootswitch", "SetInterlock", "SetEnergyDrift", "InjectFault", "ClearFaultCause",
    "SetRtcSkew", "SetCalibration", "SetHostile", "DropNextReply", "Unplug", "Replug",
    "Course", "RecordFollowUp", "ClearPatchHold", "RecordEndpoint",
]
WRONG_SIGNATURES = ["", "s", "u", "b", "x", "ss", "a{sv}", "i", "d", "v", "S", "su", "sb",
                    "s", "o"]


def word(w):
    """A string argument: a dictionary word, or raw bytes (at most 63)."""
    if w in DISPATCH_WORDS:
        return bytes([DISPATCH_WORDS.index(w)])
    w = w.encode() if isinstance(w, str) else w
    return bytes([0x80 | len(w)]) + w


def call(method, *args, unit=0, path=0, wrong=None):
    """One method call; path 0-3: its interface's object on @unit, 4 the root,
    5 the unit's session, 6 a fuzzed path (then a word), 7 the other unit."""
    out = bytes([0, DISPATCH_METHODS.index(method), 7 if wrong is not None else 0,
                 (path & 15) | (unit << 4)])
    if wrong is not None:
        out += bytes([WRONG_SIGNATURES.index(wrong)])
    return out + b"".join(args)


def fuzzed_member(member, iface=None, unit=0):
    return bytes([0, 0xf1 if iface else 0xf0, 0]) + word(member) + \
        (word(iface) if iface else b"") + bytes([unit << 4])


def params(*entries):
    """SetParameters' a{sv}: (field index 0-4 or a key word, value[, type index])."""
    out = bytes([len(entries)])
    for e in entries:
        field, value = e[0], e[1]
        typ = e[2] if len(e) > 2 else 0          # 0: 'u'
        if isinstance(field, int):
            out += bytes([field | 0x80, typ]) + q(value, 8)
        else:
            out += bytes([0x85, typ]) + q(value, 8) + word(field.encode())
    return out


def findings(pigment=None, redness=None, adverse=(), note=None):
    """RecordFollowUp's a{sv} (fuzz_dbus_dispatch.c append_findings)."""
    out, n = b"", 0
    if redness is not None:
        out += bytes([0, 1 if redness else 0])
        n += 1
    if pigment is not None:
        out += bytes([1, 0, pigment])
        n += 1
    if adverse:
        out += bytes([2, 0, len(adverse)]) + b"".join(word(a) for a in adverse)
        n += 1
    if note is not None:
        out += bytes([3, 0]) + word(note)
        n += 1
    return bytes([n]) + out


def flag(b):
    return bytes([1 if b else 0])


def advance(ms):
    if ms >= 60000:
        return b"\4\xff"
    return bytes([4, max(1, ms // 50) - 1])


def prepare(unit=0, patient=0, patch=0):
    return bytes([6, unit | (patient << 1) | (patch << 3)])


def standard(kind, iface, prop=0, path=0):
    """kind 0 Get, 1 GetAll, 2 Set, 3 Introspect, 4 GetManagedObjects."""
    return bytes([3, kind, iface, prop, path])


OWNER_GONE = b"\7\0"
VALID = params((0, 1064), (1, 3000), (2, 4000), (3, 10000), (4, 5000))


def dispatch_seeds():
    h = "fuzz_dbus_dispatch"
    one, two = b"\0", b"\1"
    fire = call("SetFootswitch", flag(1)) + advance(1000) + call("SetFootswitch", flag(0))
    treatment = prepare() + call("Arm") + advance(2200) + fire
    write(h, "treatment", one + treatment + call("Disarm") +
          call("End", word("done\nall fine"), path=5) +
          call("History", word("P-0000".encode())) + call("CheckPatch", word("P-0000".encode()),
                                                           word("crown")))
    write(h, "treatment_by_hand", one + call("StartSession", word("P-0001")) +
          call("SetParameters", VALID) + call("SelectPatch", word("occipital"), path=5) +
          call("ConfirmEyewear", path=5) + call("Arm") + advance(2200) + fire +
          call("End", word(""), path=5))
    write(h, "refusals", one + call("Arm") + call("StartSession", word(b"bad id!")) +
          call("StartSession", word("P-0001")) +
          call("SetParameters", params((1, 99999999))) + call("Arm") +
          call("SelectPatch", word("nape"), path=5) + call("SelectPatch", word("crown"), path=5) +
          call("Arm") + call("SetParameters", VALID) + call("Arm") +
          call("ConfirmEyewear", path=5) + call("SetInterlock", word("door"), flag(1)) +
          call("Arm") + call("SetInterlock", word("door"), flag(0)) +
          call("InjectFault", word("overtemp")) + call("Arm") + call("AcknowledgeFault") +
          call("ClearFaultCause") + call("AcknowledgeFault") + call("SetCalibration", flag(0)) +
          call("Arm") + call("SetCalibration", flag(1)) +
          call("SetRtcSkew", q(100000, 8)) + call("Arm") + call("SetRtcSkew", q(0, 8)) +
          call("End", word("bad\x01note"), path=5) + call("End", word(""), path=5) +
          call("End", word(""), path=5))
    write(h, "cooldown", one + treatment + call("End", word(""), path=5) + prepare())
    write(h, "unplug_emitting", one + prepare() + call("Arm") + advance(2200) +
          call("SetFootswitch", flag(1)) + advance(500) + call("Unplug") + advance(300) +
          call("Arm") + call("Replug") + advance(400) + call("Unplug") + call("Unplug") +
          call("Replug"))
    write(h, "owner_gone_armed", one + prepare() + call("Arm") + advance(2200) +
          call("SetFootswitch", flag(1)) + advance(300) + OWNER_GONE + advance(100))
    write(h, "idle_timeout", one + prepare() + call("Arm") + advance(60000))
    write(h, "energy_fault", one + prepare() + call("Arm") + advance(2200) +
          call("SetEnergyDrift", q(400000, 4)) + call("SetFootswitch", flag(1)) +
          advance(600) + call("Arm") + call("AcknowledgeFault"))
    write(h, "hostile", one + prepare() + call("SetHostile", word("no-answer"), q(2, 4)) +
          call("Arm") + call("DropNextReply", word("arm")) + call("Arm") +
          call("SetHostile", word("none"), q(0, 4)) + call("Arm") + advance(2200) +
          call("DropNextReply", word("pulse-report")) + fire + call("Disarm"))
    write(h, "wrong_calls", one + call("Arm", word(b"x"), wrong="s") +
          call("SetParameters", word(b"x"), wrong="s") + call("StartSession", wrong="") +
          call("SetParameters", params(("laser_power", 5), (0, 1064, 10), (1, 5, 12))) +
          fuzzed_member("Fire") + fuzzed_member("Arm", iface="P-0001") +
          call("Arm", path=6) + word(b"nothing") + call("ListUnits", path=5) +
          standard(0, 1, 8) + standard(1, 0, 0, 4) + standard(2, 1, 10) + standard(3, 0, 0, 4) +
          standard(4, 0, 0, 4) + standard(0, 2, 14, 5))
    write(h, "two_units", two + prepare(0) + prepare(1, patient=1) + call("Arm") +
          call("Arm", unit=1) + advance(2200) + call("SetInterlock", word("estop"), flag(1),
                                                     unit=1) +
          fire + call("ListUnits", path=4))

    # Two units, one patient, one patch: the second may not arm once the
    # first has emitted (S2 across units: the store's own check).
    write(h, "two_units_same_patch", two + prepare(0) + prepare(1) + call("Arm") +
          advance(2200) + fire + call("Disarm") + call("Arm", unit=1))

    # The clinical record (issue 16): the template holds a history of 50 days ago
    # (fuzz_dbus_dispatch.c seed_history): P-0001 mid-scalp and left-temporal clear,
    # P-0002 crown and occipital waiting for a follow-up, P-0003 crown eligible,
    # P-0003 occipital on hold.
    write(h, "clinical_endpoint", one + treatment + call("Disarm") + call("End", word(""), path=5) +
          call("SelectPatch", word("occipital"), path=5) +
          call("RecordEndpoint", word("occipital"), word("whitening"), word(""), path=5) +
          call("RecordEndpoint", word("crown"), word("frosted"), word(""), path=5) +
          call("RecordEndpoint", word("crown"), word("whitening"), word("even"), path=5) +
          call("SelectPatch", word("occipital"), path=5) + call("End", word(""), path=5) +
          call("Course", word("P-0000"), path=4))
    write(h, "clinical_rules", one + prepare(patient=2) + call("Arm") +
          call("RecordFollowUp", word("P-0002"), word("crown"), findings(pigment=30), path=4) +
          call("SelectPatch", word("crown"), path=5) + call("Arm") + advance(2200) + fire +
          call("Disarm") + call("RecordEndpoint", word("crown"), word("no-whitening"),
                                word(""), path=5) +
          call("SelectPatch", word("occipital"), path=5) + call("End", word(""), path=5) +
          prepare(patient=3, patch=1) + call("Arm") +
          call("ClearPatchHold", word("P-0003"), word("occipital"), word("healed"), path=4) +
          call("SelectPatch", word("occipital"), path=5) + call("Arm") +
          call("SelectPatch", word("crown"), path=5) +
          call("RecordFollowUp", word("P-0003"), word("crown"),
               findings(adverse=["infection", "other"], note="after the visit"), path=4) +
          call("Arm") + call("End", word(""), path=5) +
          prepare(patient=1, patch=2) + call("Arm") + call("Course", word("P-0001"), path=4))
    write(h, "clinical_stale_follow_up", one + prepare(patient=2, patch=1) + call("Arm") +
          call("SelectPatch", word("occipital"), path=5) + call("Arm"))
    write(h, "clinical_clear_untreated", one + prepare(patient=1, patch=3) + call("Arm") +
          call("SelectPatch", word("left-temporal"), path=5) + call("Arm"))
    write(h, "clinical_arm_race", one + prepare(patient=3) +
          call("RecordFollowUp", word("P-0003"), word("crown"), findings(pigment=0), path=4) +
          call("Arm") +
          call("RecordFollowUp", word("P-0003"), word("crown"), findings(pigment=10,
                                                                         redness=True), path=4) +
          call("Arm") + advance(2200) + fire + call("Disarm") + call("End", word(""), path=5))

    # "[auth] session_bus = deny" (first byte 0x0e): every call but ListUnits,
    # ListPatches and Disarm is refused NotAuthorized.
    write(h, "denied", b"\x0e" + prepare() + call("Arm") + call("Disarm") +
          call("CheckPatch", word("P-0001"), word("crown")) + call("History", word("P-0001")) +
          call("SetFootswitch", flag(1)) + call("Unplug") + call("ListPatches", path=4))


def store_seeds():
    import subprocess
    import tempfile
    with tempfile.TemporaryDirectory() as tmp:
        exe = os.path.join(tmp, "seed_store")
        subprocess.run(["cc", "-std=gnu11", "-D_GNU_SOURCE", "-Iinclude", "-Idaemon", "-o", exe,
                        "tests/fuzz/seed_store.c", "daemon/store.c", "daemon/store-chain.c",
                        "daemon/store-restore.c", "daemon/store-copy.c", "daemon/store-clinical.c",
                        "-lsqlite3", "-lcrypto", "-lpthread"],
                       check=True)
        subprocess.run([exe, os.path.join(tmp, "state")], check=True)
        with open(os.path.join(tmp, "state", "records.db"), "rb") as f:
            db = f.read()
    write("fuzz_store_open", "valid", db)
    write("fuzz_store_open", "header_only", db[:100])
    write("fuzz_store_open", "half", db[:len(db) // 2])
    flipped = bytearray(db)
    for i in range(len(db) // 2, len(db) // 2 + 64):
        flipped[i] ^= 0x5A
    write("fuzz_store_open", "flipped_page", bytes(flipped))
    write("fuzz_store_open", "not_a_db", b"SQLite format 2\0" + bytes(84))
    # Damage lists (see fuzz_store_open.c): 24-bit offset, XOR byte (0: cut there).
    write("fuzz_store_open", "damage_header", bytes([0x10, 0, 0, 0x01, 0x1c, 0, 0, 0xff]))
    write("fuzz_store_open", "damage_pages", bytes([0x08, 0x10, 0, 0x55, 0x20, 0x30, 0, 0x80,
                                                    0x00, 0x50, 0, 0]))


if __name__ == "__main__":
    codec_seeds()
    config_seeds()
    dbus_seeds()
    dispatch_seeds()
    store_seeds()
