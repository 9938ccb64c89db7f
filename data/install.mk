# make install: the daemon, the tool, the system integration files and the
# module's source for DKMS.  Honours DESTDIR and PREFIX; the system
# directories follow Debian 12 (systemd's pkg-config, /lib/udev).

VERSION := $(shell cat VERSION)
PREFIX ?= /usr
SYSCONFDIR ?= /etc
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
SYSTEMDUNITDIR ?= $(or $(shell pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null),/lib/systemd/system)
SYSUSERSDIR ?= $(or $(shell pkg-config --variable=sysusersdir systemd 2>/dev/null),/usr/lib/sysusers.d)
UDEVRULESDIR ?= /lib/udev/rules.d
COMPLETIONSDIR ?= $(DATADIR)/bash-completion/completions
DKMSDIR ?= /usr/src/smplaser-$(VERSION)

INSTALL ?= install
D := $(DESTDIR)

# The module's source, as DKMS builds it (top-level Kbuild descends into kmod/).
DKMS_SOURCES = Kbuild $(wildcard kmod/Kbuild kmod/*.c kmod/*.h) \
	include/uapi/smplaser.h include/smplaser/proto.h

.PHONY: install install-programs install-data install-dkms
install: install-programs install-data install-dkms

install-programs: all
	$(INSTALL) -Dm755 build/smplaserd $(D)$(PREFIX)/sbin/smplaserd
	$(INSTALL) -Dm755 build/smplaserctl $(D)$(PREFIX)/bin/smplaserctl

install-data:
	$(INSTALL) -Dm644 data/smplaserd.service $(D)$(SYSTEMDUNITDIR)/smplaserd.service
	sed -i 's|^ExecStart=/usr/sbin/|ExecStart=$(PREFIX)/sbin/|' $(D)$(SYSTEMDUNITDIR)/smplaserd.service
	$(INSTALL) -Dm644 data/sysusers.d/smplaser.conf $(D)$(SYSUSERSDIR)/smplaser.conf
	$(INSTALL) -Dm644 data/org.smplaser.Laser1.conf $(D)$(DATADIR)/dbus-1/system.d/org.smplaser.Laser1.conf
	$(INSTALL) -Dm644 data/org.smplaser.Laser1.service $(D)$(DATADIR)/dbus-1/system-services/org.smplaser.Laser1.service
	$(INSTALL) -Dm644 data/org.smplaser.Laser1.xml $(D)$(DATADIR)/dbus-1/interfaces/org.smplaser.Laser1.xml
	$(INSTALL) -Dm644 data/org.smplaser.policy $(D)$(DATADIR)/polkit-1/actions/org.smplaser.policy
	$(INSTALL) -Dm644 data/50-smplaser.rules $(D)$(DATADIR)/polkit-1/rules.d/50-smplaser.rules
	$(INSTALL) -Dm644 udev/70-smplaser.rules $(D)$(UDEVRULESDIR)/70-smplaser.rules
	$(INSTALL) -Dm644 data/smplaserd.conf $(D)$(SYSCONFDIR)/smplaser/smplaserd.conf
	set -e; for page in $(wildcard ctl/man/*.[158] docs/man/*.[158]); do \
		sec=$${page##*.}; \
		$(INSTALL) -Dm644 $$page $(D)$(MANDIR)/man$$sec/$${page##*/}; \
	done
	set -e; for c in $(wildcard ctl/*bash-completion); do \
		$(INSTALL) -Dm644 $$c $(D)$(COMPLETIONSDIR)/smplaserctl; \
	done

install-dkms:
	$(INSTALL) -Dm644 data/modules-load.d/smplaser.conf $(D)$(PREFIX)/lib/modules-load.d/smplaser.conf
	set -e; for f in $(DKMS_SOURCES); do \
		$(INSTALL) -Dm644 $$f $(D)$(DKMSDIR)/$$f; \
	done
	sed 's/#MODULE_VERSION#/$(VERSION)/' data/dkms.conf > $(D)$(DKMSDIR)/dkms.conf.tmp
	$(INSTALL) -m644 $(D)$(DKMSDIR)/dkms.conf.tmp $(D)$(DKMSDIR)/dkms.conf
	rm -f $(D)$(DKMSDIR)/dkms.conf.tmp
