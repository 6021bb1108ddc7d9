"""Phase deadlines on one loop timer: what fires, when, and what a disarm prevents."""

from __future__ import annotations

import asyncio

from meshpilot.xds.deadlines import Deadlines


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_an_armed_deadline_fires_once_after_its_delay() -> None:
    async def main() -> tuple[list[float], float]:
        loop = asyncio.get_running_loop()
        deadlines, fired = Deadlines(), []
        start = loop.time()
        deadlines.arm("a", 0.05, lambda: fired.append(loop.time() - start))
        await asyncio.sleep(0.2)
        return fired, len(deadlines)

    fired, left = run(main())
    assert len(fired) == 1 and fired[0] >= 0.05 and left == 0


def test_disarmed_and_replaced_deadlines_do_not_fire() -> None:
    async def main() -> list[str]:
        deadlines, fired = Deadlines(), []
        deadlines.arm("a", 0.02, lambda: fired.append("a"))
        deadlines.arm("b", 0.02, lambda: fired.append("b"))
        deadlines.disarm("a")  # ACKed in time
        deadlines.arm("b", 0.08, lambda: fired.append("b again"))  # the next phase's
        await asyncio.sleep(0.05)
        early = list(fired)
        await asyncio.sleep(0.1)
        return [*early, "|", *fired]

    assert run(main()) == ["|", "b again"]


def test_many_owners_fire_in_deadline_order_on_few_timer_calls() -> None:
    async def main() -> tuple[list[int], bool]:
        deadlines, fired = Deadlines(), []
        for i in range(200):
            deadlines.arm(i, 0.01 + (199 - i) * 0.0002, lambda i=i: fired.append(i))
        for i in range(0, 200, 2):
            deadlines.disarm(i)
        await asyncio.sleep(0.3)
        return fired, deadlines.armed(1)

    fired, still = run(main())
    assert sorted(fired) == list(range(1, 200, 2)) and not still
    # coalesced ticks fire what is due together; across ticks, later deadlines come later
    assert fired.index(199) < fired.index(1)
