# Shell helpers for the host side of the QEMU tests (tests/vm, tests/system).
# Source it from the top of the tree.

now_ms() { date +%s%3N; }
seconds_since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN { printf "%.1f", (b - a) / 1000 }'; }

# The kernel version of Debian's current linux-image-amd64, e.g. 6.1.0-56-amd64.
debian_kernel_version() {
	abi=$(scripts/kernel-abi.sh)
	[ -n "$abi" ] || return 1
	echo "$abi-amd64"
}

# fetch_debian_kernel DIR KVER: download linux-image-KVER into DIR (cached),
# unpack it with its modules.dep, print the unpacked root.
fetch_debian_kernel() {
	_dir=$1 _kver=$2
	_root="$_dir/kernel-$_kver"
	mkdir -p "$_dir"
	_deb=$(ls "$_dir"/linux-image-"$_kver"_*.deb 2>/dev/null | head -n1 || true)
	if [ -z "$_deb" ]; then
		(cd "$_dir" && apt-get download -q "linux-image-$_kver" >/dev/null 2>download.err) || {
			cat "$_dir/download.err" >&2
			return 1
		}
		_deb=$(ls "$_dir"/linux-image-"$_kver"_*.deb | head -n1)
	fi
	if [ ! -f "$_root/.unpacked" ]; then
		rm -rf "$_root"
		dpkg-deb -x "$_deb" "$_root"
		# The package ships no modules.dep: depmod runs at install.
		depmod -b "$_root" "$_kver"
		touch "$_root/.unpacked"
	fi
	echo "$_root"
}

# module_load_order MODDIR MODULE...: the modules' paths relative to MODDIR,
# dependencies first, each once; built-in modules are skipped.
module_load_order() {
	_moddir=$1
	shift
	_seen=""
	for _m in "$@"; do
		grep -qE "(^|/)$_m\.ko" "$_moddir/modules.builtin" && continue
		_line=$(grep -E "(^|/)$_m\.ko(\.[a-z]+)?:" "$_moddir/modules.dep") || {
			echo "module_load_order: no module $_m in $_moddir" >&2
			return 1
		}
		for _d in $(echo "${_line#*:}" | tr ' ' '\n' | sed '/^$/d' | tac) "${_line%%:*}"; do
			case " $_seen " in *" $_d "*) continue ;; esac
			_seen="$_seen $_d"
			echo "$_d"
		done
	done
}
