"""Build the ``unix-docs`` attribution evaluation set (genre: technical documentation).

Two steps, both deterministic:

``extract``
    Unpack the Debian packages (``.deb`` files fetched with ``apt-get download``) into a
    temporary tree, render the selected documents to plain text (man pages with
    ``groff -t -mandoc -Tutf8``, Perl POD, Node.js Markdown, GNU Info) and write one JSON
    line per document to ``TEXT/docs.jsonl`` (sections of paragraphs, nothing filtered
    yet) plus ``TEXT/packages.json`` (name, version, license of each package).

``build``
    Read ``TEXT/docs.jsonl`` and the hand-written paraphrases / meaning-altered texts
    (``handwritten.jsonl``) and write ``catalog.jsonl`` and ``cases.jsonl``.

``all`` runs both.  ``passages`` prints candidate passages of catalog works (a helper for
writing ``handwritten.jsonl``).  See ``gpu_workers/data/evalsets/unix-docs/README.md``.

Example::

    mkdir -p /tmp/ud/debs && cd /tmp/ud/debs && apt-get download manpages=6.03-2 ...
    python gpu_workers/evalsets/build_unix_docs.py all --debs /tmp/ud/debs --text /tmp/ud/text
"""

from __future__ import annotations

import argparse
import collections
import gzip
import hashlib
import json
import random
import re
import subprocess
import sys
import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DATA_DIR = HERE.parent / "data" / "evalsets" / "unix-docs"
SEED = 20240611

# --------------------------------------------------------------------------------------
# Packages (name -> version expected, license as given in the package's copyright file)
# --------------------------------------------------------------------------------------
PACKAGES: dict[str, dict[str, str]] = {
    "manpages": {"version": "6.03-2", "license": "per page: Linux-man-pages-copyleft (the 'verbatim' license), GPL-2+, GPL-1+, BSD-2/3/4-clause, Expat (debian/copyright)"},
    "manpages-dev": {"version": "6.03-2", "license": "per page: Linux-man-pages-copyleft (the 'verbatim' license), GPL-2+, GPL-1+, BSD-2/3/4-clause, Expat (debian/copyright)"},
    "freebsd-manpages": {"version": "12.2-1", "license": "BSD-2-Clause-FreeBSD, BSD-3-clause, BSD-4-clause (FreeBSD project)"},
    "perl-doc": {"version": "5.36.0-7+deb12u4", "license": "Artistic or GPL-1+ (Perl's own documentation)"},
    "nodejs-doc": {"version": "18.20.4+dfsg-1~deb12u3", "license": "Expat/MIT (Node.js API documentation)"},
    "tcl8.6-doc": {"version": "8.6.13+dfsg-2", "license": "Tcl/Tk license (BSD-style)"},
    "libbsd-dev": {"version": "0.11.7-2", "license": "BSD-2-clause / BSD-3-clause / ISC (libbsd man pages)"},
    "glibc-doc": {"version": "2.36-9+deb12u14", "license": "LGPL-2.1+ (LinuxThreads man pages)"},
    "coreutils": {"version": "9.1-1", "license": "GFDL-1.3+ with no Invariant Sections (coreutils.info)"},
    "util-linux": {"version": "2.38.1-5+deb12u3", "license": "GPL-2+ and others (util-linux man pages)"},
}

# --------------------------------------------------------------------------------------
# The catalog: Linux man-pages (manpages-dev: sections 2, 3; manpages: 4, 5, 7), by topic
# cluster.  Same-cluster works get different holders.
# --------------------------------------------------------------------------------------
CATALOG: dict[str, list[str]] = {
    "fileio": ["open.2", "read.2", "write.2", "close.2", "lseek.2", "pread.2", "readv.2", "dup.2", "fcntl.2",
               "ioctl.2", "fsync.2", "sync.2", "truncate.2", "sendfile.2", "flock.2", "aio.7"],
    "files": ["stat.2", "chmod.2", "chown.2", "link.2", "unlink.2", "rename.2", "mkdir.2", "symlink.2",
              "readlink.2", "access.2", "umask.2", "chroot.2", "getcwd.3", "symlink.7",
              "path_resolution.7", "inotify.7", "readdir.3", "mkstemp.3", "inode.7", "fanotify.7"],
    "process": ["fork.2", "vfork.2", "clone.2", "execve.2", "_exit.2", "wait.2", "getpid.2", "setsid.2",
                "setpgid.2", "getpriority.2", "nice.2", "getrlimit.2", "getrusage.2", "exit.3", "system.3",
                "posix_spawn.3", "popen.3", "setuid.2", "getgroups.2", "credentials.7", "capabilities.7",
                "sched_setaffinity.2", "sched.7"],
    "signals": ["kill.2", "sigaction.2", "signal.2", "sigprocmask.2", "sigaltstack.2", "alarm.2", "signal.7",
                "abort.3", "signalfd.2"],
    "memory": ["mmap.2", "mprotect.2", "madvise.2", "mlock.2", "malloc.3", "shmget.2", "futex.2"],
    "ipc": ["pipe.2", "pipe.7", "fifo.7", "mkfifo.3", "mq_overview.7", "sem_overview.7", "shm_overview.7",
            "eventfd.2", "sysvipc.7"],
    "net": ["socket.2", "bind.2", "listen.2", "accept.2", "connect.2", "send.2", "recv.2", "getsockopt.2", "socket.7", "unix.7", "tcp.7", "udp.7", "ip.7", "getaddrinfo.3",
            "select.2", "poll.2", "epoll.7", "hostname.7"],
    "time": ["gettimeofday.2", "clock_gettime.2", "nanosleep.2", "time.2", "ctime.3", "strftime.3",
             "tzset.3", "time.7", "timer_create.2", "getitimer.2"],
    "threads": ["pthread_create.3", "pthread_join.3", "pthread_cancel.3", "pthread_detach.3", "pthreads.7"],
    "libc": ["strtok.3", "strtol.3", "printf.3", "qsort.3", "getline.3", "fopen.3",
             "fclose.3", "random.3", "getrandom.2", "getpass.3", "errno.3", "getopt.3", "getenv.3", "environ.7",
             "syslog.3"],
    "system": ["random.4", "tty.4", "mem.4", "hosts.5", "resolv.conf.5", "services.5",
               "nsswitch.conf.5", "utmp.5", "pty.7", "namespaces.7", "cgroups.7",
               "unshare.2", "setns.2", "mount.2"],
}

# Catalog pages whose sections are read in this order for the work text.
CATALOG_SECTIONS = ("DESCRIPTION", "RETURN VALUE", "NOTES")
WORK_MIN_WORDS, WORK_TARGET_WORDS, WORK_MAX_WORDS = 120, 420, 700
N_SAME_TOPIC, N_SAME_TOPIC_LINUX, N_UNRELATED = 165, 40, 310

HOLDER_WORDS = [
    "alderbrook", "basalt", "cobblestone", "driftwood", "ember", "fernhill", "granary", "harbourline", "ironbark",
    "juniper", "kestrel", "lanternfish", "millrace", "northgate", "oakhaven", "pinecrest", "quarrystone",
    "riverbend", "saltmarsh", "thornfield", "underwood", "vellum", "westmoor", "yarrow", "zephyr", "amberlight",
    "bramblewood", "copperleaf", "dovetail", "eastwick", "foxglove", "greywater", "hollowell", "inkwell",
]


def man_key(page: str) -> tuple[str, str]:
    name, _, sec = page.rpartition(".")
    return name, sec


def work_id(page: str) -> str:
    name, sec = man_key(page)
    return f"w-{name.replace('_', '-').replace('.', '-').strip('-')}-{sec}"


def catalog_pkg(page: str) -> str:
    return "manpages-dev" if man_key(page)[1] in ("2", "3") else "manpages"


# --------------------------------------------------------------------------------------
# Same-topic sources: documents outside the catalog on the topic of the listed works.
# Keys: "<package>:<document id>" as written by ``extract``.
# --------------------------------------------------------------------------------------
def _w(*pages: str) -> list[str]:
    return [work_id(p) for p in pages]


# FreeBSD system call pages (other authors, same calls).
FREEBSD_SAME: dict[str, list[str]] = {
    "open": _w("open.2"), "read": _w("read.2"), "write": _w("write.2"), "close": _w("close.2"),
    "lseek": _w("lseek.2"), "dup": _w("dup.2"), "fcntl": _w("fcntl.2"), "ioctl": _w("ioctl.2"),
    "fsync": _w("fsync.2"), "sync": _w("sync.2"), "truncate": _w("truncate.2"), "sendfile": _w("sendfile.2"),
    "flock": _w("flock.2"), "stat": _w("stat.2"), "chmod": _w("chmod.2"), "chown": _w("chown.2"),
    "link": _w("link.2"), "unlink": _w("unlink.2"), "rename": _w("rename.2"), "mkdir": _w("mkdir.2"),
    "rmdir": _w("rmdir.2"), "symlink": _w("symlink.2", "symlink.7"), "readlink": _w("readlink.2"),
    "access": _w("access.2"), "umask": _w("umask.2"), "chdir": _w("chdir.2"), "chroot": _w("chroot.2"),
    "fork": _w("fork.2"), "vfork": _w("vfork.2"), "execve": _w("execve.2"), "_exit": _w("_exit.2"),
    "wait": _w("wait.2"), "getpid": _w("getpid.2"), "setsid": _w("setsid.2"), "setpgid": _w("setpgid.2"),
    "getpriority": _w("getpriority.2", "nice.2"), "getrlimit": _w("getrlimit.2"), "getrusage": _w("getrusage.2"),
    "kill": _w("kill.2"), "sigaction": _w("sigaction.2", "signal.2"), "sigprocmask": _w("sigprocmask.2"),
    "sigaltstack": _w("sigaltstack.2"), "mmap": _w("mmap.2"), "mprotect": _w("mprotect.2"),
    "madvise": _w("madvise.2"), "mlock": _w("mlock.2"), "shmget": _w("shmget.2"), "pipe": _w("pipe.2", "pipe.7"),
    "socket": _w("socket.2", "socket.7"), "bind": _w("bind.2"), "listen": _w("listen.2"), "accept": _w("accept.2"),
    "connect": _w("connect.2"), "send": _w("send.2"), "recv": _w("recv.2"), "shutdown": _w("shutdown.2"),
    "socketpair": _w("socketpair.2"), "getsockopt": _w("getsockopt.2"), "select": _w("select.2"),
    "poll": _w("poll.2"), "gettimeofday": _w("gettimeofday.2"), "clock_gettime": _w("clock_gettime.2"),
    "nanosleep": _w("nanosleep.2"), "getrandom": _w("getrandom.2"), "mount": _w("mount.2"),
    "setuid": _w("setuid.2"), "getgroups": _w("getgroups.2"), "mkfifo": _w("mkfifo.3", "fifo.7"),
    "getitimer": _w("getitimer.2", "alarm.2"), "semget": _w("sem_overview.7", "sysvipc.7"), "munmap": _w("mmap.2"),
    "sigsuspend": _w("sigprocmask.2", "signal.7"), "sched_yield": _w("sched.7"),
}

# Other documents, explicitly: key -> avoided works.
OTHER_SAME: dict[str, list[str]] = {
    # perlfunc entries (Perl 5 Porters)
    "perl-doc:perlfunc/open": _w("open.2", "fopen.3"), "perl-doc:perlfunc/close": _w("close.2", "fclose.3"),
    "perl-doc:perlfunc/fork": _w("fork.2"), "perl-doc:perlfunc/pipe": _w("pipe.2", "pipe.7"),
    "perl-doc:perlfunc/kill": _w("kill.2", "signal.7"), "perl-doc:perlfunc/chmod": _w("chmod.2"),
    "perl-doc:perlfunc/chown": _w("chown.2"), "perl-doc:perlfunc/chdir": _w("chdir.2"),
    "perl-doc:perlfunc/chroot": _w("chroot.2"), "perl-doc:perlfunc/mkdir": _w("mkdir.2"),
    "perl-doc:perlfunc/rmdir": _w("rmdir.2"), "perl-doc:perlfunc/link": _w("link.2"),
    "perl-doc:perlfunc/unlink": _w("unlink.2"), "perl-doc:perlfunc/rename": _w("rename.2"),
    "perl-doc:perlfunc/symlink": _w("symlink.2", "symlink.7"), "perl-doc:perlfunc/readlink": _w("readlink.2"),
    "perl-doc:perlfunc/socket": _w("socket.2"), "perl-doc:perlfunc/socketpair": _w("socketpair.2"),
    "perl-doc:perlfunc/bind": _w("bind.2"), "perl-doc:perlfunc/listen": _w("listen.2"),
    "perl-doc:perlfunc/accept": _w("accept.2"), "perl-doc:perlfunc/connect": _w("connect.2"),
    "perl-doc:perlfunc/send": _w("send.2"), "perl-doc:perlfunc/recv": _w("recv.2"),
    "perl-doc:perlfunc/shutdown": _w("shutdown.2"), "perl-doc:perlfunc/select RBITS": _w("select.2"),
    "perl-doc:perlfunc/ioctl": _w("ioctl.2"), "perl-doc:perlfunc/fcntl": _w("fcntl.2"),
    "perl-doc:perlfunc/flock": _w("flock.2"), "perl-doc:perlfunc/sysseek": _w("lseek.2"),
    "perl-doc:perlfunc/stat": _w("stat.2"), "perl-doc:perlfunc/exec": _w("execve.2"),
    "perl-doc:perlfunc/wait": _w("wait.2"), "perl-doc:perlfunc/waitpid": _w("wait.2"),
    "perl-doc:perlfunc/umask": _w("umask.2"), "perl-doc:perlfunc/sleep": _w("sleep.3", "nanosleep.2"),
    "perl-doc:perlfunc/alarm": _w("alarm.2"), "perl-doc:perlfunc/time": _w("time.2"),
    "perl-doc:perlfunc/localtime": _w("ctime.3"), "perl-doc:perlfunc/getppid": _w("getpid.2"),
    "perl-doc:perlfunc/getpriority": _w("getpriority.2"), "perl-doc:perlfunc/setpgrp": _w("setpgid.2"),
    "perl-doc:perlfunc/truncate": _w("truncate.2"), "perl-doc:perlfunc/sysread": _w("read.2"),
    "perl-doc:perlfunc/syswrite": _w("write.2"), "perl-doc:perlfunc/exit": _w("exit.3"),
    "perl-doc:perlfunc/getsockopt": _w("getsockopt.2"), "perl-doc:perlfunc/system": _w("system.3"),
    "perl-doc:perlfunc/shmget": _w("shmget.2"), "perl-doc:perlfunc/sprintf": _w("printf.3"),
    "perl-doc:perlfunc/rand": _w("random.3"), "perl-doc:perlfunc/srand": _w("random.3"),
    "perl-doc:perlfunc/getgrnam": _w("group.5"),
    "perl-doc:perlfunc/readdir": _w("readdir.3"), "perl-doc:perlfunc/lstat": _w("stat.2", "symlink.7"),
    "perl-doc:pod/perlipc#Signals": _w("signal.7", "sigaction.2", "signal.2"),
    "perl-doc:pod/perlipc#Named Pipes": _w("fifo.7", "mkfifo.3"),
    "perl-doc:pod/perlipc#Using open() for IPC": _w("popen.3", "pipe.2"),
    "perl-doc:pod/perlipc#Sockets: Client/Server Communication": _w("socket.7", "socket.2", "tcp.7"),
    "perl-doc:pod/perlipc#SysV IPC": _w("shmget.2", "sem_overview.7"),
    # Node.js API documentation
    "nodejs-doc:fs#fs.open(path[, flags[, mode]], callback)": _w("open.2"),
    "nodejs-doc:fs#fs.read(fd, buffer, offset, length, position, callback)": _w("read.2", "pread.2"),
    "nodejs-doc:fs#fs.write(fd, buffer, offset[, length[, position]], callback)": _w("write.2"),
    "nodejs-doc:fs#fs.close(fd[, callback])": _w("close.2"),
    "nodejs-doc:fs#fs.chmod(path, mode, callback)": _w("chmod.2"),
    "nodejs-doc:fs#fs.chown(path, uid, gid, callback)": _w("chown.2"),
    "nodejs-doc:fs#fs.link(existingPath, newPath, callback)": _w("link.2"),
    "nodejs-doc:fs#fs.symlink(target, path[, type], callback)": _w("symlink.2", "symlink.7"),
    "nodejs-doc:fs#fs.readlink(path[, options], callback)": _w("readlink.2"),
    "nodejs-doc:fs#fs.unlink(path, callback)": _w("unlink.2"),
    "nodejs-doc:fs#fs.rename(oldPath, newPath, callback)": _w("rename.2"),
    "nodejs-doc:fs#fs.mkdir(path[, options], callback)": _w("mkdir.2"),
    "nodejs-doc:fs#fs.rmdir(path[, options], callback)": _w("rmdir.2"),
    "nodejs-doc:fs#fs.stat(path[, options], callback)": _w("stat.2"),
    "nodejs-doc:fs#fs.fsync(fd, callback)": _w("fsync.2"),
    "nodejs-doc:fs#fs.truncate(path[, len], callback)": _w("truncate.2"),
    "nodejs-doc:fs#fs.access(path[, mode], callback)": _w("access.2"),
    "nodejs-doc:fs#fs.mkdtemp(prefix[, options], callback)": _w("mkstemp.3"),
    "nodejs-doc:fs#fs.watch(filename[, options][, listener])": _w("inotify.7"),
    "nodejs-doc:fs#fs.opendir(path[, options], callback)": _w("readdir.3"),
    "nodejs-doc:fs#File modes": _w("chmod.2"),
    "nodejs-doc:fs#File system flags": _w("open.2"),
    "nodejs-doc:process#process.kill(pid[, signal])": _w("kill.2"),
    "nodejs-doc:process#Signal events": _w("signal.7", "sigaction.2"),
    "nodejs-doc:process#process.umask(mask)": _w("umask.2"),
    "nodejs-doc:process#process.setuid(id)": _w("setuid.2"),
    "nodejs-doc:process#process.getgroups()": _w("getgroups.2"),
    "nodejs-doc:process#process.chdir(directory)": _w("chdir.2"),
    "nodejs-doc:process#process.cwd()": _w("getcwd.3"),
    "nodejs-doc:process#process.exit([code])": _w("exit.3"),
    "nodejs-doc:process#process.abort()": _w("abort.3"),
    "nodejs-doc:process#process.env": _w("environ.7", "getenv.3"),
    "nodejs-doc:process#process.hrtime([time])": _w("clock_gettime.2"),
    "nodejs-doc:os#os.setPriority([pid, ]priority)": _w("getpriority.2"),
    "nodejs-doc:os#os.getPriority([pid])": _w("getpriority.2"),
    "nodejs-doc:child_process#child_process.exec(command[, options][, callback])": _w("system.3", "popen.3"),
    "nodejs-doc:child_process#child_process.spawn(command[, args][, options])": _w("posix_spawn.3", "execve.2"),
    "nodejs-doc:dgram#UDP/datagram sockets": _w("udp.7"),
    "nodejs-doc:net#Identifying paths for IPC connections": _w("unix.7"),
    "nodejs-doc:dns#dns.lookup(hostname[, options], callback)": _w("getaddrinfo.3"),
    "nodejs-doc:dns#Implementation considerations": _w("getaddrinfo.3", "resolv.conf.5"),
    "nodejs-doc:tty#TTY": _w("tty.4", "pty.7"),
    # GNU coreutils manual
    "coreutils:info#chmod invocation": _w("chmod.2"), "coreutils:info#Mode Structure": _w("chmod.2", "stat.2"),
    "coreutils:info#Umask and Protection": _w("umask.2"),
    "coreutils:info#Directory Setuid and Setgid": _w("chmod.2", "mkdir.2"),
    "coreutils:info#chown invocation": _w("chown.2"),
    "coreutils:info#ln invocation": _w("link.2", "symlink.2", "symlink.7"),
    "coreutils:info#link invocation": _w("link.2"),
    "coreutils:info#mkfifo invocation": _w("mkfifo.3", "fifo.7"),
    "coreutils:info#mkdir invocation": _w("mkdir.2"), "coreutils:info#rmdir invocation": _w("rmdir.2"),
    "coreutils:info#unlink invocation": _w("unlink.2"),
    "coreutils:info#sync invocation": _w("sync.2", "fsync.2"),
    "coreutils:info#truncate invocation": _w("truncate.2"),
    "coreutils:info#nice invocation": _w("nice.2", "getpriority.2"),
    "coreutils:info#kill invocation": _w("kill.2"), "coreutils:info#chroot invocation": _w("chroot.2"),
    "coreutils:info#stat invocation": _w("stat.2"), "coreutils:info#env invocation": _w("environ.7", "getenv.3"),
    "coreutils:info#sleep invocation": _w("sleep.3", "nanosleep.2"), "coreutils:info#pwd invocation": _w("getcwd.3"),
    "coreutils:info#nohup invocation": _w("signal.7"), "coreutils:info#Signal specifications": _w("signal.7"),
    "coreutils:info#groups invocation": _w("getgroups.2"), "coreutils:info#id invocation": _w("credentials.7"),
    "coreutils:info#who invocation": _w("utmp.5"), "coreutils:info#users invocation": _w("utmp.5"),
    "coreutils:info#readlink invocation": _w("readlink.2"), "coreutils:info#mktemp invocation": _w("mkstemp.3"),
    "coreutils:info#Specifying time zone rules": _w("tzset.3"),
    "coreutils:info#Seconds since the Epoch": _w("time.2"),
    "coreutils:info#Time conversion specifiers": _w("strftime.3"),
    # util-linux
    "util-linux:man1/flock.1": _w("flock.2"), "util-linux:man1/setsid.1": _w("setsid.2"),
    "util-linux:man1/unshare.1": _w("unshare.2", "namespaces.7"), "util-linux:man1/nsenter.1": _w("setns.2", "namespaces.7"),
    "util-linux:man1/taskset.1": _w("sched_setaffinity.2"), "util-linux:man1/chrt.1": _w("sched.7"),
    "util-linux:man1/prlimit.1": _w("getrlimit.2"), "util-linux:man1/ipcs.1": _w("shmget.2"),
    "util-linux:man8/lsns.8": _w("namespaces.7"), "util-linux:man1/last.1": _w("utmp.5"),
    "util-linux:man1/utmpdump.1": _w("utmp.5"), "util-linux:man1/setpriv.1": _w("capabilities.7", "credentials.7"),
    "util-linux:man1/namei.1": _w("path_resolution.7", "symlink.7"), "util-linux:man8/lslocks.8": _w("flock.2", "fcntl.2"),
    # libbsd (BSD authors)
    "libbsd-dev:man3/strlcpy.3bsd": _w("strcpy.3", "strcat.3"), "libbsd-dev:man3/reallocarray.3bsd": _w("malloc.3"),
    "libbsd-dev:man3/closefrom.3bsd": _w("close.2"), "libbsd-dev:man3/arc4random.3bsd": _w("random.3", "getrandom.2"),
    "libbsd-dev:man3/readpassphrase.3bsd": _w("getpass.3"), "libbsd-dev:man3/fgetln.3bsd": _w("getline.3"),
    "libbsd-dev:man3/getpeereid.3bsd": _w("unix.7", "getsockopt.2"), "libbsd-dev:man3/strtonum.3bsd": _w("strtol.3"),
    "libbsd-dev:man3/mergesort.3bsd": _w("qsort.3"),
    # LinuxThreads man pages (glibc-doc)
    "glibc-doc:man3/pthread_atfork.3": _w("fork.2", "pthreads.7"),
    # Tcl
    "tcl8.6-doc:man3/pid.3tcl": _w("getpid.2"), "tcl8.6-doc:man3/exec.3tcl": _w("system.3", "popen.3"),
    "tcl8.6-doc:man3/open.3tcl": _w("open.2", "fopen.3"), "tcl8.6-doc:man3/close.3tcl": _w("close.2", "fclose.3"),
    "tcl8.6-doc:man3/socket.3tcl": _w("socket.2", "tcp.7"), "tcl8.6-doc:man3/seek.3tcl": _w("lseek.2"),
    "tcl8.6-doc:man3/cd.3tcl": _w("chdir.2"), "tcl8.6-doc:man3/pwd.3tcl": _w("getcwd.3"),
    "tcl8.6-doc:man3/after.3tcl": _w("sleep.3"), "tcl8.6-doc:man3/exit.3tcl": _w("exit.3"),
    "tcl8.6-doc:man3/env.3tcl": _w("environ.7", "getenv.3"),
}

# Held-out Linux man-pages on closely related calls (same project, not in the catalog).
LINUX_HELDOUT_SAME: dict[str, list[str]] = {
    "statx.2": _w("stat.2"), "close_range.2": _w("close.2"), "execveat.2": _w("execve.2"), "exec.3": _w("execve.2"),
    "wait4.2": _w("wait.2", "getrusage.2"), "killpg.3": _w("kill.2"), "sigqueue.3": _w("kill.2", "sigaction.2"),
    "sigwaitinfo.2": _w("sigprocmask.2", "signal.7"), "sigpending.2": _w("sigprocmask.2"), "mremap.2": _w("mmap.2"),
    "msync.2": _w("mmap.2"), "shmop.2": _w("shmget.2"), "recvmmsg.2": _w("recv.2"), "sendmmsg.2": _w("send.2"),
    "getsockname.2": _w("bind.2"), "epoll_ctl.2": _w("epoll.7"), "epoll_wait.2": _w("epoll.7"),
    "clock_nanosleep.2": _w("nanosleep.2"), "usleep.3": _w("sleep.3", "nanosleep.2"), "strptime.3": _w("strftime.3"),
    "pthread_tryjoin_np.3": _w("pthread_join.3"), "pthread_setcancelstate.3": _w("pthread_cancel.3"),
    "pthread_sigmask.3": _w("sigprocmask.2"), "stpcpy.3": _w("strcpy.3"), "strsep.3": _w("strtok.3"),
    "strtoul.3": _w("strtol.3"), "atoi.3": _w("strtol.3"), "rand.3": _w("random.3"),
    "getentropy.3": _w("getrandom.2"), "strerror.3": _w("errno.3"), "setenv.3": _w("getenv.3", "environ.7"),
    "mkdtemp.3": _w("mkstemp.3"), "scandir.3": _w("readdir.3"), "getgrnam.3": _w("group.5"),
    "gethostbyname.3": _w("hosts.5", "getaddrinfo.3"), "getnameinfo.3": _w("getaddrinfo.3"),
    "getservent.3": _w("services.5"), "resolver.3": _w("resolv.conf.5"), "getutent.3": _w("utmp.5"),
    "getusershell.3": _w("shells.5"), "openpty.3": _w("pty.7"), "posix_openpt.3": _w("pty.7"),
    "raw.7": _w("ip.7"), "ipv6.7": _w("ip.7"), "inotify_add_watch.2": _w("inotify.7"), "capget.2": _w("capabilities.7"),
    "setresuid.2": _w("setuid.2", "credentials.7"), "seteuid.2": _w("setuid.2"),
    "user_namespaces.7": _w("namespaces.7", "unshare.2"), "pid_namespaces.7": _w("namespaces.7"),
    "cgroup_namespaces.7": _w("cgroups.7"), "sched_setscheduler.2": _w("sched.7"), "mq_open.3": _w("mq_overview.7"),
    "sem_open.3": _w("sem_overview.7"), "shm_open.3": _w("shm_overview.7"), "umount.2": _w("mount.2"),
    "atexit.3": _w("exit.3"), "on_exit.3": _w("exit.3"), "tkill.2": _w("kill.2"),
    "posix_madvise.3": _w("madvise.2"), "fexecve.3": _w("execve.2"), "getsid.2": _w("setsid.2"),
    "signal-safety.7": _w("signal.7", "sigaction.2"), "opendir.3": _w("readdir.3"), "fflush.3": _w("fclose.3"),
    "daemon.3": _w("setsid.2", "fork.2"), "futex.7": _w("futex.2"), "full.4": _w("null.4"),
}

# --------------------------------------------------------------------------------------
# Unrelated documents (same genre, other topics).  Filler for embedded cases comes from
# one half of them, the unrelated cases from the other half.
# --------------------------------------------------------------------------------------
UNRELATED_LINUX = {
    "manpages-dev": ["cos.3", "exp.3", "lgamma.3", "fenv.3", "frexp.3", "isalpha.3", "toupper.3", "mbstowcs.3",
                     "setlocale.3", "iconv.3", "fnmatch.3", "glob.3", "wordexp.3", "hsearch.3", "tsearch.3",
                     "xdr.3", "dlopen.3", "backtrace.3", "catopen.3", "nl_langinfo.3", "strfmon.3", "ecvt.3",
                     "fmod.3", "sqrt.3", "nan.3", "wcwidth.3", "insque.3", "end.3", "argz_add.3"],
    "manpages": ["ascii.7", "charsets.7", "uri.7", "utf-8.7", "unicode.7", "man-pages.7", "regex.7", "glob.7",
                 "hier.7", "boot.7", "bootparam.7", "locale.7", "mailaddr.7", "operator.7", "suffixes.7", "units.7",
                 "standards.7", "feature_test_macros.7", "complex.7", "man.7", "numa.7",
                 "keyrings.7", "kernel_lockdown.7", "koi8-r.7", "elf.5", "filesystems.5", "termcap.5", "locale.5",
                 "charmap.5", "repertoiremap.5", "issue.5", "motd.5", "securetty.5", "dir_colors.5", "nologin.5",
                 "slabinfo.5", "hd.4", "lp.4", "loop.4", "st.4", "cciss.4", "dsp56k.4", "hpsa.4", "mouse.4",
                 "initrd.4", "lirc.4", "msr.4", "cpuid.4", "smartpqi.4", "sd.4"],
}
UNRELATED_FREEBSD9 = ["bus_dma", "bus_space", "device", "DEVICE_PROBE", "DEVICE_ATTACH", "driver", "mbuf", "sysctl",
                      "taskqueue", "crypto", "firmware", "kobj", "make_dev", "pci", "usbdi", "style", "ifnet",
                      "counter", "sbuf", "rman", "intro", "altq", "disk", "g_attach", "g_bio", "hhook", "khelp",
                      "ieee80211", "fail", "mac", "module", "netisr", "pfil", "buf", "devclass",
                      "config_intrhook", "EVENTHANDLER", "BUS_READ_IVAR", "bitset",
                      "hashinit", "kproc", "rmlock", "sglist", "watchdog", "zone", "nv", "osd", "refcount",
                      "style.lua", "vnode", "vm_map", "cnv", "ofw_bus_is_compatible"]
UNRELATED_FREEBSD4 = ["em", "re", "ahci", "usb", "umass", "uart", "snd_hda", "iwm", "ath", "ciss", "mfi", "mps",
                      "nvme", "pf", "carp", "lagg", "vlan", "bridge", "gif", "tap", "acpi", "cpufreq", "coretemp",
                      "ipmi", "geom", "gpio", "iic", "smbus", "ukbd", "ums", "cd", "da", "md"]
UNRELATED_PERL = ["perlre", "perlretut", "perlsyn", "perlop", "perldata", "perlref", "perlobj", "perlmod", "perlpod",
                  "perlunicode", "perlstyle", "perlsub", "perlform", "perldebug", "perlootut", "perlreftut",
                  "perldsc", "perllol", "perlpacktut", "perlperf", "perlnumber", "perlintro", "perlfaq4",
                  "perlmodstyle", "perlnewmod", "perlunitut", "perlrequick", "perltie", "perlclib", "perlembed"]
UNRELATED_NODE = ["buffer", "crypto", "url", "querystring", "zlib", "readline", "repl", "assert",
                  "util", "events", "stream", "http", "intl", "punycode", "vm", "v8", "test", "webstreams",
                  "inspector", "console", "modules", "esm", "packages", "addons", "debugger", "tracing",
                  "diagnostics_channel", "perf_hooks", "webcrypto", "async_context", "corepack", "globals", "path"]
UNRELATED_TCL = ["string", "list", "lsort", "regexp", "expr", "format", "binary", "dict", "namespace", "proc", "info",
                 "package", "encoding", "lsearch", "lrange", "foreach", "switch", "try", "interp", "safe", "msgcat",
                 "oo_class", "coroutine", "zlib", "http", "tcltest", "re_syntax", "trace", "upvar", "uplevel",
                 "variable", "array", "scan", "subst", "apply", "lmap"]
UNRELATED_COREUTILS = ["sort invocation", "cut invocation", "tr invocation", "uniq invocation", "wc invocation",
                       "head invocation", "tail invocation", "od invocation", "base64 invocation", "numfmt invocation",
                       "seq invocation", "factor invocation", "expr invocation", "test invocation", "fmt invocation",
                       "pr invocation", "fold invocation", "join invocation", "paste invocation", "comm invocation",
                       "split invocation", "csplit invocation", "cksum invocation", "shuf invocation",
                       "ptx invocation", "tsort invocation", "tsort background", "df invocation", "dircolors invocation",
                       "basename invocation", "dirname invocation", "pathchk invocation", "uname invocation",
                       "tac invocation", "nl invocation", "expand invocation", "Common options", "Exit status",
                       "Backup options", "Block size", "Floating point", "Version sort overview",
                       "Version sort is not the same as numeric sort", "Putting the tools together",
                       "Toolbox introduction", "The sort command", "The uniq command", "Set operations",
                       "Character arrays", "Squeezing and deleting", "General date syntax", "Calendar date items",
                       "Relative items in date strings", "echo invocation", "yes invocation", "md5sum invocation"]
UNRELATED_UTIL_LINUX = ["man1/more.1", "man1/rev.1", "man1/whereis.1", "man1/lscpu.1",
                        "man1/lsmem.1", "man8/lsblk.8", "man8/blkid.8", "man8/wipefs.8", "man8/mkswap.8", "man8/fsck.8",
                        "man8/mkfs.8", "man8/fstrim.8", "man8/blkdiscard.8", "man8/blockdev.8", "man8/zramctl.8",
                        "man8/partx.8", "man8/isosize.8", "man8/swaplabel.8", "man8/wdctl.8", "man8/findfs.8",
                        "man8/chcpu.8", "man8/chmem.8", "man8/fsfreeze.8", "man8/blkzone.8", "man8/readprofile.8",
                        "man5/terminal-colors.d.5"]


def unrelated_keys() -> list[str]:
    keys = []
    for pkg, pages in UNRELATED_LINUX.items():
        keys += [f"{pkg}:man{man_key(p)[1]}/{p}" for p in pages]
    keys += [f"freebsd-manpages:man9/{n}.9freebsd" for n in UNRELATED_FREEBSD9]
    keys += [f"freebsd-manpages:man4/{n}.4freebsd" for n in UNRELATED_FREEBSD4]
    keys += [f"perl-doc:pod/{n}" for n in UNRELATED_PERL]
    keys += [f"nodejs-doc:{n}" for n in UNRELATED_NODE]
    keys += [f"tcl8.6-doc:man3/{n}.3tcl" for n in UNRELATED_TCL]
    keys += [f"coreutils:info#{n}" for n in UNRELATED_COREUTILS]
    keys += [f"util-linux:{p}" for p in UNRELATED_UTIL_LINUX]
    return keys


def same_topic_sources() -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, avoid in FREEBSD_SAME.items():
        out[f"freebsd-manpages:man2/{name}.2freebsd"] = avoid
    out["freebsd-manpages:man4/mem.4freebsd"] = _w("mem.4")
    out["freebsd-manpages:man4/random.4freebsd"] = _w("random.4", "getrandom.2")
    out.update(OTHER_SAME)
    for page, avoid in LINUX_HELDOUT_SAME.items():
        out[f"{catalog_pkg(page)}:man{man_key(page)[1]}/{page}"] = avoid
    return out


# ======================================================================================
# Extraction
# ======================================================================================
_UNI = {
    "\u2010": "-", "\u2011": "-", "\u2012": "-", "\u2013": "-", "\u2212": "-", "\u2014": "--", "\u2018": "'",
    "\u2019": "'", "\u201c": '"', "\u201d": '"', "\u00a0": " ", "\u00ad": "", "\u2026": "...", "\u2022": "*",
    "\u00b4": "'", "\u02c6": "^", "\u02dc": "~", "\u2032": "'", "\u200b": "", "\u2002": " ", "\u2003": " ",
    "\u2009": " ", "\u2192": "->", "\u00d7": "x", "\u00b7": ".", "\u25cf": "*", "\u00b1": "+/-",
}
_UNI_RE = re.compile("|".join(map(re.escape, _UNI)))


def asciify(s: str) -> str:
    return _UNI_RE.sub(lambda m: _UNI[m.group(0)], s)


def render_man(path: Path) -> str:
    data = path.read_bytes()
    if path.suffix == ".gz":
        data = gzip.decompress(data)
    proc = subprocess.run(
        ["groff", "-t", "-mandoc", "-Tutf8", "-rLL=9000n", "-rHY=0", "-P-c", "-P-b", "-P-o", "-P-u"],
        input=data, capture_output=True, check=False,
    )
    return proc.stdout.decode("utf-8", "replace")


_SECTION_RE = re.compile(r"^[A-Z][A-Z0-9 _,/()&-]*$")


def parse_man(text: str) -> list[dict[str, Any]]:
    """Rendered man page -> [{"name": SECTION, "paras": [[indent, text], ...]}]."""
    lines = [asciify(ln.rstrip()) for ln in text.splitlines()]
    nonblank = [i for i, ln in enumerate(lines) if ln.strip()]
    if not nonblank:
        return []
    first, last = nonblank[0], nonblank[-1]
    sections: list[dict[str, Any]] = []
    cur: dict[str, Any] | None = None
    for i, ln in enumerate(lines):
        if i in (first, last) or not ln.strip() or set(ln.strip()) <= {"_"}:
            continue
        if not ln.startswith(" ") and _SECTION_RE.match(ln.strip()):
            cur = {"name": ln.strip(), "paras": []}
            sections.append(cur)
            continue
        if cur is None:
            continue
        indent = len(ln) - len(ln.lstrip(" "))
        cur["paras"].append([indent, ln.strip()])
    return sections


# -- POD ---------------------------------------------------------------------------------
def pod_inline(s: str) -> str:
    s = re.sub(r"([A-Z])<<+\s+(.*?)\s+>>+", lambda m: f"{m.group(1)}<{m.group(2)}>" if m.group(1) != "C" else m.group(2), s, flags=re.S)

    def repl(m: re.Match[str]) -> str:
        code, body = m.group(1), m.group(2)
        if code == "E":
            return {"lt": "\x03", "gt": "\x04", "verbar": "\x01", "sol": "\x02", "quot": '"', "amp": "&"}.get(body, "")
        if code in "XZ":
            return ""
        if code == "L":
            if "|" in body:
                return body.split("|", 1)[0]
            body = body.strip()
            if "/" in body:
                a, b = body.split("/", 1)
                b = b.strip('"')
                return b if not a else f"{b} in {a}"
            return body.strip('"')
        return body

    prev = None
    while prev != s:
        prev = s
        s = re.sub(r"([A-Z])<([^<>]*)>", repl, s)
    return s.replace("\x01", "|").replace("\x02", "/").replace("\x03", "<").replace("\x04", ">")


def pod_paragraphs(text: str) -> list[str]:
    return [p for p in re.split(r"\n[ \t]*\n", text)]


def parse_pod_sections(text: str) -> list[dict[str, Any]]:
    """A POD document -> sections (=head1/=head2) of ordinary-text paragraphs (indent 0)."""
    sections: list[dict[str, Any]] = [{"name": "", "paras": []}]
    skip = False
    for para in pod_paragraphs(text):
        if not para.strip():
            continue
        if para.startswith("=begin"):
            skip = True
            continue
        if para.startswith("=end"):
            skip = False
            continue
        if skip:
            continue
        if para.startswith("=head"):
            title = pod_inline(para.split(None, 1)[1] if len(para.split(None, 1)) > 1 else "").strip()
            sections.append({"name": " ".join(title.split()), "paras": []})
            continue
        if para.startswith("="):
            if para.startswith("=item"):
                sections[-1]["paras"].append([4, " ".join(pod_inline(para[5:]).split())])
            continue
        if para[0] in " \t":
            sections[-1]["paras"].append([8, "[code]"])
            continue
        sections[-1]["paras"].append([0, asciify(" ".join(pod_inline(para).split()))])
    return [s for s in sections if s["paras"]]


def parse_perlfunc(text: str) -> dict[str, list[dict[str, Any]]]:
    """perlfunc.pod -> {entry name: sections}.  An entry is the run of =item paragraphs
    right before a ``=for Pod::Functions`` line, up to the next such run."""
    start = text.index("=head2 Alphabetical Listing of Perl Functions")
    paras = [p for p in pod_paragraphs(text[start:]) if p.strip()]
    heads = [i for i, p in enumerate(paras) if p.startswith("=for Pod::Functions")
             or p.startswith("=item select RBITS")]  # select's second form has no =for line
    starts = []
    for h in heads:
        i = h
        while i > 0 and paras[i - 1].startswith("=item"):
            i -= 1
        starts.append((i, h))
    entries: dict[str, list[dict[str, Any]]] = {}
    for n, (i, h) in enumerate(starts):
        end = starts[n + 1][0] if n + 1 < len(starts) else len(paras)
        name = " ".join(pod_inline(paras[i][5:]).split())
        body: list[list[Any]] = []
        for p in paras[h + 1:end]:
            if p.startswith("=item"):
                body.append([4, " ".join(pod_inline(p[5:]).split())])
            elif p.startswith("="):
                continue
            elif p[0] in " \t":
                body.append([8, "[code]"])
            else:
                body.append([0, asciify(" ".join(pod_inline(p).split()))])
        entries.setdefault(name, [{"name": "DESCRIPTION", "paras": body}])
    return entries


def perlfunc_lookup(entries: dict[str, Any], key: str) -> list[dict[str, Any]] | None:
    for item, secs in entries.items():
        name = item.split()[0] if item.split() else item
        if key == name or (" " in key and item.startswith(key)):
            if " " not in key and "RBITS" in item:
                continue
            return secs
    return None


# -- Markdown (Node.js) ------------------------------------------------------------------
def md_inline(s: str) -> str:
    s = re.sub(r"!\[[^\]]*\]\([^)]*\)", "", s)
    s = re.sub(r"\[([^\]]+)\]\[[^\]]*\]", r"\1", s)
    s = re.sub(r"\[([^\]]+)\]\([^)]*\)", r"\1", s)
    s = re.sub(r"\[([^\]]+)\]", r"\1", s)
    s = re.sub(r"<[^>]+>", "", s)
    s = s.replace("`", "").replace("**", "").replace("__", "")
    s = re.sub(r"(?<!\w)[*_]([^*_]+)[*_](?!\w)", r"\1", s)
    return " ".join(s.split())


def parse_markdown(text: str) -> list[dict[str, Any]]:
    text = re.sub(r"<!--.*?-->", "", text, flags=re.S)
    sections: list[dict[str, Any]] = [{"name": "", "paras": []}]
    in_code = False
    buf: list[str] = []
    kind = 0

    def flush() -> None:
        nonlocal buf
        if buf:
            sections[-1]["paras"].append([kind, asciify(md_inline(" ".join(buf)))])
        buf = []

    for ln in text.splitlines():
        if ln.lstrip().startswith("```"):
            flush()
            if not in_code:
                sections[-1]["paras"].append([8, "[code]"])
            in_code = not in_code
            continue
        if in_code:
            continue
        if re.match(r"^#{1,6} ", ln):
            flush()
            title = ln.lstrip("#").strip().replace("`", "")
            sections.append({"name": title, "paras": []})
            continue
        if not ln.strip():
            flush()
            continue
        if re.match(r"^\s*([*+-]|\d+\.)\s", ln):
            flush()
            kind = 4
            buf = [re.sub(r"^\s*([*+-]|\d+\.)\s", "", ln)]
            continue
        if ln.startswith(">"):
            ln = ln.lstrip("> ")
        if not buf:
            kind = 0
        buf.append(ln.strip())
    flush()
    return [s for s in sections if s["paras"]]


# -- GNU Info ----------------------------------------------------------------------------
def parse_info(text: str) -> dict[str, list[dict[str, Any]]]:
    nodes: dict[str, list[dict[str, Any]]] = {}
    for chunk in text.split("\x1f"):
        m = re.search(r"^File: [^,]+,\s+Node: ([^,\n]+)", chunk, re.M)
        if not m:
            continue
        name = m.group(1).strip()
        body = chunk[m.end():].split("\n", 1)[1] if "\n" in chunk[m.end():] else ""
        body = body.split("* Menu:")[0]
        paras: list[list[Any]] = []
        for block in re.split(r"\n[ \t]*\n", body):
            lines = block.split("\n")
            lines = [ln for ln in lines if ln.strip()]
            if not lines:
                continue
            if len(lines) >= 2 and set(lines[-1].strip()) <= set("=-*.") and len(lines[-1].strip()) > 2:
                continue  # a title with its underline
            indent = len(lines[0]) - len(lines[0].lstrip(" "))
            joined = " ".join(ln.strip() for ln in lines)
            joined = re.sub(r"\*[Nn]ote ([^:]+?)::", r"\1", joined)
            joined = re.sub(r"\*[Nn]ote ([^:]+?): [^.,]+[.,]", r"\1", joined)
            if indent == 0 and all(len(ln) - len(ln.lstrip(" ")) == 0 for ln in lines):
                paras.append([0, asciify(joined)])
            else:  # examples, table items and their bodies: not running prose
                paras.append([max(indent, 9), asciify(joined)])
        nodes[name] = [{"name": "DESCRIPTION", "paras": paras}]
    return nodes


# -- the extraction step -------------------------------------------------------------------
def deb_info(deb: Path) -> tuple[str, str]:
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Package", "Version"], capture_output=True, text=True,
                         check=True).stdout
    fields = dict(ln.split(": ", 1) for ln in out.strip().splitlines())
    return fields["Package"], fields["Version"]


def extract(debs: Path, text_dir: Path) -> None:
    text_dir.mkdir(parents=True, exist_ok=True)
    found: dict[str, tuple[Path, str]] = {}
    for deb in sorted(debs.glob("*.deb")):
        name, version = deb_info(deb)
        if name in PACKAGES:
            found[name] = (deb, version)
    missing = sorted(set(PACKAGES) - set(found))
    if missing:
        raise SystemExit(f"missing .deb files for: {', '.join(missing)} (apt-get download them into {debs})")
    for name, (_, version) in sorted(found.items()):
        if version != PACKAGES[name]["version"]:
            print(f"warning: {name} {version} differs from the version the set was built from "
                  f"({PACKAGES[name]['version']}); the output may differ", file=sys.stderr)
    wanted = collections.defaultdict(set)  # pkg -> doc keys
    keys = [f"{catalog_pkg(p)}:man{man_key(p)[1]}/{p}" for pages in CATALOG.values() for p in pages]
    keys += list(same_topic_sources()) + unrelated_keys()
    for k in keys:
        pkg, _, doc = k.partition(":")
        wanted[pkg].add(doc)
    docs: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory() as tmp:
        for pkg, (deb, version) in sorted(found.items()):
            root = Path(tmp) / pkg
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            for doc in sorted(wanted[pkg]):
                rec = extract_doc(pkg, version, root, doc)
                if rec is None:
                    print(f"warning: {pkg}:{doc} not found", file=sys.stderr)
                    continue
                docs.append(rec)
    with open(text_dir / "docs.jsonl", "w", encoding="utf-8") as f:
        for rec in docs:
            f.write(json.dumps(rec, ensure_ascii=False, sort_keys=True) + "\n")
    meta = {name: {"version": v, "deb": deb.name, "license": PACKAGES[name]["license"]}
            for name, (deb, v) in sorted(found.items())}
    (text_dir / "packages.json").write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
    print(f"extracted {len(docs)} documents into {text_dir}")


_POD_CACHE: dict[str, Any] = {}


def extract_doc(pkg: str, version: str, root: Path, doc: str) -> dict[str, Any] | None:
    key = f"{pkg}:{doc}"
    if pkg == "perl-doc":
        poddir = next(root.glob("usr/share/perl/*/pod"))
        if doc.startswith("perlfunc/"):
            if "perlfunc" not in _POD_CACHE:
                _POD_CACHE["perlfunc"] = parse_perlfunc((poddir / "perlfunc.pod").read_text("utf-8"))
            secs = perlfunc_lookup(_POD_CACHE["perlfunc"], doc.split("/", 1)[1])
            path = poddir / "perlfunc.pod"
        else:
            name, _, head = doc.split("/", 1)[1].partition("#")
            path = poddir / f"{name}.pod"
            if not path.exists():
                return None
            secs = parse_pod_sections(path.read_text("utf-8"))
            if head:
                secs = [s for s in secs if s["name"] == head]
                # include the subsections that follow a head1 up to the next section of that name level
        if not secs:
            return None
    elif pkg == "nodejs-doc":
        name, _, head = doc.partition("#")
        path = root / "usr/share/doc/nodejs/api" / f"{name}.md.gz"
        if not path.exists():
            return None
        secs = parse_markdown(gzip.decompress(path.read_bytes()).decode("utf-8"))
        if head:
            secs = [s for s in secs if s["name"] == head][:1]
            if not secs:
                return None
    elif pkg == "coreutils":
        path = root / "usr/share/info/coreutils.info.gz"
        if "coreutils" not in _POD_CACHE:
            _POD_CACHE["coreutils"] = parse_info(gzip.decompress(path.read_bytes()).decode("utf-8"))
        secs = _POD_CACHE["coreutils"].get(doc.split("#", 1)[1])
        if not secs:
            return None
    else:
        sub, _, page = doc.partition("/")
        cands = list((root / "usr/share/man" / sub).glob(page + ".gz")) + list((root / "usr/share/man" / sub).glob(page))
        if not cands:
            return None
        path = cands[0]
        raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
        if raw.lstrip().startswith(b".so "):
            return None
        secs = parse_man(render_man(path))
    rel = "/" + str(path.relative_to(root))
    return {"key": key, "package": pkg, "version": version, "path": rel, "sections": secs}


# ======================================================================================
# Text utilities
# ======================================================================================
_ABBREV = {"e.g.", "i.e.", "etc.", "cf.", "vs.", "Fig.", "No.", "approx.", "resp.", "et al.", "al.", "Mr.", "Dr.",
           "Inc.", "St.", "Jan.", "Feb.", "Mar.", "Apr.", "Jun.", "Jul.", "Aug.", "Sep.", "Sept.", "Oct.", "Nov.",
           "Dec.", "viz."}


def split_sentences(para: str) -> list[str]:
    """Sentences of a paragraph.  groff and makeinfo put two spaces after a sentence end."""
    para = para.strip()
    if re.search(r"[.!?:;)\"']  +\S", para):
        parts = re.split(r"(?<=[.!?:)\"'])  +", para)
    else:
        parts = []
        start = 0
        for m in re.finditer(r"(?<=[.!?])\s+(?=[A-Z(\"'])", para):
            before = para[start:m.start()]
            last = before.split()[-1] if before.split() else ""
            if last in _ABBREV or re.fullmatch(r"[A-Z]\.", last):
                continue
            parts.append(para[start:m.start()])
            start = m.end()
        parts.append(para[start:])
    out = []
    for p in parts:
        p = " ".join(p.split())
        if p:
            out.append(p)
    # split at ':' boundaries only when groff put two spaces there; re-join tiny pieces
    merged: list[str] = []
    for s in out:
        if merged and len(merged[-1].split()) < 3:
            merged[-1] = merged[-1] + " " + s
        else:
            merged.append(s)
    return merged


def words(s: str) -> list[str]:
    return s.split()


def nwords(s: str) -> int:
    return len(s.split())


def grams(s: str, n: int = 8) -> set[tuple[str, ...]]:
    toks = re.findall(r"[a-z0-9_]+", s.lower())
    return {tuple(toks[i:i + n]) for i in range(len(toks) - n + 1)}


_LOWER_STARTS = {"are", "is", "and", "or", "but", "to", "the", "of", "with", "in", "which", "that", "as", "for",
                 "then", "where", "when", "while", "if", "so", "a", "an", "be", "was", "were", "this", "these", "it",
                 "respectively", "instead", "otherwise", "also", "because", "on", "at", "by", "from", "not", "no",
                 "will", "would", "can", "may", "should", "has", "have", "does", "do"}
# sentences that lean on the one before them: not used as filler
_LEANS = re.compile(r"^(So|Thus|Similarly|This|These|That|Those|It|Its|They|Their|However|Therefore|Also|In this|"
                    r"In that|In these|Otherwise|Conversely|For example|For instance|See|Then|Here|Such|Both|"
                    r"Likewise|Instead|Hence|Note|Again|Finally|But|And|Or|Alternatively|Of course|Now|Above|"
                    r"Below|The above|The following|As (?:above|before|such|a result|mentioned))\b")
_CODEY = re.compile(r"(#include|[{};]\s*$|^\s*[{}]|/\*|\*/|==|->|\|\||&&|^\$ |^% |^# |\bint \w+\(|\(\);)")


def is_prose(text: str, min_words: int = 6) -> bool:
    t = text.strip()
    if t == "[code]" or nwords(t) < min_words:
        return False
    if not re.search(r"[.!?][)\"']?$", t):
        return False
    first = t.split()[0]
    if first in _LOWER_STARTS:
        return False  # the tail of a sentence interrupted by an example
    if _CODEY.search(t):
        return False
    toks = t.split()
    alpha = sum(1 for w in toks if re.fullmatch(r"[A-Za-z][a-z'-]*[.,;:)]?|\(?[a-z]+[.,;:)]?", w))
    if alpha / len(toks) < 0.6:
        return False
    if re.match(r"^(\*|-|\d+\.)\s", t):
        return False
    m = re.match(r"^(\S+(?: \S+){0,2})  +\S", t)
    if m and m.group(1)[-1] not in ".!?:;)\"'":
        return False  # a tagged list entry rendered on one line ("EBADF  fd is not ...")
    if re.match(r"^([a-z_][\w()./-]*|[A-Z][A-Z0-9_]{2,})\s[A-Z][a-z]", t):
        return False  # a short tag and its body on one line ("stat64 Even larger ...")
    return not (t.count("|") > 1 or re.search(r"\s{3,}", text.strip()))


def prose_paras(doc: dict[str, Any], sections: Iterable[str] | None = None, max_indent: int = 7,
                raw: bool = False) -> list[str]:
    """Prose paragraphs of a document (optionally only the named sections, in that order)."""
    secs = doc["sections"]
    if sections is not None:
        order = list(sections)
        secs = sorted((s for s in secs if s["name"] in order), key=lambda s: order.index(s["name"]))
    out = []
    for sec in secs:
        paras = sec["paras"]
        for indent, text in paras:
            if indent > max_indent:
                continue
            t = re.sub(r"^\*\s+", "", text.strip())  # a bullet item: keep its text
            if t.endswith(":"):  # "... is one of the following:" introduces a list or code: drop that sentence
                t = "  ".join(split_sentences(t)[:-1])
            if not t or not is_prose(t):
                continue
            out.append(t if raw else " ".join(t.split()))
    return out


# ======================================================================================
# Build
# ======================================================================================
def load_docs(text_dir: Path) -> dict[str, dict[str, Any]]:
    docs = {}
    with open(text_dir / "docs.jsonl", encoding="utf-8") as f:
        for ln in f:
            rec = json.loads(ln)
            docs[rec["key"]] = rec
    return docs


def work_paragraphs(doc: dict[str, Any]) -> list[str]:
    """The work text: first prose of DESCRIPTION, RETURN VALUE, NOTES, ~420-700 words, whole sentences."""
    paras = prose_paras(doc, CATALOG_SECTIONS, max_indent=7, raw=True)
    out: list[str] = []
    total = 0
    for p in paras:
        sents = split_sentences(p)
        keep = []
        for s in sents:
            if total + nwords(s) > WORK_MAX_WORDS:
                break
            keep.append(s)
            total += nwords(s)
        if keep:
            out.append(" ".join(keep))
        if total >= WORK_TARGET_WORDS or len(keep) < len(sents):
            break
    return out


def build_catalog(docs: dict[str, dict[str, Any]], rng: random.Random) -> list[dict[str, Any]]:
    works: list[dict[str, Any]] = []
    for cluster, pages in CATALOG.items():
        for page in pages:
            key = f"{catalog_pkg(page)}:man{man_key(page)[1]}/{page}"
            doc = docs.get(key)
            if doc is None:
                raise SystemExit(f"catalog page {key} was not extracted")
            paras = work_paragraphs(doc)
            text = "\n\n".join(paras)
            if nwords(text) < WORK_MIN_WORDS:
                print(f"note: skipping {page}: only {nwords(text)} words of prose", file=sys.stderr)
                continue
            name, sec = man_key(page)
            works.append({
                "work_id": work_id(page), "cluster": cluster, "title": f"{name}({sec})",
                "source": f"{doc['package']} {doc['version']} {doc['path']}", "text": text,
                "_paras": paras,
            })
    # holders: clusters in seeded order, works shuffled within a cluster, holders dealt round-robin
    holders = [f"h-{w}" for w in HOLDER_WORDS]
    rng.shuffle(holders)
    clusters = sorted({w["cluster"] for w in works})
    rng.shuffle(clusters)
    ordered = []
    for c in clusters:
        ws = [w for w in works if w["cluster"] == c]
        rng.shuffle(ws)
        ordered += ws
    for i, w in enumerate(ordered):
        w["holder_id"] = holders[i % len(holders)]
    return sorted(works, key=lambda w: w["work_id"])


class Pools:
    """Sentence material outside the catalog, checked against the catalog's 8-word runs."""

    def __init__(self, catalog: list[dict[str, Any]], boiler_min: int) -> None:
        self.df: collections.Counter[tuple[str, ...]] = collections.Counter()
        for w in catalog:
            for g in grams(w["text"]):
                self.df[g] += 1
        self.boiler_min = boiler_min
        self.dropped: list[dict[str, Any]] = []
        self.kept_boiler: list[dict[str, Any]] = []

    def shared(self, text: str) -> list[tuple[str, ...]]:
        return [g for g in grams(text) if g in self.df]

    def check(self, text: str, where: str) -> str | None:
        """None if text may be used; 'boiler' if it shares only boilerplate runs; 'drop' otherwise."""
        sh = self.shared(text)
        if not sh:
            return None
        if all(self.df[g] >= self.boiler_min for g in sh):
            self.kept_boiler.append({"where": where, "runs": sorted({" ".join(g) for g in sh})[:3], "text": text})
            return "boiler"
        self.dropped.append({"where": where, "runs": sorted({" ".join(g) for g in sh if self.df[g] < self.boiler_min})[:3],
                             "text": text})
        return "drop"


def doc_passages(doc: dict[str, Any], rng: random.Random, n: int, prefer_first: bool,
                 min_words: int = 12, max_words: int = 90, max_para: int = 0) -> list[str]:
    """Up to n passages of 1-4 consecutive sentences from different prose paragraphs."""
    secs = None
    names = [s["name"] for s in doc["sections"]]
    if "DESCRIPTION" in names:
        secs = ["DESCRIPTION", "RETURN VALUE", "RETURN VALUES", "NOTES", "OVERVIEW"]
    paras = prose_paras(doc, secs, max_indent=7 if doc["package"] != "freebsd-manpages" else 5, raw=True)
    if not paras:
        paras = prose_paras(doc, None, max_indent=7, raw=True)
    order = list(range(len(paras)))
    if not prefer_first:
        order = order[:max_para] if max_para else order
        rng.shuffle(order)
    out = []
    for pi in order:
        sents = [s for s in split_sentences(paras[pi])]
        sents = [s for s in sents if 4 <= nwords(s) <= 70 and s[-1] in ".)\"'"]
        if not sents:
            continue
        k = rng.randint(1, min(4, len(sents)))
        start = 0 if prefer_first else rng.randint(0, len(sents) - k)
        chosen = sents[start:start + k]
        while chosen and sum(map(nwords, chosen)) > max_words:
            chosen = chosen[:-1]
        if not chosen:
            continue
        if sum(map(nwords, chosen)) < min_words and start + len(chosen) < len(sents):
            chosen = sents[start:start + len(chosen) + 1]
            if sum(map(nwords, chosen)) > max_words:
                continue
        if sum(map(nwords, chosen)) < min_words or not chosen[0][0].isalnum() or _LEANS.match(chosen[0]):
            continue
        out.append(" ".join(chosen))
        if len(out) >= n:
            break
    return out


# -- light edits ------------------------------------------------------------------------
SYNONYMS = {
    "specified": "given", "attempts": "tries", "performs": "carries out", "obtain": "get",
    "obtains": "gets", "obtained": "retrieved", "modify": "change", "modifies": "changes", "modified": "changed",
    "subsequent": "later", "terminates": "ends", "terminate": "end", "terminated": "ended", "invoke": "call",
    "invoked": "called", "invokes": "calls", "requested": "desired", "additional": "extra", "currently": "presently",
    "contains": "holds", "contain": "hold", "ensure": "make sure", "ensures": "makes sure", "permitted": "allowed",
    "permits": "allows", "necessary": "needed", "sufficient": "enough", "initially": "at first",
    "immediately": "at once", "approximately": "about", "retrieve": "fetch", "retrieves": "fetches",
    "supplied": "provided", "commences": "begins", "creates": "makes", "create": "make", "establish": "set up",
    "establishes": "sets up", "utilize": "use", "occurs": "happens", "occur": "happen", "typically": "usually",
    "frequently": "often", "numerous": "many", "entire": "whole", "examine": "inspect", "examines": "inspects",
    "therefore": "so", "thus": "so", "mechanism": "facility", "particular": "specific", "described": "explained",
    "returns": "gives back", "identifies": "names", "indicates": "shows",
    "allocated": "reserved", "allocate": "reserve", "because": "since", "whether": "if", "calling": "invoking",
    "obsolete": "outdated", "previously": "earlier", "provides": "offers", "provide": "offer",
    "various": "several", "assigned": "given", "removes": "deletes", "remove": "delete", "removed": "deleted",
    "completes": "finishes", "completed": "finished", "enables": "turns on",
    "disables": "turns off", "enable": "turn on", "disable": "turn off", "large": "big",
    "begins": "starts", "begin": "start", "information": "info", "several": "a number of", "cannot": "can not",
}
ARTICLES = {"the", "a", "an", "The", "A", "An"}


def light_edit(passage: str, rng: random.Random, min_edits: int = 3) -> tuple[str, int]:
    toks = passage.split()
    idx = []
    for i, t in enumerate(toks):
        core = t.rstrip(",.;:)")
        if core.lower() in SYNONYMS and core.islower() and not (core == "particular" and i and toks[i - 1] == "in"):
            idx.append(i)
    rng.shuffle(idx)
    edits = 0
    for i in idx[:max(min_edits, len(idx) // 2)]:
        t = toks[i]
        core = t.rstrip(",.;:)")
        tail = t[len(core):]
        rep = SYNONYMS[core.lower()]
        toks[i] = rep + tail
        edits += 1
    arts = [i for i, t in enumerate(toks) if t in ARTICLES and i + 1 < len(toks) and t.islower()
            and toks[i + 1] != "to" and (i == 0 or toks[i - 1] not in ("from", "letter", "letters"))]
    rng.shuffle(arts)
    for i in sorted(arts[:2 if edits >= 2 else 3], reverse=True):
        if toks[i][0].isupper():
            continue
        del toks[i]
        edits += 1
    return " ".join(toks), edits


def swap_sentences(sents: list[str], rng: random.Random) -> list[str]:
    """Minor reordering: swap two adjacent sentences when the second does not lean on the first."""
    if len(sents) < 2 or rng.random() < 0.6:
        return sents
    i = rng.randrange(len(sents) - 1)
    if re.match(r"^(This|These|That|It|In this|In that|Such|They|Otherwise|However|Thus|Therefore|If so|Instead|"
                r"Also|In addition|For|Likewise|Similarly|See)", sents[i + 1]):
        return sents
    return sents[:i] + [sents[i + 1], sents[i]] + sents[i + 2:]


def work_windows(work: dict[str, Any], lo: int, hi: int) -> list[str]:
    """Runs of 1-3 consecutive sentences inside a paragraph with lo..hi words."""
    out = []
    for p in work["_paras"]:
        sents = split_sentences(p)
        for i in range(len(sents)):
            for j in range(i + 1, min(len(sents), i + 3) + 1):
                n = sum(nwords(s) for s in sents[i:j])
                if n > hi:
                    break
                if n >= lo:
                    out.append(" ".join(sents[i:j]))
    return out


def work_sentences(work: dict[str, Any]) -> list[str]:
    return [s for p in work["_paras"] for s in split_sentences(p)]


_STOP_END = {"a", "an", "the", "of", "to", "in", "on", "by", "for", "with", "and", "or", "is", "are", "be", "that",
             "which", "as", "at", "from", "if", "not", "its", "their", "this", "these", "can", "may", "will", "it"}


def pick_fragment(sentences: list[str], rng: random.Random, ok: Any = None) -> str:
    """An 8-11 word run from inside a sentence with balanced brackets and quotes.  Clause-like
    runs (bounded by the sentence start or a comma, semicolon or colon on both sides) are
    preferred; otherwise any run that does not start or end on a function word."""
    clauses, others = [], []
    for s in sentences:
        toks = s.split()
        if len(toks) < 12:
            continue
        for k in range(8, 12):
            for a in range(0, len(toks) - k + 1):
                frag = toks[a:a + k]
                text = " ".join(frag).rstrip(",.;:")
                if a == 0 and a + k == len(toks):
                    continue
                last = re.sub(r"\W+$", "", frag[-1]).lower()
                first = re.sub(r"^\W+", "", frag[0]).lower()
                if text.count("(") != text.count(")") or text.count('"') % 2 or text.count("'") % 2:
                    continue
                if not re.search(r"\w\)?$", text) or (ok is not None and not ok(text)):
                    continue
                starts = a == 0 or toks[a - 1][-1] in ",;:"
                ends = frag[-1][-1] in ",;:." or (a + k < len(toks) and toks[a + k].startswith("("))
                if starts and ends and first not in ("and", "or", "but", "which", "that") and last not in _STOP_END:
                    clauses.append(text)
                elif a > 0 and last not in _STOP_END and first not in _STOP_END:
                    others.append(text)
    return rng.choice(sorted(clauses) or sorted(others))


def frac(part: int, total: int) -> float:
    """part / total rounded down to 4 decimals (so the shares of one output never add up past 1)."""
    return (part * 10000 // total) / 10000


def build_cases(catalog: list[dict[str, Any]], docs: dict[str, dict[str, Any]], handwritten: list[dict[str, Any]],
                seed: int, boiler_min: int) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    rng = random.Random(seed + 1)
    by_id = {w["work_id"]: w for w in catalog}
    holder = {w["work_id"]: w["holder_id"] for w in catalog}
    pools = Pools(catalog, boiler_min)
    report: dict[str, Any] = {}

    # unrelated docs -> split into filler pool / case pool by a hash of the key
    ukeys = [k for k in unrelated_keys() if k in docs]
    filler_keys = [k for k in ukeys if int(hashlib.sha1(k.encode()).hexdigest(), 16) % 3 == 0]
    case_keys = [k for k in ukeys if k not in filler_keys]
    filler: list[str] = []
    filler_overlap = 0
    for k in filler_keys:
        for p in prose_paras(docs[k], None, max_indent=7, raw=True):
            for s in split_sentences(p):
                if 6 <= nwords(s) <= 35 and s[-1] in ".)" and s[0].isupper() and not _LEANS.match(s):
                    if pools.shared(s):
                        filler_overlap += 1
                    else:
                        filler.append(s)
    filler = sorted(set(filler))
    rng.shuffle(filler)
    report["filler_sentences"] = len(filler)
    report["filler_dropped_for_catalog_overlap"] = filler_overlap
    fill_i = 0

    def take_filler(k: int) -> list[str]:
        nonlocal fill_i
        out = []
        for _ in range(k):
            out.append(filler[fill_i % len(filler)])
            fill_i += 1
        return out

    def embed(core: str, nbefore: int, nafter: int) -> tuple[str, int]:
        parts = take_filler(nbefore) + [core] + take_filler(nafter)
        return " ".join(parts), nwords(" ".join(parts))

    cases: list[dict[str, Any]] = []

    def own(text: str) -> bool:
        """True if no 8-word run of text occurs in another catalog work (so the label is unambiguous)."""
        return all(pools.df[g] == 1 for g in grams(text))

    def windows(w: dict[str, Any], lo: int, hi: int) -> list[str]:
        return [x for x in work_windows(w, lo, hi) if own(x)]

    def add(level: str, text: str, planted: dict[str, float], avoid: list[str], note: str, **extra: Any) -> None:
        cases.append({"level": level, "text": text, "planted": planted, "avoid": avoid, "note": note, **extra})

    work_order = [w["work_id"] for w in catalog]
    rng.shuffle(work_order)

    # -- verbatim -------------------------------------------------------------------------
    n_verbatim = 128
    for i in range(n_verbatim):
        wid = work_order[i % len(work_order)]
        w = by_id[wid]
        short = i % 4 == 0
        if short:
            sents = [s for s in work_sentences(w) if 8 <= nwords(s) <= 11 and own(s)]
            if sents and rng.random() < 0.5:
                core = rng.choice(sents)
                copied = nwords(core)
                note = f"short copy: a whole {nwords(core)}-word sentence"
            else:
                frag = pick_fragment(work_sentences(w), rng, own)
                nfrag = nwords(frag)
                if frag[0].isupper() and not re.match(r"^[A-Z][A-Z0-9_]+\b|^Linux\b|^POSIX", frag):
                    lead = rng.choice(["From the manual:", "The documentation says:", "For reference:"])
                else:
                    lead = rng.choice(["Note that", "In short,", "Put simply,", "As documented,", "Keep in mind that"])
                core = f"{lead} {frag}."
                note = f"short copy: a {nfrag}-word run from a longer sentence"
                copied = nwords(frag)
        else:
            wins = windows(w, 12, 75)
            core = rng.choice(wins)
            copied = nwords(core)
            note = f"{len(split_sentences(core))} consecutive sentence(s) copied"
        nb, na = rng.choice([(1, 1), (1, 2), (2, 1), (0, 2), (2, 0), (1, 0), (0, 1), (2, 2)])
        text, total = embed(core, nb, na)
        add("verbatim", text, {wid: frac(copied, total)}, [], note + "; filler from non-catalog documents")

    # -- light edit -----------------------------------------------------------------------
    for i in range(68):
        wid = work_order[(i * 7 + 3) % len(work_order)]
        w = by_id[wid]
        wins = windows(w, 40, 60)
        if not wins:
            wins = windows(w, 34, 66)
        if not wins:
            continue
        passage = rng.choice(wins)
        sents = swap_sentences(split_sentences(passage), rng)
        edited, edits = light_edit(" ".join(sents), rng)
        if edits < 3:
            continue
        if i % 3 == 2:
            text, total = embed(edited, rng.randint(0, 1), 1)
            planted = {wid: frac(nwords(edited), total)}
        else:
            text, planted = edited, {wid: 1.0}
        add("light_edit", text, planted, [], f"{nwords(passage)}-word passage, {edits} edits (synonyms, dropped articles"
            + (", sentences reordered)" if sents != split_sentences(passage) else ")"))

    # -- multi ----------------------------------------------------------------------------
    n_multi = 62
    for i in range(n_multi):
        nparts = 2 if i % 3 else 3
        chosen: list[str] = []
        tries = 0
        while len(chosen) < nparts and tries < 200:
            tries += 1
            wid = rng.choice(work_order)
            if wid in chosen or holder[wid] in {holder[c] for c in chosen}:
                continue
            if not windows(by_id[wid], 20, 45):
                continue
            chosen.append(wid)
        parts = []
        for j, wid in enumerate(chosen):
            seg = rng.choice(windows(by_id[wid], 20, 45))
            if (i + j) % 3 == 1:
                seg, _ = light_edit(seg, rng, min_edits=2)
            parts.append((wid, seg))
        total = sum(nwords(s) for _, s in parts)
        text = " ".join(s for _, s in parts)
        planted = {wid: frac(nwords(s), total) for wid, s in parts}
        edited_ids = [wid for j, (wid, _) in enumerate(parts) if (i + j) % 3 == 1]
        add("multi", text, planted, [], f"{nparts} works of {nparts} different holders"
            + (f"; lightly edited: {', '.join(edited_ids)}" if edited_ids else "; all verbatim"))

    # -- hand-written: paraphrase and altered ------------------------------------------------
    def norm(s: str) -> str:
        return " ".join(s.split())

    holders_of_gram: dict[tuple[str, ...], set[str]] = collections.defaultdict(set)
    for w in catalog:
        for g in grams(w["text"]):
            holders_of_gram[g].add(w["work_id"])
    for h in handwritten:
        hw_work = by_id.get(h["work_id"])
        if hw_work is None:
            raise SystemExit(f"handwritten: unknown work {h['work_id']}")
        if norm(h["source"]) not in norm(hw_work["text"]):
            raise SystemExit(f"handwritten: source passage not in {h['work_id']}: {h['source'][:80]}")
        others = sorted({o for g in grams(h["source"]) for o in holders_of_gram.get(g, ()) if o != h["work_id"]})
        shared_note = f"; the source passage shares some 8-word runs with {', '.join(others)}" if others else ""
        if h["kind"] == "paraphrase":
            shared = grams(h["text"]) & grams(h["source"])
            if shared:
                print(f"warning: paraphrase of {h['work_id']} shares {len(shared)} 8-word runs with its source",
                      file=sys.stderr)
            add("paraphrase", h["text"], {h["work_id"]: 1.0}, [],
                (h.get("note") or "hand-written paraphrase") + shared_note, source_passage=h["source"])
        elif h["kind"] == "altered":
            if norm(h["text"]) == norm(h["source"]):
                raise SystemExit(f"handwritten: altered text equals its source ({h['work_id']})")
            core = h["text"]
            if len([c for c in cases if c["level"] == "altered"]) % 2 == 1:
                text, total = embed(core, rng.randint(0, 1), 1)
            else:
                text, total = core, nwords(core)
            add("altered", text, {h["work_id"]: frac(nwords(core), total)}, [],
                "meaning altered: " + h.get("note", "") + shared_note, source_passage=h["source"])
        else:
            raise SystemExit(f"handwritten: unknown kind {h['kind']}")

    # -- same topic -----------------------------------------------------------------------
    st = same_topic_sources()
    st_cases = []
    for key in sorted(st):
        doc = docs.get(key)
        if doc is None:
            print(f"note: same-topic source {key} not extracted", file=sys.stderr)
            continue
        avoid = [a for a in st[key] if a in by_id]
        if not avoid:
            continue
        other_author = not key.startswith(("manpages:", "manpages-dev:"))
        n = 2 if other_author and key.startswith(("freebsd-manpages:", "perl-doc:perlfunc")) else 1
        passages = doc_passages(doc, random.Random(f"{seed}:{key}"), n, prefer_first=True)
        if n == 2 and passages:
            more = doc_passages(doc, random.Random(f"{seed}:{key}:2"), 3, prefer_first=False, max_para=3)
            passages = passages[:1] + [p for p in more if p != passages[0] and not set(split_sentences(p)) & set(split_sentences(passages[0]))][:1]
        for p in passages:
            st_cases.append((key, p, avoid, other_author))
    report["same_topic_candidates"] = len(st_cases)
    # a seeded pick: at most N_SAME_TOPIC cases, at most 3 per avoided work, at most
    # N_SAME_TOPIC_LINUX from held-out Linux pages (same project as the catalog)
    st_rng = random.Random(seed + 5)
    st_rng.shuffle(st_cases)
    st_cases.sort(key=lambda c: c[3])  # the capped held-out Linux pages first, then other authors
    per_work: collections.Counter[str] = collections.Counter()
    n_linux = n_st = 0
    for key, p, avoid, other in st_cases:
        if n_st >= N_SAME_TOPIC or per_work[avoid[0]] >= 3 or (not other and n_linux >= N_SAME_TOPIC_LINUX):
            continue
        verdict = pools.check(p, f"same_topic {key}")
        if verdict == "drop":
            continue
        per_work[avoid[0]] += 1
        n_st += 1
        n_linux += not other
        src = docs[key]
        note = f"from {src['package']} {src['path']}" + (f" ({key.split('#', 1)[1]})" if "#" in key else "")
        note += "; other authors" if other else "; held-out Linux man page on a related call"
        if verdict == "boiler":
            note += "; shares only boilerplate 8-word runs with the catalog"
        add("same_topic", p, {}, avoid, note, source=f"{src['package']} {src['version']} {src['path']}", cluster=key)

    # -- unrelated ------------------------------------------------------------------------
    un_rng = random.Random(seed + 7)
    un_cands = []
    for key in sorted(case_keys):
        for p in doc_passages(docs[key], random.Random(f"{seed}:{key}"), 2, prefer_first=False):
            un_cands.append((key, p))
    un_rng.shuffle(un_cands)
    report["unrelated_candidates"] = len(un_cands)
    n_un = 0
    for key, p in un_cands:
        if n_un >= N_UNRELATED:
            break
        verdict = pools.check(p, f"unrelated {key}")
        if verdict == "drop":
            continue
        src = docs[key]
        note = f"from {src['package']} {src['path']}" + (f" ({key.split('#', 1)[1]})" if "#" in key else "")
        if verdict == "boiler":
            note += "; shares only boilerplate 8-word runs with the catalog"
        add("unrelated", p, {}, [], note, source=f"{src['package']} {src['version']} {src['path']}", cluster=key)
        n_un += 1

    # -- ids and splits -----------------------------------------------------------------------
    split_rng = random.Random(seed + 11)
    counters: collections.Counter[str] = collections.Counter()
    final = []
    for level in ("verbatim", "light_edit", "paraphrase", "multi", "altered", "same_topic", "unrelated"):
        lc = [c for c in cases if c["level"] == level]
        idx = list(range(len(lc)))
        split_rng.shuffle(idx)
        held = set(idx[: round(len(lc) / 3)])
        for j, c in enumerate(lc):
            counters[level] += 1
            c = {"case_id": f"{level}-{counters[level]:03d}", **c}
            c["split"] = "heldout" if j in held else "dev"
            final.append(c)
    report["dropped"] = pools.dropped
    report["kept_boiler"] = pools.kept_boiler
    return final, report


def common_runs(catalog: list[dict[str, Any]], top: int = 25) -> list[tuple[str, int]]:
    df: collections.Counter[tuple[str, ...]] = collections.Counter()
    for w in catalog:
        for g in grams(w["text"]):
            df[g] += 1
    return [(" ".join(g), n) for g, n in df.most_common(top) if n > 1]


def build(text_dir: Path, out_dir: Path, handwritten_path: Path, seed: int, boiler_min: int) -> dict[str, Any]:
    docs = load_docs(text_dir)
    rng = random.Random(seed)
    catalog = build_catalog(docs, rng)
    handwritten = []
    if handwritten_path.exists():
        with open(handwritten_path, encoding="utf-8") as f:
            handwritten = [json.loads(ln) for ln in f if ln.strip()]
    cases, report = build_cases(catalog, docs, handwritten, seed, boiler_min)
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / "catalog.jsonl", "w", encoding="utf-8") as f:
        for w in catalog:
            f.write(json.dumps({k: w[k] for k in ("work_id", "holder_id", "title", "source", "text")},
                               ensure_ascii=False) + "\n")
    with open(out_dir / "cases.jsonl", "w", encoding="utf-8") as f:
        for c in cases:
            f.write(json.dumps(c, ensure_ascii=False) + "\n")
    counts = collections.Counter((c["level"], c["split"]) for c in cases)
    summary = {
        "works": len(catalog), "holders": len({w["holder_id"] for w in catalog}),
        "cases": {lvl: {"dev": counts[(lvl, "dev")], "heldout": counts[(lvl, "heldout")]}
                  for lvl in dict.fromkeys(c["level"] for c in cases)},
        "filler_sentences": report["filler_sentences"],
        "filler_dropped_for_catalog_overlap": report["filler_dropped_for_catalog_overlap"],
        "same_topic_candidates": report["same_topic_candidates"],
        "unrelated_candidates": report["unrelated_candidates"],
        "dropped_for_catalog_overlap": collections.Counter(d["where"].split()[0] for d in report["dropped"]),
        "kept_with_boilerplate_only": collections.Counter(d["where"].split()[0] for d in report["kept_boiler"]),
        "common_8word_runs": common_runs(catalog),
    }
    (text_dir / "build_report.json").write_text(json.dumps({"summary": summary, "dropped": report["dropped"],
                                                             "kept_boiler": report["kept_boiler"]}, indent=1))
    return summary


def print_passages(text_dir: Path, works: list[str], seed: int) -> None:
    docs = load_docs(text_dir)
    catalog = build_catalog(docs, random.Random(seed))
    for w in catalog:
        if works and w["work_id"] not in works:
            continue
        print(f"== {w['work_id']} {w['holder_id']}")
        for p in w["_paras"]:
            print("  *", p)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter,
                                 epilog="Steps: extract (needs dpkg-deb and groff), build, or all.")
    sub = ap.add_subparsers(dest="cmd", required=True)
    for name in ("extract", "build", "all", "passages"):
        p = sub.add_parser(name)
        if name in ("extract", "all"):
            p.add_argument("--debs", type=Path, required=True, help="folder with the downloaded .deb files")
        p.add_argument("--text", type=Path, required=True, help="folder for the extracted text (docs.jsonl)")
        if name in ("build", "all"):
            p.add_argument("--out", type=Path, default=DATA_DIR, help=f"output folder (default {DATA_DIR})")
            p.add_argument("--handwritten", type=Path, default=DATA_DIR / "handwritten.jsonl")
            p.add_argument("--boiler-min", type=int, default=4,
                           help="an 8-word run shared with at least this many catalog works counts as boilerplate")
        if name == "passages":
            p.add_argument("works", nargs="*")
        p.add_argument("--seed", type=int, default=SEED)
    args = ap.parse_args(argv)
    if args.cmd in ("extract", "all"):
        extract(args.debs, args.text)
    if args.cmd in ("build", "all"):
        summary = build(args.text, args.out, args.handwritten, args.seed, args.boiler_min)
        print(json.dumps(summary, indent=1))
    if args.cmd == "passages":
        print_passages(args.text, args.works, args.seed)
    return 0


if __name__ == "__main__":
    sys.exit(main())
