"""eventlake/store/atomicfile.py: a file is replaced whole or not at all."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from eventlake.store.atomicfile import atomic_path, atomic_write


class Boom(Exception):
    pass


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".partial"))


def test_text_and_binary_writes_replace_the_file(tmp_path):
    target = tmp_path / "out.csv"
    target.write_text("old\n")
    with atomic_write(target, newline="") as handle:
        handle.write("a,b\r\n1,2\n")
        assert target.read_text() == "old\n"  # nothing shows before the block ends
    assert target.read_bytes() == b"a,b\r\n1,2\n"
    with atomic_write(target, "wb") as raw:
        raw.write(b"\x00\xff")
    assert target.read_bytes() == b"\x00\xff"
    assert leftovers(tmp_path) == []


def test_a_new_file_gets_the_mode_open_would_give(tmp_path):
    umask = os.umask(0o022)
    os.umask(umask)
    with atomic_write(tmp_path / "new.txt") as handle:
        handle.write("x")
    assert (tmp_path / "new.txt").stat().st_mode & 0o777 == 0o666 & ~umask


@pytest.mark.parametrize("error", [Boom, KeyboardInterrupt])
@pytest.mark.parametrize("mode", ["w", "wb", "path"])
def test_a_failure_mid_write_leaves_the_old_file_and_no_temporary(tmp_path, mode, error):
    target = tmp_path / "result.bin"
    target.write_bytes(b"the old content")
    with pytest.raises(error):
        if mode == "path":
            with atomic_path(target) as temporary:
                temporary.write_bytes(b"half of the new")
                raise error()
        else:
            with atomic_write(target, mode) as handle:  # type: ignore[call-overload]
                handle.write("half" if mode == "w" else b"half")
                handle.flush()
                raise error()
    assert target.read_bytes() == b"the old content"
    assert leftovers(tmp_path) == []


def test_a_failure_before_any_file_existed_leaves_nothing(tmp_path):
    with pytest.raises(Boom), atomic_write(tmp_path / "never.txt") as handle:
        handle.write("x")
        raise Boom
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_names_the_target_not_the_temporary(tmp_path):
    target = tmp_path / "no" / "such" / "init.sql"
    with pytest.raises(FileNotFoundError) as raised, atomic_write(target):
        pass
    assert raised.value.filename == str(target)


@settings(max_examples=40, deadline=None)
@given(old=st.binary(max_size=64), chunks=st.lists(st.binary(max_size=32), max_size=6),
       fail_at=st.one_of(st.none(), st.integers(min_value=0, max_value=6)))
def test_readers_see_the_old_or_the_whole_new_content(tmp_path_factory, old, chunks, fail_at):
    folder = tmp_path_factory.mktemp("atomic")
    target = folder / "f"
    target.write_bytes(old)
    failed = fail_at is not None and fail_at <= len(chunks)
    try:
        with atomic_write(target, "wb") as handle:
            for index, chunk in enumerate(chunks):
                if index == fail_at:
                    raise Boom
                handle.write(chunk)
                handle.flush()
                assert target.read_bytes() == old
            if fail_at == len(chunks):
                raise Boom
    except Boom:
        assert failed
    assert target.read_bytes() == (old if failed else b"".join(chunks))
    assert leftovers(folder) == []


def test_a_killed_writer_leaves_the_old_file(tmp_path):
    target = tmp_path / "quarantine.jsonl"
    target.write_text("old\n")
    child = ("import os, sys\n"
             "from eventlake.store.atomicfile import atomic_write\n"
             "with atomic_write(sys.argv[1]) as handle:\n"
             "    handle.write('new, half written')\n"
             "    handle.flush()\n"
             "    os._exit(9)\n")
    done = subprocess.run([sys.executable, "-c", child, str(target)], timeout=60)
    assert done.returncode == 9
    assert target.read_text() == "old\n"
    # The one trace of the crash is a hidden temporary file, which listings skip.
    (left,) = leftovers(tmp_path)
    assert left.startswith(".quarantine.jsonl.")
