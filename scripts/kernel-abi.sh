#!/bin/sh
# Print the ABI of one of the kernels Debian 12 ships, as apt resolves it
# now (Debian bumps them; never hard-code one):
#   scripts/kernel-abi.sh           linux-image-amd64 (6.1): e.g. 6.1.0-57
#   scripts/kernel-abi.sh 6.12      linux-image-6.12-amd64: e.g. 6.12.118+deb12
#   scripts/kernel-abi.sh 6.12-rt   linux-image-6.12-rt-amd64 (same ABI string;
#                                   its flavour is rt-amd64)
case ${1:-} in
"") meta=linux-image-amd64 flavour=amd64 ;;
6.12) meta=linux-image-6.12-amd64 flavour=amd64 ;;
6.12-rt) meta=linux-image-6.12-rt-amd64 flavour=rt-amd64 ;;
*) echo "usage: $0 [6.12|6.12-rt]" >&2; exit 2 ;;
esac
apt-cache depends "$meta" 2>/dev/null |
	sed -n "s/.*Depends: linux-image-\(.*\)-$flavour\$/\1/p" | head -n1
