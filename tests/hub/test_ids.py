"""Ids made without a system call stay unique, also across the forks rq's workers make."""

from __future__ import annotations

import os
import re

from hub import ids


def test_ids_look_like_uuid4_hex_and_do_not_repeat() -> None:
    made = [ids.new_id() for _ in range(20000)]
    assert all(re.fullmatch(r"[0-9a-f]{32}", i) for i in made)
    assert len(set(made)) == len(made)


def test_a_forked_child_makes_other_ids_and_knows_its_pid() -> None:
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: its next ids and its pid, through the pipe
        try:
            os.write(write_end, f"{ids.new_id()} {ids.new_id()} {ids.pid()}".encode())
        finally:
            os._exit(0)
    os.close(write_end)
    with os.fdopen(read_end) as pipe:
        first, second, child_pid = pipe.read().split()
    os.waitpid(pid, 0)
    ours = {ids.new_id(), ids.new_id()}  # what the parent's generator gives next
    assert not ours & {first, second}  # without a reseed the child would repeat these
    assert int(child_pid) == pid
    assert ids.pid() == os.getpid()
