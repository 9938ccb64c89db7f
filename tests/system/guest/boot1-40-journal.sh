#!/bin/sh
# The daemon's entries in the journal carry structured fields.
. "$(dirname "$0")/lib.sh"

journalctl -u smplaserd.service -o verbose --no-pager >/tmp/journal.txt 2>&1
check "journalctl has smplaserd's entries with SMPL_EVENT" grep -q 'SMPL_EVENT=' /tmp/journal.txt
check "an arm entry names its unit (SMPL_UNIT=$SERIAL)" grep -q "SMPL_UNIT=$SERIAL" /tmp/journal.txt
check "entries name the session (SMPL_SESSION)" grep -q 'SMPL_SESSION=' /tmp/journal.txt
