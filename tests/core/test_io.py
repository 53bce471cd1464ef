"""Ground-floor io: atomic writes leave the old file or the new one, and a dead writer's
temporary files are removed while a live one's are kept."""

import os
import subprocess
import sys

import pytest

from compbench.core.io import atomic_path, remove_stale_temporaries, sha256_file, write_text_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    path = tmp_path / "report.md"
    write_text_atomic(path, "old")
    with pytest.raises(RuntimeError), atomic_path(path) as tmp:
        tmp.write_text("half")
        raise RuntimeError("killed mid-write")
    assert path.read_text() == "old"
    assert [p.name for p in tmp_path.iterdir()] == ["report.md"]


def test_temporaries_of_dead_writers_are_removed_and_live_ones_kept(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True).stdout.strip()
    stale = tmp_path / f"run.json.compbench-{dead}-abc.tmp"
    live = tmp_path / f"run.json.compbench-{os.getpid()}-def.tmp"
    foreign = tmp_path / "someone-else.tmp"
    for path in (stale, live, foreign):
        path.write_text("{")
    staging = tmp_path / f".exported.compbench-{dead}-staging"  # an export killed mid-save
    staging.mkdir()
    (staging / "config.json").write_text("{")
    assert remove_stale_temporaries(tmp_path) == [staging, stale]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([live.name, foreign.name])


def test_sha256_sees_a_change_that_keeps_the_size(tmp_path):
    path = tmp_path / "weights.bin"
    path.write_bytes(b"\x01" * 4096)
    before = sha256_file(path)
    with path.open("r+b") as handle:
        handle.seek(100)
        handle.write(b"\x00")
    os.utime(path, ns=(path.stat().st_atime_ns, path.stat().st_mtime_ns + 1))
    assert path.stat().st_size == 4096 and sha256_file(path) != before
