"""The work directory is used only when it is ours alone; files in it are never followed through links."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from support.stack.work_dir import (
    UnsafeWorkDirError,
    open_lock,
    read_private_file,
    work_dir,
    write_private_file,
)
from tests.course_cli import support_cli

NOBODY = 65534


def _expected(own_work_dir: str) -> Path:
    return Path(own_work_dir) / f"five-tables-{os.geteuid()}"


def test_made_private_and_reused(own_work_dir):
    path = work_dir()
    assert path == _expected(own_work_dir)
    mode = stat.S_IMODE(os.lstat(path).st_mode)
    assert mode == (0o711 if os.geteuid() == 0 else 0o700), f"{mode:o}"
    assert work_dir() == path  # a second call accepts what the first made


def test_an_older_0755_directory_of_ours_is_accepted(own_work_dir):
    path = _expected(own_work_dir)
    path.mkdir(mode=0o755)
    os.chmod(path, 0o755)
    assert work_dir() == path


def test_a_symlinked_work_dir_is_refused_and_its_target_untouched(own_work_dir, tmp_path):
    target = tmp_path / "elsewhere"
    target.mkdir()
    _expected(own_work_dir).symlink_to(target)
    with pytest.raises(UnsafeWorkDirError) as caught:
        work_dir()
    message = str(caught.value)
    assert str(_expected(own_work_dir)) in message and "symbolic link" in message and "Fix:" in message
    assert list(target.iterdir()) == []


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can give a directory to another user")
def test_a_foreign_work_dir_is_refused_with_the_owner_named(own_work_dir):
    path = _expected(own_work_dir)
    path.mkdir(mode=0o755)
    planted = path / "template-pg15-r2"
    planted.mkdir()
    os.chown(path, NOBODY, NOBODY)
    with pytest.raises(UnsafeWorkDirError, match=r"belongs to nobody \(uid 65534\), not to you"):
        work_dir()
    assert planted.is_dir() and list(planted.iterdir()) == []  # nothing in it was touched


def test_a_work_dir_others_can_write_is_refused(own_work_dir):
    path = _expected(own_work_dir)
    path.mkdir()
    os.chmod(path, 0o777)
    with pytest.raises(UnsafeWorkDirError, match=r"can be written by other users \(mode 0777\).*chmod 700"):
        work_dir()


def test_a_file_in_its_place_is_refused(own_work_dir):
    _expected(own_work_dir).write_text("not a directory")
    with pytest.raises(UnsafeWorkDirError, match="is not a directory"):
        work_dir()


def test_a_world_writable_temp_folder_must_be_sticky(own_work_dir):
    os.chmod(own_work_dir, 0o777)
    with pytest.raises(UnsafeWorkDirError, match=r"writable by everyone but not sticky.*chmod \+t"):
        work_dir()
    os.chmod(own_work_dir, 0o1777)
    assert work_dir() == _expected(own_work_dir)


def test_writing_replaces_a_symlink_instead_of_following_it(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    state = tmp_path / "cli-stack.json"
    state.symlink_to(victim)
    write_private_file(state, '{"secret": 1}')
    assert victim.read_text() == "precious"
    assert not state.is_symlink() and stat.S_IMODE(state.lstat().st_mode) == 0o600
    assert read_private_file(state) == '{"secret": 1}'


def test_reading_refuses_links_and_files_others_can_read(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("{}")
    link = tmp_path / "link"
    link.symlink_to(victim)
    with pytest.raises(OSError):
        read_private_file(link)
    os.chmod(victim, 0o644)
    with pytest.raises(UnsafeWorkDirError, match="not a private file of yours"):
        read_private_file(victim)


def test_a_symlinked_lock_file_is_not_followed(tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    lock = tmp_path / "data-dirs.lock"
    lock.symlink_to(victim)
    with pytest.raises(OSError):
        open_lock(lock)
    assert victim.read_text() == "precious"  # not truncated


@pytest.mark.stack
def test_a_forged_state_file_makes_down_signal_nobody(own_work_dir):
    """`down` checks that the pid is a keeper of ours with the recorded token before it signals."""
    bystander = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        work = work_dir()
        forged = {"keeper_pid": bystander.pid, "keeper_token": "x", "directory": "/nowhere"}
        write_private_file(work / "cli-stack.json", json.dumps(forged))
        down = support_cli("down")
        assert down.returncode == 0 and "No course stack" in down.stdout, down.stdout + down.stderr
        assert bystander.poll() is None, "down signalled a process that is not its keeper"
        (work / "cli-stack.json").unlink()
        (work / "cli-stack.json").symlink_to("/etc/hostname")
        status = support_cli("status")
        assert status.returncode == 1 and "refusing" in status.stderr, status.stderr
    finally:
        bystander.kill()
        bystander.wait()
