"""Unique ids (jobs, locks, leases) and this process's id, without a system call each.

``uuid.uuid4()`` reads the kernel's random source and ``os.getpid()`` asks the kernel every time:
on a webhook request or a rules action that is two system calls, each of which also hands the
GIL to another thread. A generator seeded from the kernel once per process (again in a forked
child, as rq's workers fork) gives ids that are as unique; they are not secrets.
"""

from __future__ import annotations

import os
import random

_rng = random.Random()  # seeded from os.urandom
_pid = os.getpid()


def _after_fork() -> None:
    global _pid
    _rng.seed()  # a child must not repeat its parent's sequence
    _pid = os.getpid()


os.register_at_fork(after_in_child=_after_fork)


def new_id() -> str:
    """32 hex digits (128 random bits), like ``uuid.uuid4().hex``."""
    return f"{_rng.getrandbits(128):032x}"


def pid() -> int:
    """This process's id, kept up to date across forks."""
    return _pid
