"""Building our C++ kernels: a lock left by a killed build must not hang the next one (torch's loader waits
for the lock file forever; checked by hand), while a build in progress keeps its lock."""

import os
import time

from ticketlab.accel import extensions


def test_a_stale_build_lock_is_removed_and_a_fresh_one_kept(tmp_path):
    stale, fresh = tmp_path / "stale", tmp_path / "fresh"
    for build in (stale, fresh):
        build.mkdir()
        (build / "lock").write_text("")
    old = time.time() - extensions.STALE_LOCK_SECONDS - 60
    os.utime(stale / "lock", (old, old))
    extensions.clear_stale_lock(stale)
    extensions.clear_stale_lock(fresh)
    assert not (stale / "lock").exists() and (fresh / "lock").exists()
    extensions.clear_stale_lock(tmp_path / "never-built")  # no directory yet: nothing to do
