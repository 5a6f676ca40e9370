"""An asyncpg pool against a running Cairn server (run by the end-to-end test
`hostile::an_asyncpg_pool_could_not_take_a_connection_back`): releasing a connection runs
asyncpg's reset query (`SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET
ALL;`), which failed with "no such function". Advisory locks are checked on the way: a lock
held by one connection is not free to another until it is released, or until the holder's
connection goes back to the pool.

Usage: python3 pools.py HOST PORT USER PASSWORD DATABASE
"""

import asyncio
import sys

try:
    import asyncpg
except ImportError as missing:
    sys.exit(f"{missing}: this test needs asyncpg (.ci/run installs it: pip install asyncpg)")

HOST, PORT, USER, PASSWORD, DATABASE = sys.argv[1:6]

# What the lock functions answer, in the type the server describes them with today
# (PostgreSQL's boolean; Cairn types an untyped expression's column as text).
YES = (True, 1, "1", "t")
NO = (False, 0, "0", "f")


async def main():
    pool = await asyncpg.create_pool(
        host=HOST, port=int(PORT), user=USER, password=PASSWORD, database=DATABASE,
        min_size=2, max_size=2,
    )
    for round in range(3):
        async with pool.acquire() as conn:
            assert await conn.fetchval("SELECT 1") == 1, round

    first = await pool.acquire()
    second = await pool.acquire()
    await first.execute("SELECT pg_advisory_lock(42)")
    # Re-entrant, as in PostgreSQL: twice locked, twice unlocked.
    await first.execute("SELECT pg_advisory_lock(42)")
    assert await second.fetchval("SELECT pg_try_advisory_lock(42)") in NO
    assert await first.fetchval("SELECT pg_advisory_unlock(42)") in YES
    assert await second.fetchval("SELECT pg_try_advisory_lock(42)") in NO
    assert await first.fetchval("SELECT pg_advisory_unlock(42)") in YES
    assert await first.fetchval("SELECT pg_advisory_unlock(42)") in NO, "not held"
    assert await second.fetchval("SELECT pg_try_advisory_lock(42)") in YES

    # A waiter gets the lock when the holder's connection goes back to the pool (its reset
    # unlocks everything it held).
    waiting = asyncio.ensure_future(first.execute("SELECT pg_advisory_lock(42)"))
    await asyncio.sleep(0.2)
    assert not waiting.done(), "the lock was taken while another connection held it"
    await pool.release(second)
    await asyncio.wait_for(waiting, 10)
    # A two-key lock is another lock.
    assert await first.fetchval("SELECT pg_try_advisory_lock(4, 2)") in YES
    await pool.release(first)
    await pool.close()
    print("ok")


asyncio.run(main())
