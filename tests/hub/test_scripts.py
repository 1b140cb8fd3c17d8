"""hub.scripts on a real redis-server: loading, error replies, restarts, unix sockets."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from hub import jobs, scripts
from hub.scripts import Script
from tests.support.monitor import commands
from tests.support.procs import RedisServer

INCR = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])")


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    server = RedisServer(tmp_path / "redis", unixsocket=True).start()
    yield server
    server.stop()


def test_a_script_loads_itself_when_redis_does_not_know_it(redis_conn: redis.Redis) -> None:
    redis_conn.script_flush()
    assert INCR(redis_conn, ["hub:test:n"], [2]) == 2
    redis_conn.script_flush()
    assert INCR(redis_conn, ["hub:test:n"], [3]) == 5


def test_an_error_reply_is_raised_and_the_connection_stays_usable(redis_conn: redis.Redis) -> None:
    failing = Script("return redis.error_reply('NOPE broken on purpose')")
    with pytest.raises(redis.ResponseError, match="broken on purpose"):
        failing(redis_conn, [])
    assert INCR(redis_conn, ["hub:test:n"], [1]) == 1


def test_after_a_redis_restart_stale_connections_are_replaced(own_redis: RedisServer) -> None:
    conn = redis.Redis.from_url(own_redis.url)
    repeatable = Script("return redis.call('INCRBY', KEYS[1], ARGV[1])", repeatable=True)
    assert INCR(conn, ["n"], [1]) == 1 and repeatable(conn, ["n"], [1]) == 2
    own_redis.restart()  # the idle connections are now stale (no AOF: the key is gone)
    assert INCR(conn, ["n"], [5]) == 5  # sent again on a new connection: the stale one never ran it
    assert scripts.pipeline(conn, [("INCR", "n")]) == [6]
    own_redis.stop()
    with pytest.raises(redis.ConnectionError):
        INCR(conn, ["n"], [1])  # Redis is really gone: the caller hears it
    own_redis.start()
    assert INCR(conn, ["n"], [1]) == 1


def test_redis_over_a_unix_socket(own_redis: RedisServer) -> None:
    conn = jobs.connect(own_redis.socket_url)
    assert conn.ping()
    assert INCR(conn, ["n"], [4]) == 4
    assert int(redis.Redis.from_url(own_redis.url).get("n") or 0) == 4


def test_plain_commands_in_one_round_trip_answer_in_order(redis_conn: redis.Redis) -> None:
    replies = scripts.pipeline(redis_conn, [("HSET", "hub:test:h", "a", "1", "b", "2"), ("HGETALL", "hub:test:h")])
    flat = replies[1] if isinstance(replies[1], list) else [x for kv in replies[1].items() for x in kv]
    assert replies[0] == 2 and sorted(flat) == [b"1", b"2", b"a", b"b"]
    with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
        scripts.pipeline(redis_conn, [("HSET", "hub:test:h", "c", "3"), ("INCR", "hub:test:h")])
    assert scripts.pipeline(redis_conn, [("HGET", "hub:test:h", "c")]) == [b"3"]  # read every reply: still in step


def test_a_transaction_sent_past_redis_py_is_one_multi_exec_and_a_failed_command_is_raised(
    redis_conn: redis.Redis,
) -> None:
    redis_conn.set("hub:test:str", "x")
    with redis_conn.pipeline() as pipe, commands(redis_conn) as sent:
        pipe.hset("hub:test:h", "a", "1")
        pipe.expire("hub:test:h", 60)
        scripts.transaction(pipe)
        assert pipe.command_stack == []  # sent once, not again by a later one
        scripts.transaction(pipe)  # nothing queued: nothing sent
    assert redis_conn.hget("hub:test:h", "a") == b"1" and 0 < redis_conn.ttl("hub:test:h") <= 60
    assert [c.split()[0] for c in sent if not c.startswith(("HELLO", "CLIENT"))] == ["MULTI", "HSET", "EXPIRE", "EXEC"]
    with redis_conn.pipeline() as pipe:
        pipe.hset("hub:test:h", "b", "2")
        pipe.hset("hub:test:str", "a", "1")  # WRONGTYPE inside EXEC: rq would have had it raised
        with pytest.raises(redis.ResponseError, match="WRONGTYPE"):
            scripts.transaction(pipe)


def test_every_call_of_a_batch_runs_once_while_redis_forgets_and_learns_its_scripts(
    own_redis: RedisServer,
) -> None:
    """Batches of a script that is not repeatable, while another client flushes the script cache
    (a restart) and loads the script (another worker) again and again: a call that ran is never run
    again, and the reply returned for it is that of its one run, whether the batch returns or raises.
    (Sent again whole, the calls that ran before NOSCRIPT ran twice, their second reply returned.)
    Each call carries 1 KB, as the sync's do: Redis reads a batch 16 KB at a time and serves the
    other client in between."""
    counter = Script("return redis.call('INCR', KEYS[1])")
    conn = redis.Redis.from_url(own_redis.url)
    other = redis.Redis.from_url(own_redis.url)
    done = threading.Event()

    def forget_and_learn() -> None:
        while not done.is_set():
            other.script_flush()
            time.sleep(0.002)
            other.script_load(counter.text)

    flusher = threading.Thread(target=forget_and_learn)
    flusher.start()
    returned = raised = 0
    pad = "x" * 1024
    try:
        deadline = time.monotonic() + 3.0
        for batch in range(2000):
            if time.monotonic() > deadline:
                break
            keys = [f"b{batch}:{i}" for i in range(200)]
            try:
                replies = counter.many(conn, [([k], [pad]) for k in keys])
            except redis.exceptions.NoScriptError:
                raised += 1
                assert set(conn.mget(keys)) <= {None, b"1"}, f"batch {batch}: a call ran twice"
            else:
                returned += 1
                assert replies == [1] * len(keys), f"batch {batch}: replies of calls run twice"
                assert set(conn.mget(keys)) == {b"1"}, f"batch {batch}: returned, a call not run or run twice"
    finally:
        done.set()
        flusher.join()
    missed = int(conn.info("errorstats").get("errorstat_NOSCRIPT", {}).get("count", 0))
    assert missed > 0 and returned > 0, (missed, returned, raised)  # the scripts were forgotten mid-run
