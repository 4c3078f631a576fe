import os
import pwd
import shutil
from pathlib import Path

import pytest

from geo import cluster as cluster_module
from geo.cluster import EmbeddedCluster, PostgresInstall, find_postgres
from geo.database import create_engine, ensure_postgis
from geo.errors import ClusterError, SoftwareMissing

CLUSTER_USER = os.environ.get("TWIN_CLUSTER_USER", "postgres")


def test_start_twice_finds_the_running_cluster_and_stop_stops_it(tmp_path):
    embedded = EmbeddedCluster(tmp_path / "home", CLUSTER_USER)
    try:
        assert embedded.start() is True
        first = embedded.status()
        assert first.running and first.pid
        # a second twin process (a new object on the same home) finds it
        again = EmbeddedCluster(tmp_path / "home", CLUSTER_USER)
        assert again.start() is False
        assert again.status().pid == first.pid
        info = ensure_postgis(create_engine(again.url))
        assert info.postgis_version.startswith("3.")
        assert embedded.stop() is True
        assert not embedded.status().running
        assert embedded.stop() is False
        # and it starts again on its existing data
        assert embedded.start() is True
    finally:
        embedded.destroy()
    assert not (tmp_path / "home" / "postgres").exists()


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand a directory to another account")
def test_data_directory_owned_by_someone_else_is_refused(tmp_path):
    home = tmp_path / "home"
    data = home / "postgres" / "data"
    data.mkdir(parents=True)
    (data / "PG_VERSION").write_text("15\n")
    nobody = pwd.getpwnam("nobody")
    os.chown(data, nobody.pw_uid, nobody.pw_gid)
    embedded = EmbeddedCluster(home, CLUSTER_USER)
    with pytest.raises(ClusterError, match=r"belongs to 'nobody'.*TWIN_HOME"):
        embedded.start()


@pytest.mark.skipif(os.geteuid() != 0, reason="the cluster account is used only as root")
def test_unknown_cluster_account_is_named(tmp_path):
    with pytest.raises(ClusterError, match="account 'no-such-account' does not exist"):
        EmbeddedCluster(tmp_path, "no-such-account").start()


def test_missing_postgresql_names_the_packages(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_module, "DEBIAN_POSTGRES_ROOT", tmp_path)
    monkeypatch.setattr(shutil, "which", lambda name: None)
    with pytest.raises(SoftwareMissing, match="apt-get install postgresql postgresql-postgis"):
        find_postgres()


def test_missing_postgis_names_the_package(tmp_path, monkeypatch):
    real = find_postgres()
    without = PostgresInstall(bindir=real.bindir, major=real.major, sharedir=tmp_path)
    monkeypatch.setattr(cluster_module, "find_postgres", lambda: without)
    with pytest.raises(SoftwareMissing, match=f"apt-get install postgresql-{real.major}-postgis-3"):
        EmbeddedCluster(tmp_path / "home", CLUSTER_USER).start()


def test_long_home_paths_keep_the_socket_path_short(tmp_path):
    home = tmp_path / ("deep" * 30)
    embedded = EmbeddedCluster(home, CLUSTER_USER)
    assert len(str(embedded.socket_dir / ".s.PGSQL.5432")) <= 107
    assert EmbeddedCluster(home, CLUSTER_USER).socket_dir == embedded.socket_dir
    assert isinstance(embedded.socket_dir, Path)
