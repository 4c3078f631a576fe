"""The embedded PostgreSQL + PostGIS cluster that twin runs when no database URL is given.

The cluster lives under ``TWIN_HOME`` and listens only on a Unix socket in a private
directory, so no port can clash and no other account can connect. PostgreSQL refuses to
run as root; as root, the cluster runs under an unprivileged account (``TWIN_CLUSTER_USER``,
``postgres`` by default) and root keeps full use of its files.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import pwd
import re
import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL

from geo.errors import ClusterError, SoftwareMissing

DATABASE_NAME = "twin"
SUPERUSER = "twin"
START_TIMEOUT_S = 60
# A Unix socket path may not exceed 107 bytes; ".s.PGSQL.5432" takes 13 of them.
MAX_SOCKET_DIR_LEN = 90
# Where the cluster goes when running as root and the cluster account cannot reach TWIN_HOME.
SHARED_CLUSTER_ROOT = Path("/var/lib/twin/clusters")
DEBIAN_POSTGRES_ROOT = Path("/usr/lib/postgresql")


@dataclass(frozen=True)
class PostgresInstall:
    """PostgreSQL server binaries found on this machine."""

    bindir: Path
    major: int
    sharedir: Path

    @property
    def has_postgis(self) -> bool:
        """Whether the PostGIS extension is installed for this PostgreSQL."""
        return (self.sharedir / "extension" / "postgis.control").is_file()

    def postgis_package(self) -> str:
        """Name the Debian/Ubuntu package that brings PostGIS 3 to this PostgreSQL."""
        return f"postgresql-{self.major}-postgis-3"


def find_postgres() -> PostgresInstall:
    """Find the newest PostgreSQL server binaries, Debian's layout first, then ``PATH``.

    Raises
    ------
    SoftwareMissing
        When no ``initdb``/``pg_ctl``/``postgres`` triple is installed.
    """
    candidates = sorted(
        DEBIAN_POSTGRES_ROOT.glob("*/bin"),
        key=lambda p: int(p.parent.name) if p.parent.name.isdigit() else 0,
        reverse=True,
    )
    on_path = shutil.which("initdb")
    if on_path:
        candidates.append(Path(on_path).resolve().parent)
    for bindir in candidates:
        if all((bindir / tool).exists() for tool in ("initdb", "pg_ctl", "postgres")):
            version = subprocess.run(
                [str(bindir / "postgres"), "--version"], capture_output=True, text=True, timeout=10
            ).stdout
            match = re.search(r"(\d+)(?:\.\d+)?", version)
            major = int(match.group(1)) if match else 0
            pg_config = bindir / "pg_config"
            if pg_config.exists():
                sharedir = Path(
                    subprocess.run(
                        [str(pg_config), "--sharedir"], capture_output=True, text=True, timeout=10
                    ).stdout.strip()
                )
            else:
                sharedir = Path(f"/usr/share/postgresql/{major}")
            return PostgresInstall(bindir=bindir, major=major, sharedir=sharedir)
    raise SoftwareMissing(
        "PostgreSQL is not installed on this machine: install it with "
        "`sudo apt-get install postgresql postgresql-postgis` (Debian/Ubuntu), "
        "or set TWIN_DATABASE_URL to an existing PostGIS database."
    )


@dataclass(frozen=True)
class ClusterStatus:
    """What ``twin db status`` reports about the embedded cluster."""

    running: bool
    pid: int | None
    data_dir: Path
    socket_dir: Path


class EmbeddedCluster:
    """A private PostgreSQL cluster under ``home``, created and started on demand.

    Parameters
    ----------
    home : Path
        The twin's data directory (``TWIN_HOME``); the cluster keeps its files in
        ``home/postgres`` (or, as root, where the cluster account can reach them).
    cluster_user : str
        The account the cluster runs under when twin runs as root.
    """

    def __init__(self, home: Path, cluster_user: str = "postgres") -> None:
        self.home = Path(home).absolute()
        self.cluster_user = cluster_user

    # -- where things are ---------------------------------------------------------------

    @property
    def _link(self) -> Path:
        return self.home / "postgres"

    @property
    def root(self) -> Path:
        """The directory holding the cluster's data, socket and log."""
        return self._link.resolve()

    @property
    def data_dir(self) -> Path:
        """PostgreSQL's data directory."""
        return self.root / "data"

    @property
    def log_file(self) -> Path:
        """The server's log."""
        return self.root / "server.log"

    @property
    def socket_dir(self) -> Path:
        """The private directory where the server's Unix socket lives."""
        candidate = self.root / "run"
        if len(str(candidate)) <= MAX_SOCKET_DIR_LEN:
            return candidate
        digest = hashlib.sha256(str(self.root).encode()).hexdigest()[:16]
        return Path("/tmp") / f"twin-{digest}"

    @property
    def url(self) -> URL:
        """The SQLAlchemy URL of the cluster's ``twin`` database."""
        return URL.create(
            "postgresql+psycopg",
            username=SUPERUSER,
            database=DATABASE_NAME,
            query={"host": str(self.socket_dir)},
        )

    # -- who runs it --------------------------------------------------------------------

    @property
    def _as_root(self) -> bool:
        return os.geteuid() == 0

    def _run_account(self) -> pwd.struct_passwd:
        if not self._as_root:
            return pwd.getpwuid(os.geteuid())
        try:
            return pwd.getpwnam(self.cluster_user)
        except KeyError:
            raise ClusterError(
                f"twin runs as root, so the embedded database must run under an unprivileged "
                f"account, and account '{self.cluster_user}' does not exist: create it with "
                f"`useradd --system {self.cluster_user}` or set TWIN_CLUSTER_USER to another."
            ) from None

    def _run(
        self, args: list[str], *, timeout: float = 60, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run a PostgreSQL tool as the cluster's account."""
        kwargs: dict = {}
        if self._as_root:
            account = self._run_account()
            kwargs = {"user": account.pw_uid, "group": account.pw_gid, "extra_groups": []}
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = "C.UTF-8"
        try:
            result = subprocess.run(
                args,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd="/",
                stdin=subprocess.DEVNULL,
                **kwargs,
            )
        except subprocess.TimeoutExpired:
            raise ClusterError(
                f"`{Path(args[0]).name}` did not finish within {timeout:.0f} s; "
                f"see the server log {self.log_file}."
            ) from None
        if check and result.returncode != 0:
            detail = (result.stderr or result.stdout).strip().splitlines()
            tool = " ".join([Path(args[0]).name, *args[1:2]])
            raise ClusterError(
                f"`{tool}` failed for the embedded database in {self.data_dir}: "
                f"{detail[-1] if detail else 'no output'}"
            )
        return result

    def _pg_ctl(self, install: PostgresInstall, action: str) -> None:
        if action == "start":
            args = ["-l", str(self.log_file), "-o", f"-k {self.socket_dir}"]
        else:
            args = ["-m", "fast"]
        self._run(
            [
                str(install.bindir / "pg_ctl"),
                action,
                "--wait",
                f"--timeout={START_TIMEOUT_S}",
                "-D",
                str(self.data_dir),
                *args,
            ],
            timeout=START_TIMEOUT_S + 10,
        )

    def _can_reach(self, account: pwd.struct_passwd, path: Path) -> bool:
        probe = subprocess.run(
            ["test", "-x", str(path)],
            user=account.pw_uid,
            group=account.pw_gid,
            extra_groups=[],
            capture_output=True,
        )
        return probe.returncode == 0

    # -- life cycle ---------------------------------------------------------------------

    @contextmanager
    def _lock(self) -> Iterator[None]:
        """Serialise set-up and start between twin processes sharing this home."""
        self.home.mkdir(parents=True, exist_ok=True)
        with open(self.home / ".cluster.lock", "w") as handle:
            fcntl.flock(handle, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(handle, fcntl.LOCK_UN)

    def status(self) -> ClusterStatus:
        """Tell whether the cluster is running, from its ``postmaster.pid``."""
        pid = self._running_pid()
        return ClusterStatus(
            running=pid is not None, pid=pid, data_dir=self.data_dir, socket_dir=self.socket_dir
        )

    def _running_pid(self) -> int | None:
        pid_file = self.data_dir / "postmaster.pid"
        try:
            pid = int(pid_file.read_text().splitlines()[0])
        except (FileNotFoundError, IndexError, ValueError, PermissionError):
            return None
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return None
        except PermissionError:
            pass  # alive, owned by another account
        cmdline = Path(f"/proc/{pid}/cmdline")
        if cmdline.exists() and b"postgres" not in cmdline.read_bytes():
            return None  # a stale pid file whose number was reused
        return pid

    def is_initialised(self) -> bool:
        """Whether the cluster's data directory has been created."""
        return (self.data_dir / "PG_VERSION").is_file()

    def start(self) -> bool:
        """Create the cluster if needed and start it; return False if it was already running."""
        with self._lock():
            if self._running_pid() is not None:
                return False
            install = find_postgres()
            if not install.has_postgis:
                raise SoftwareMissing(
                    f"PostGIS is not installed for PostgreSQL {install.major}: install it with "
                    f"`sudo apt-get install {install.postgis_package()}`."
                )
            if not self.is_initialised():
                self._initialise(install)
            self._check_ownership()
            self._prepare_socket_dir()
            self._pg_ctl(install, "start")
            return True

    def stop(self) -> bool:
        """Stop the cluster; return False if it was not running."""
        with self._lock():
            if self._running_pid() is None:
                return False
            install = find_postgres()
            self._pg_ctl(install, "stop")
            return True

    def destroy(self) -> None:
        """Stop the cluster and delete all of its files."""
        self.stop()
        with self._lock():
            if self.root.exists():
                shutil.rmtree(self.root)
            if self._link.is_symlink():
                self._link.unlink()
            if self.socket_dir.exists():
                shutil.rmtree(self.socket_dir, ignore_errors=True)

    def _choose_root(self, account: pwd.struct_passwd) -> None:
        """Place the cluster's files in ``home/postgres``, or where the account can reach them."""
        if self._link.exists() or self._link.is_symlink():
            return
        if self._as_root and not self._can_reach(account, self.home):
            # The account cannot traverse to TWIN_HOME (a checkout under /root, say), so the
            # files go to a shared place and TWIN_HOME keeps a link to them.
            digest = hashlib.sha256(str(self.home).encode()).hexdigest()[:16]
            shared = SHARED_CLUSTER_ROOT / digest
            shared.mkdir(parents=True, exist_ok=True)
            SHARED_CLUSTER_ROOT.chmod(0o755)
            SHARED_CLUSTER_ROOT.parent.chmod(0o755)
            self._link.symlink_to(shared)
        else:
            self._link.mkdir(parents=True)

    def _initialise(self, install: PostgresInstall) -> None:
        account = self._run_account()
        self.home.mkdir(parents=True, exist_ok=True)
        self._choose_root(account)
        if self.data_dir.exists() and any(self.data_dir.iterdir()):
            raise ClusterError(
                f"The embedded database's directory {self.data_dir} is not empty but holds no "
                f"PostgreSQL cluster; move it away or run `twin db reset`."
            )
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            os.chown(self.root, account.pw_uid, account.pw_gid)
            os.chown(self.data_dir, account.pw_uid, account.pw_gid)
        self.data_dir.chmod(0o700)
        self._run(
            [
                str(install.bindir / "initdb"),
                "-D",
                str(self.data_dir),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C.UTF-8",
            ],
            timeout=120,
        )
        # Only the private socket directory: no TCP port to clash with a system server.
        with open(self.data_dir / "postgresql.conf", "a") as conf:
            conf.write(
                "\n# set by twin\nlisten_addresses = ''\n"
                "fsync = on\nsynchronous_commit = on\nmax_wal_size = '2GB'\n"
            )
        self._prepare_socket_dir()
        self._pg_ctl(install, "start")
        socket_args = ["-h", str(self.socket_dir), "-U", SUPERUSER]
        self._run([str(install.bindir / "createdb"), *socket_args, DATABASE_NAME])
        self._run(
            [
                str(install.bindir / "psql"),
                *socket_args,
                "-d",
                DATABASE_NAME,
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                "CREATE EXTENSION IF NOT EXISTS postgis",
            ]
        )
        self._pg_ctl(install, "stop")

    def _check_ownership(self) -> None:
        owner_uid = self.data_dir.stat().st_uid
        account = self._run_account()
        if owner_uid != account.pw_uid:
            try:
                owner = pwd.getpwuid(owner_uid).pw_name
            except KeyError:
                owner = f"uid {owner_uid}"
            raise ClusterError(
                f"The embedded database's directory {self.data_dir} belongs to '{owner}', but "
                f"twin runs it as '{account.pw_name}': run twin as '{owner}', or point TWIN_HOME "
                f"at a directory of your own."
            )

    def _prepare_socket_dir(self) -> None:
        account = self._run_account()
        self.socket_dir.mkdir(parents=True, exist_ok=True)
        if self._as_root:
            os.chown(self.socket_dir, account.pw_uid, account.pw_gid)
        # Private: with trust authentication, reaching the socket is the only key.
        self.socket_dir.chmod(0o700)
