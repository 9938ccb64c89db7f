#!/bin/sh
# Print the Debian kernel ABI (e.g. 6.1.0-56) that linux-image-amd64 points at.
apt-cache depends linux-image-amd64 2>/dev/null |
	sed -n 's/.*Depends: linux-image-\(.*\)-amd64$/\1/p' | head -n1
