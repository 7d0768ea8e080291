"""Job processes: launch in a new process group with limits, identity against pid reuse, waiting."""
from __future__ import annotations

import errno
import os
import select
import signal
import stat
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

try:
    import resource
except ImportError:  # pragma: no cover - not on Linux
    resource = None  # type: ignore[assignment]

# The job's process is WAITER, a few lines run by the job's own interpreter (-E -s -S: no
# environment, site or user packages of the job's): it waits for the agent's "go" on stdin (sent
# only after the journal holds its pid, so an agent crash before that never leaves an unrecorded
# run), forks, execs the interpreter on the entry file exactly as a shell would, and writes how
# the job ended to a file, so that an agent restarted after a crash still learns how an adopted
# job ended: its exit status (0-255), or minus the signal that killed
# it (a shell's $? would say 128+N for both a signal and an exit(128+N); AGT-EXT-3 tells them
# apart). It exits as a shell would (the status, or 128+N), for a launcher without a status file.
# A fork refused for a moment (EAGAIN: a pids limit reached by others) is retried with backoff
# for up to two minutes, as bash does: the job is RUN by then and must not fail for the agent's
# lack of a task.
WAITER = (
    "import os, signal, sys\n"
    "interp, entry, target = sys.argv[1], sys.argv[2], sys.argv[3]\n"
    "fd = int(target) if target.isdigit() else None\n"
    "ready = int(sys.argv[4])\n"
    "os.write(ready, b'r')\n"
    "os.close(ready)\n"
    "go = b''\n"
    "while not go.endswith(b'\\n') and len(go) < 3:\n"
    "    piece = os.read(0, 3 - len(go))\n"
    "    if not piece:\n"
    "        break\n"
    "    go += piece\n"
    "if go != b'go\\n':\n"
    "    os._exit(125)\n"
    "null = os.open(os.devnull, os.O_RDONLY)\n"
    "os.dup2(null, 0)\n"
    "os.close(null)\n"
    "pause, waited = 0.05, 0.0\n"
    "while True:\n"
    "    try:\n"
    "        pid = os.fork()\n"
    "        break\n"
    "    except OSError as e:\n"
    "        if e.errno != 11 or waited > 120:\n"
    "            raise\n"
    "        import time\n"
    "        time.sleep(pause)\n"
    "        waited, pause = waited + pause, min(pause * 2, 2.0)\n"
    "if pid == 0:\n"
    "    try:\n"
    "        for name in ('SIGPIPE', 'SIGXFSZ', 'SIGINT'):\n"
    "            if hasattr(signal, name):\n"
    "                signal.signal(getattr(signal, name), signal.SIG_DFL)\n"
    "        if fd is not None:\n"
    "            os.close(fd)\n"
    "        os.execv(interp, [interp, entry])\n"
    "    except BaseException:\n"
    "        os._exit(127)\n"
    "signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
    "while True:\n"
    "    try:\n"
    "        w = os.waitpid(pid, 0)[1]\n"
    "        break\n"
    "    except OSError as e:\n"
    "        if e.errno != 4:\n"
    "            raise\n"
    "s = -os.WTERMSIG(w) if os.WIFSIGNALED(w) else os.WEXITSTATUS(w)\n"
    "try:\n"
    "    out = fd if fd is not None else os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)\n"
    "    os.write(out, (str(s) + '\\n').encode())\n"
    "except OSError:\n"
    "    pass\n"
    "os._exit(s if s >= 0 else 128 - s)\n"
)
# The waiter starts at once and waits for the agent's "go" on stdin itself (sent only after the
# journal holds its pid, so an agent crash before that never leaves an unrecorded run): its own
# start overlaps the journal's write, and nothing but fork and exec is left after "go".
# Through sh: an interpreter gone since it was chosen is the shell's exit 127 (126: not
# executable), the job's end (DONE, failed), not a launch the agent could retry.
# The waiter first writes "r" on the ready pipe (descriptor number in $4): the agent journals RUN
# only then (Launch.wait_ready), so a launcher that dies before its interpreter runs (a fork
# child aborted at a process limit, a failed namespace mount) is the agent's failed start: the
# job stays WAIT and is retried (AGT-STATE-2: RUN means started).
LAUNCHER = 'exec "$0" -E -s -S -c "$3" "$0" "$1" "$2" "$4"\n'

# With --job-user the launcher runs as that user, which cannot reach the 0700 state directory:
# the agent opens the exit-status file and hands the launcher its descriptor (number in $2),
# closed for the interpreter, so the job can neither reach nor forge it. Run by bash: dash
# takes only one-digit descriptors in redirections.
JOB_USER_SHELL = "/bin/bash"
# The switch of user is done by setpriv (util-linux), not by Popen(user=...): CPython may vfork,
# and a setuid in a vfork child of a multithreaded process crashed the child now and then.
SETPRIV = "/usr/bin/setpriv"
LAUNCHER_FD = '{limits}exec "$0" -E -s -S -c "$3" "$0" "$1" "$2" "$4"\n'

# With --job-user each job also gets mount and pid namespaces of its own (unshare, util-linux):
# its /proc shows only its own processes (no other job's command line, so no other job's file
# UUIDs), and /tmp and /dev/shm are tmpfs of its own, charged to its memory cgroup and gone when
# its last process ends. `--kill-child`: the namespace's processes die with the launcher.
UNSHARE = "/usr/bin/unshare"
UNSHARE_ARGS = ("--pid", "--mount-proc", "--kill-child=SIGKILL", "--propagation", "private", "--")
# A work directory under /tmp (a state directory there) is bound back into the new /tmp: the
# shell's working directory still reaches the covered original.
PRIVATE_MOUNTS = (
    'w=$(pwd -P)\n'
    'mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp || exit 125\n'
    'case "$w" in /tmp/*) (umask 022 && mkdir -p "$w") && mount --no-canonicalize --bind /proc/self/cwd "$w" || exit 125;; esac\n'
    'if [ -d /dev/shm ]; then mount -t tmpfs -o mode=1777,nosuid,nodev tmpfs /dev/shm || exit 125; fi\n'
    'exec "$@"\n'
)
NOT_LAUNCHED = 125  # the launcher exits with this when the agent never said go
INTERPRETER_NOT_RUN = (126, 127)  # the shell's exit when the interpreter is not executable / gone
READY_TIMEOUT = 120.0  # seconds a launcher's interpreter may take to start (a loaded machine)


class LauncherLost(Exception):
    """The launcher ended before its interpreter ran the waiter: nothing of the job ran."""

    def __init__(self, returncode: int | None):
        how = (f"signal {-returncode} ({signal.Signals(-returncode).name})" if returncode is not None and returncode < 0
               and -returncode in signal.valid_signals() else f"exit {returncode}")
        super().__init__(f"the launcher ended before its interpreter started ({how})")
        self.returncode = returncode


class LauncherStalled(Exception):
    """The launcher's interpreter did not start within its time (the launcher is killed)."""
SAFE_PATH = "/usr/local/bin:/usr/bin:/bin"
JOB_UMASK = 0o077  # what a job creates (its outputs, the exit-status file) is private too


def _private_output(path: Path):
    """The job's stdout or stderr file for appending, mode 0600, never through a symlink."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.fchmod(fd, 0o600)
    return os.fdopen(fd, "ab")


@dataclass(frozen=True)
class JobUser:
    """The user jobs run as (--job-user), when it is not the agent's."""

    name: str
    uid: int
    gid: int


@dataclass(frozen=True)
class Limits:
    """Resource limits applied to the job's process group (None: leave as inherited)."""

    address_space: int | None = None
    open_files: int | None = None
    processes: int | None = None

    def as_shell(self) -> str:
        """The same limits as bash `ulimit` lines, for a launcher that runs as another user
        (prlimit on another user's process needs CAP_SYS_RESOURCE). Refused ones are left."""
        lines = []
        for option, value in (("-v", None if self.address_space is None else max(1, self.address_space // 1024)),
                              ("-n", self.open_files), ("-u", self.processes)):
            if value is not None:
                lines.append(f"ulimit {option} {int(value)} 2>/dev/null; ")
        return "".join(lines)

    def apply(self, pid: int) -> None:
        if resource is None or not hasattr(resource, "prlimit"):
            return
        for which, value in ((getattr(resource, "RLIMIT_AS", None), self.address_space),
                             (getattr(resource, "RLIMIT_NOFILE", None), self.open_files),
                             (getattr(resource, "RLIMIT_NPROC", None), self.processes)):
            if which is None or value is None:
                continue
            _, hard = resource.prlimit(pid, which)
            if hard != resource.RLIM_INFINITY:
                value = min(value, hard)
            try:
                resource.prlimit(pid, which, (value, value))
            except (ValueError, OSError):
                pass  # a limit the platform refuses is left as inherited


def clean_env(workdir: Path, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The job's environment: nothing of the agent's (no secrets), a safe PATH, HOME = workdir."""
    env = {"PATH": SAFE_PATH, "HOME": str(workdir), "TMPDIR": str(workdir), "LANG": "C.UTF-8",
           "PYTHONUNBUFFERED": "1"}
    env.update(extra or {})
    return env


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return "unknown-boot"


def process_identity(pid: int) -> str | None:
    """Boot id and kernel start time of pid: equal only for the very same process."""
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    after_comm = data.rsplit(")", 1)[1].split()
    return f"{boot_id()}:{after_comm[19]}"  # field 22 of stat is starttime


class Launch:
    """A launched, paused job process: `go()` lets it run, `abort()` ends it without running."""

    def __init__(self, interpreter: str, entry: str, workdir: Path, stdout: Path, stderr: Path,
                 status_file: Path, env: dict[str, str], limits: Limits, user: "JobUser | None" = None):
        self.status_file = status_file
        status_file.unlink(missing_ok=True)
        read_fd, self._go_fd = os.pipe()
        self._ready_fd, ready_w = os.pipe()
        status_fd = None
        try:
            if user is None:
                argv = ["/bin/sh", "-c", LAUNCHER, interpreter, entry, str(status_file), WAITER, str(ready_w)]
                passed: tuple[int, ...] = (ready_w,)
            else:
                status_fd = os.open(status_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
                script = LAUNCHER_FD.replace("{limits}", limits.as_shell())  # the interpreter's, not the shell's
                argv = [SETPRIV, f"--reuid={user.uid}", f"--regid={user.gid}", "--clear-groups", "--",
                        JOB_USER_SHELL, "-c", script, interpreter, entry, str(status_fd), WAITER, str(ready_w)]
                if private_namespaces():
                    argv = [UNSHARE, *UNSHARE_ARGS, "/bin/sh", "-c", PRIVATE_MOUNTS, "sh", *argv]
                passed = (status_fd, ready_w)
            with _private_output(stdout) as out, _private_output(stderr) as err:
                self.proc = subprocess.Popen(
                    argv, cwd=str(workdir), env=env, stdin=read_fd, stdout=out, stderr=err,
                    start_new_session=True, close_fds=True, umask=JOB_UMASK, pass_fds=passed)
        except BaseException:
            os.close(self._go_fd)
            os.close(self._ready_fd)
            raise
        finally:
            os.close(read_fd)
            os.close(ready_w)
            if status_fd is not None:
                os.close(status_fd)
        self.pid = self.proc.pid
        try:
            self.pidfd = _pidfd(self.pid)
            self.identity = process_identity(self.pid)
            if user is None:
                limits.apply(self.pid)
        except BaseException:
            self.abort()  # the launcher exits without running anything
            raise

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Return once the job's interpreter runs the waiter (paused, before "go"). LauncherLost:
        the launcher ended before that (nothing of the job ran); LauncherStalled: not within
        `timeout` seconds (the launcher is killed). Either way the caller aborts the launch."""
        fd, self._ready_fd = self._ready_fd, None
        if fd is None:
            return
        try:
            poller = select.poll()
            poller.register(fd, select.POLLIN)
            if not poller.poll(max(0, int(timeout * 1000))):
                kill_group(self.pid)
                raise LauncherStalled(f"the launcher's interpreter did not start within {timeout:g} s")
            if os.read(fd, 1) == b"r":
                return
        finally:
            os.close(fd)
        try:  # end of file: every process that held the pipe ended (or closed it) before the waiter ran
            returncode = self.proc.wait(10)
        except subprocess.TimeoutExpired:
            kill_group(self.pid)
            returncode = self.proc.wait()
        raise LauncherLost(returncode)

    def go(self) -> None:
        try:
            os.write(self._go_fd, b"go\n")
        except OSError:
            pass
        finally:
            os.close(self._go_fd)
            self._go_fd = None

    def abort(self) -> None:
        """Never run: close the pipe, the launcher exits with NOT_LAUNCHED."""
        for fd in (self._go_fd, self._ready_fd):
            if fd is not None:
                os.close(fd)
        self._go_fd = self._ready_fd = None
        self.proc.wait()
        if getattr(self, "pidfd", None) is not None:
            os.close(self.pidfd)
            self.pidfd = None


_namespaces: bool | None = None


def private_namespaces() -> bool:
    """Whether this machine gives a job its own pid and mount namespaces with private tmpfs
    mounts (root, unshare present, not refused by a container): tried once, then remembered."""
    global _namespaces
    if _namespaces is None:
        try:
            done = subprocess.run([UNSHARE, *UNSHARE_ARGS, "/bin/sh", "-c", PRIVATE_MOUNTS, "sh", "/bin/true"],
                                  stdin=subprocess.DEVNULL, capture_output=True, timeout=10)
            _namespaces = done.returncode == 0
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EMFILE, errno.ENFILE, errno.ENOMEM):
                raise  # the agent's trouble now (a start retried later), not the machine's answer
            _namespaces = False
        except subprocess.SubprocessError:
            _namespaces = False
    return _namespaces


def _pidfd(pid: int) -> int | None:
    try:
        return os.pidfd_open(pid)
    except (AttributeError, OSError):
        return None


def wait_fd(pidfd: int | None, pid: int, timeout: float | None) -> bool:
    """Block until the process ends (True) or timeout passes (False). No polling with pidfd."""
    if pidfd is not None:  # poll(), not select(): pidfds above FD_SETSIZE are fine
        poller = select.poll()
        poller.register(pidfd, select.POLLIN)
        return bool(poller.poll(None if timeout is None else max(0, int(timeout * 1000 + 0.999))))
    deadline = None if timeout is None else time.monotonic() + timeout
    while deadline is None or time.monotonic() < deadline:  # fallback without pidfd: 10 ms polls
        if not alive(pid):
            return True
        time.sleep(0.01)
    return False


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        return state not in ("Z", "X")
    except (OSError, IndexError):
        return False


def kill_group(pgid: int, sig: int = signal.SIGKILL) -> None:
    try:
        os.killpg(pgid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def read_status(status_file: Path) -> int | None:
    """The exit status the launcher wrote, or None. The job can put anything at that path (a
    FIFO, a symlink to /dev/zero): only a regular file is read, never followed, 64 bytes at most."""
    try:
        fd = os.open(status_file, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        return int(os.read(fd, 64).decode("ascii").strip())
    except (OSError, ValueError):
        return None
    finally:
        os.close(fd)


@dataclass
class Adopted:
    """A job process left by an earlier run of the agent, watched through a pidfd."""

    pid: int
    pidfd: int | None

    @classmethod
    def attach(cls, pid: int, identity: str | None) -> "Adopted | None":
        """The process if it is still the one recorded (same boot and start time) and alive."""
        if not pid or not identity:
            return None
        pidfd = _pidfd(pid)
        if pidfd is None and not alive(pid):
            return None
        if process_identity(pid) != identity or not alive(pid):
            if pidfd is not None:
                os.close(pidfd)
            return None
        return cls(pid, pidfd)
