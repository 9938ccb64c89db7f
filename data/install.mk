# make install: the daemon, the tool, the system integration files and the
# module's source for DKMS.  Honours DESTDIR and PREFIX; the system
# directories come from pkg-config (systemd.pc, udev.pc), so they follow the
# distribution (/lib on Debian 12, /usr/lib where /lib is merged).

VERSION := $(shell cat VERSION)
PREFIX ?= /usr
SYSCONFDIR ?= /etc
DATADIR ?= $(PREFIX)/share
MANDIR ?= $(DATADIR)/man
pcvar = $(shell pkg-config --variable=$(1) $(2) 2>/dev/null)
SYSTEMDUNITDIR ?= $(or $(call pcvar,systemdsystemunitdir,systemd),$(PREFIX)/lib/systemd/system)
SYSUSERSDIR ?= $(or $(call pcvar,sysusersdir,systemd),$(PREFIX)/lib/sysusers.d)
CATALOGDIR ?= $(or $(call pcvar,catalogdir,systemd),$(PREFIX)/lib/systemd/catalog)
MODULESLOADDIR ?= $(or $(call pcvar,modulesloaddir,systemd),$(PREFIX)/lib/modules-load.d)
UDEVRULESDIR ?= $(or $(call pcvar,udevdir,udev),$(PREFIX)/lib/udev)/rules.d
# The Debian package installs the sysusers entry with dh_installsysusers.
INSTALL_SYSUSERS ?= 1
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
	$(INSTALL) -Dm644 data/smplaser.target $(D)$(SYSTEMDUNITDIR)/smplaser.target
	$(INSTALL) -Dm644 data/smplaser.catalog $(D)$(CATALOGDIR)/smplaser.catalog
	$(INSTALL) -Dm644 data/smplaser.metainfo.xml $(D)$(DATADIR)/metainfo/org.smplaser.smplaser.metainfo.xml
	if [ "$(INSTALL_SYSUSERS)" = 1 ]; then \
		$(INSTALL) -Dm644 data/sysusers.d/smplaser.conf $(D)$(SYSUSERSDIR)/smplaser.conf; fi
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
	$(INSTALL) -Dm644 data/modules-load.d/smplaser.conf $(D)$(MODULESLOADDIR)/smplaser.conf
	set -e; for f in $(DKMS_SOURCES); do \
		$(INSTALL) -Dm644 $$f $(D)$(DKMSDIR)/$$f; \
	done
	sed 's/#MODULE_VERSION#/$(VERSION)/' data/dkms.conf > $(D)$(DKMSDIR)/dkms.conf.tmp
	$(INSTALL) -m644 $(D)$(DKMSDIR)/dkms.conf.tmp $(D)$(DKMSDIR)/dkms.conf
	rm -f $(D)$(DKMSDIR)/dkms.conf.tmp
