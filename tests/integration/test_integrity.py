#!/usr/bin/python3
# SPDX-License-Identifier: MIT
"""The records' integrity check after READY (issue 12): smplaserd no longer reads
the whole database before it takes its bus name (seconds with a clinic's ten
years); it checks it in the background once ready.  A page damaged where the
start does not look is found then: every unit faults (records-failed), nothing
arms, even after the fault is acknowledged, and the log says why.  Sound records
pass and change nothing.  Same harness as test_daemon.py.

Usage: tests/integration/test_integrity.py [test_name...]   (TAP on stdout)
"""
import os
import signal
import sqlite3
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from harness import UNIT1, Env, expect_error, main, test, wait_until  # noqa: E402

UNIT2 = '/org/smplaser/Laser1/unit/SIM00002'
CHECK_TIMEOUT = 60	# the check runs at the lowest priority on a busy machine


def add_history(env, pulses=4000):
    """Another unit's old treatment with @pulses pulses, written raw (as years of
    use would have left them), so that the pulses fill pages the start never reads."""
    db = sqlite3.connect(os.path.join(env.state_dir, 'records.db'))
    # The hash chain's triggers call smplaserd's functions (issue 15.12): stand-ins
    # here, the chain is not what this test judges (the pages are).
    db.create_function('smpl_chain_digest', -1, lambda *a: bytes(32))
    db.create_function('smpl_chain_link', 3, lambda *a: bytes(32))
    try:
        db.execute("INSERT INTO units VALUES ('OLD1', 'SMPL-1064', '1.0.0', 1, 1)")
        db.execute("INSERT INTO sessions (id, patient, unit_serial, operator_uid,"
                   " operator_name, start_ms, end_ms, state)"
                   " VALUES (9000, 'p-old', 'OLD1', 0, 'x', 1000, 2000, 'ended')")
        db.execute("INSERT INTO treatments (id, session_id, patient, patch, unit_serial,"
                   " unit_firmware, operator_uid, operator_name, wavelength_nm,"
                   " fluence_mj_cm2, spot_um, pulse_ps, rate_mhz, set_energy_uj, armed_ms,"
                   " armed_rtc_s, end_ms, shot_at_arm, shot_at_end, pulse_count,"
                   " pulses_recorded, outcome) VALUES (9000, 9000, 'p-old', 'crown', 'OLD1',"
                   " '1.0.0', 0, 'x', 1064, 4000, 3000, 10000, 5000, 282743, 1000, 1, 2000,"
                   " 0, ?, ?, ?, 'completed')", (pulses, pulses, pulses))
        db.executemany("INSERT INTO pulses (treatment_id, unit_serial, host_ms, shot,"
                       " measured_uj, set_uj) VALUES (9000, 'OLD1', ?, ?, 280000, 282743)",
                       ((1000 + i, i + 1) for i in range(pulses)))
        db.commit()
    finally:
        db.close()		# the last connection: the log goes into the file


def damage_a_pulses_page(env):
    """Garbage over a leaf page of the pulses table, in the middle of the file."""
    path = os.path.join(env.state_dir, 'records.db')
    db = sqlite3.connect(path)
    try:
        size = db.execute('PRAGMA page_size').fetchone()[0]
        pages = [r[0] for r in db.execute("SELECT pageno FROM dbstat WHERE name = 'pulses'"
                                          " AND pagetype = 'leaf' ORDER BY pageno")]
    finally:
        db.close()
    assert len(pages) > 10, pages
    page = pages[len(pages) // 2]
    with open(path, 'r+b') as f:
        f.seek((page - 1) * size)
        f.write(b'\x5a' * size)
    return page


def check_lines(env):
    """The integrity check's lines of the daemon started last (the log keeps every start)."""
    text = env.log()
    text = text[text.rfind(' on the session bus, records in'):]
    return [ln for ln in text.splitlines() if 'integrity check' in ln]


def the_check_said(env, what):
    wait_until(lambda: check_lines(env), CHECK_TIMEOUT, 'the integrity check to finish')
    line = check_lines(env)[-1]
    print('# ' + line[:240])
    assert what in line, line


@test
def test_corrupt_records_found_after_ready_fault_every_unit():
    """A damaged page the start does not read: smplaserd is ready as usual, then its
    check faults both units and refuses every arming, acknowledged or not."""
    with Env() as env:
        env.start(sim=2)
        env.treat('p-001', 'crown')
        env.kill(signal.SIGTERM)
        add_history(env)
        page = damage_a_pulses_page(env)
        print('# page %d of the pulses damaged' % page)
        t0 = time.monotonic()
        env.start(sim=2)
        print('# running after %.0f ms' % ((time.monotonic() - t0) * 1000))
        the_check_said(env, 'corrupt')
        for unit in (UNIT1, UNIT2):
            wait_until(lambda: env.unit_prop('LatchedFault', unit) == 'records-failed', 5,
                       'the fault on %s' % unit)
        env.wait_unit_state('standby', 5)
        env.ready_session('p-002', 'crown')
        expect_error('DeviceFault', env.unit().Arm)
        env.unit().AcknowledgeFault()
        msg = expect_error('DeviceFault', env.unit().Arm)
        print('# after the acknowledge: ' + msg)
        assert env.unit_prop('State') != 'ready'


@test
def test_sound_records_pass_the_check_and_arm():
    """Sound records: the check passes in the background and arming goes on."""
    with Env() as env:
        env.start()
        env.treat('p-001', 'crown')
        env.kill(signal.SIGTERM)
        add_history(env)
        env.start()
        the_check_said(env, 'passed')
        env.ready_session('p-002', 'crown')
        env.arm_to_ready()
        env.unit().Disarm()


if __name__ == '__main__':
    sys.exit(main())
