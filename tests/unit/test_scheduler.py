"""Scheduling for processing at feed rate: per-patient order, bounded concurrency, batching, coalescing."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Hashable

import pytest

from adapter.service.processor import patient_keys
from adapter.service.scheduler import Batcher, Coalescer, Turns
from adapter.service.sources import Source


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


def test_jobs_on_one_patient_run_one_at_a_time_in_the_order_their_turns_were_taken() -> None:
    async def main() -> list[tuple[str, int]]:
        turns = Turns(limit=8)
        log: list[tuple[str, int]] = []
        running: set[str] = set()

        async def job(n: int, patient: str, turn) -> None:  # type: ignore[no-untyped-def]
            async with turn:
                assert patient not in running, "two jobs on one patient at once"
                running.add(patient)
                await asyncio.sleep(random.uniform(0, 0.01))  # later jobs would overtake
                log.append((patient, n))
                running.discard(patient)

        random.seed(3)
        jobs = [(n, random.choice("abc")) for n in range(60)]
        tasks = [asyncio.create_task(job(n, p, turns.take([p]))) for n, p in jobs]
        await asyncio.gather(*tasks)
        assert turns.busy_keys == 0
        return log

    log = run(main())
    for patient in "abc":
        order = [n for p, n in log if p == patient]
        assert order == sorted(order)


def test_a_job_on_two_patients_waits_for_both_and_different_patients_run_concurrently() -> None:
    async def main() -> list[str]:
        turns = Turns(limit=8)
        events: list[str] = []
        release_a = asyncio.Event()

        async def job(name: str, turn, until: asyncio.Event | None = None) -> None:  # type: ignore[no-untyped-def]
            async with turn:
                events.append(f"{name} start")
                if until is not None:
                    await until.wait()
                events.append(f"{name} end")

        first = asyncio.create_task(job("a", turns.take(["p1"]), release_a))
        both = asyncio.create_task(job("ab", turns.take(["p1", "p2"])))
        other = asyncio.create_task(job("c", turns.take(["p3"])))
        await asyncio.sleep(0.01)
        assert events == ["a start", "c start", "c end"]  # p3 does not wait for p1
        release_a.set()
        await asyncio.gather(first, both, other)
        return events

    events = run(main())
    assert events.index("ab start") > events.index("a end")


def test_concurrency_is_bounded_and_a_waiting_job_holds_no_slot() -> None:
    async def main() -> int:
        turns = Turns(limit=3)
        active = 0
        peak = 0

        async def job(turn) -> None:  # type: ignore[no-untyped-def]
            nonlocal active, peak
            async with turn:
                active += 1
                peak = max(peak, active)
                await asyncio.sleep(0.005)
                active -= 1

        # Many jobs on one patient first: they wait for each other without taking the 3 slots.
        tasks = [asyncio.create_task(job(turns.take(["busy"]))) for _ in range(10)]
        tasks += [asyncio.create_task(job(turns.take([f"p{n}"]))) for n in range(20)]
        await asyncio.wait_for(asyncio.gather(*tasks), timeout=5)
        return peak

    assert run(main()) == 3


def test_a_turn_released_without_being_entered_lets_the_next_job_go() -> None:
    async def main() -> bool:
        turns = Turns(limit=2)
        failed = turns.take(["p"])  # e.g. a payload whose parsing failed
        after = turns.take(["p"])
        failed.release()
        async with after:
            return True

    assert run(asyncio.wait_for(main(), timeout=2))


def test_the_batcher_groups_items_of_one_group_and_gives_each_its_own_result_or_error() -> None:
    calls: list[tuple[Hashable, list[int]]] = []

    async def send(group: Hashable, items: list[int]) -> list[int | BaseException]:
        calls.append((group, items))
        return [ValueError(i) if i == 13 else i * 10 for i in items]

    async def main() -> list[object]:
        batcher: Batcher[int, int] = Batcher(send, linger=0.01, max_size=100)
        work = [batcher.submit("lab", i) for i in (1, 2, 13, 4)] + [batcher.submit("adt", 5)]
        return await asyncio.gather(*work, return_exceptions=True)

    results = run(main())
    assert results[:2] == [10, 20] and isinstance(results[2], ValueError) and results[3:] == [40, 50]
    assert sorted(calls) == [("adt", [5]), ("lab", [1, 2, 13, 4])]


def test_the_batcher_never_puts_more_than_max_size_in_one_call() -> None:
    sizes: list[int] = []

    async def send(_group: Hashable, items: list[int]) -> list[int | BaseException]:
        sizes.append(sum(items))
        return list(items)

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(send, linger=0.01, max_size=10, size=lambda i: i)
        await asyncio.gather(*(batcher.submit("s", 4) for _ in range(7)))

    run(main())
    assert sum(sizes) == 28 and max(sizes) <= 10 and len(sizes) == 4


def test_a_patient_touched_by_many_payloads_in_a_burst_is_screened_once() -> None:
    rounds: list[list[str]] = []

    async def screen(keys: list[str]) -> dict[str, str | BaseException]:
        rounds.append(keys)
        await asyncio.sleep(0.01)
        return {k: f"screened {k}" for k in keys}

    async def main() -> list[dict[str, str]]:
        coalescer: Coalescer[str] = Coalescer(screen, linger=0.02)
        try:
            return await asyncio.gather(*(coalescer.request(["p1", f"q{n}"]) for n in range(20)))
        finally:
            await coalescer.close()

    answers = run(main())
    assert all(a["p1"] == "screened p1" for a in answers)
    assert sum(r.count("p1") for r in rounds) == 1 and len(rounds) == 1


def test_a_request_made_while_a_round_runs_gets_a_later_round_that_reads_its_data() -> None:
    started: list[tuple[str, int]] = []
    written = {"p1": 0}

    async def screen(keys: list[str]) -> dict[str, int | BaseException]:
        seen = dict(written)  # what the round reads, at its start
        started.append(("round", seen["p1"]))
        await asyncio.sleep(0.05)
        return {k: seen[k] for k in keys}

    async def main() -> tuple[dict[str, int], dict[str, int]]:
        coalescer: Coalescer[int] = Coalescer(screen, linger=0.0)
        written["p1"] = 1
        first = asyncio.create_task(coalescer.request(["p1"]))
        await asyncio.sleep(0.02)  # the first round is running
        written["p1"] = 2
        second = await coalescer.request(["p1"])
        await coalescer.close()
        return await first, second

    first, second = run(main())
    assert first == {"p1": 1} and second == {"p1": 2}  # never answered by a round that missed its write


def test_a_failed_patient_fails_only_the_requests_that_asked_for_it() -> None:
    async def screen(keys: list[str]) -> dict[str, str | BaseException]:
        return {k: RuntimeError("server") if k == "bad" else "ok" for k in keys}

    async def main() -> list[object]:
        coalescer: Coalescer[str] = Coalescer(screen, linger=0.01)
        out = await asyncio.gather(
            coalescer.request(["good"]), coalescer.request(["good", "bad"]), return_exceptions=True
        )
        await coalescer.close()
        return out

    good, bad = run(main())
    assert good == {"good": "ok"} and isinstance(bad, RuntimeError)


@pytest.mark.parametrize(
    ("entry", "key"),
    [
        (
            {"resourceType": "Patient", "id": "e1", "identifier": [{"system": "urn:mrn", "value": "7"}]},
            "identifier urn:mrn|7",
        ),
        (
            {"resourceType": "Observation", "subject": {"reference": "Patient?identifier=urn:mrn|7"}},
            "identifier urn:mrn|7",
        ),
        ({"resourceType": "Observation", "subject": {"reference": "Patient/123"}}, "Patient/123"),
    ],
)
def test_a_payload_is_keyed_by_the_patient_it_names_however_it_names_them(entry: dict, key: str) -> None:
    source = Source("lab", frozenset({"urn:mrn"}))
    assert key in patient_keys({"entry": [{"resource": entry}]}, source)


def test_two_payloads_reusing_an_engine_id_for_different_patients_do_not_wait_for_each_other() -> None:
    source = Source("lab", frozenset({"urn:mrn"}))

    def payload(mrn: str) -> dict:
        patient = {"resourceType": "Patient", "id": "1", "identifier": [{"system": "urn:mrn", "value": mrn}]}
        observation = {"resourceType": "Observation", "id": "9", "subject": {"reference": "Patient/1"}}
        return {"entry": [{"fullUrl": "Patient/1", "resource": patient}, {"resource": observation}]}

    assert patient_keys(payload("7"), source) == {"identifier urn:mrn|7"}
    assert not patient_keys(payload("7"), source) & patient_keys(payload("8"), source)


def test_while_a_batch_is_being_sent_new_items_gather_into_one_next_batch() -> None:
    calls: list[list[int]] = []

    async def send(_group: Hashable, items: list[int]) -> list[int | BaseException]:
        calls.append(items)
        await asyncio.sleep(0.05)  # a busy server
        return list(items)

    async def main() -> None:
        batcher: Batcher[int, int] = Batcher(send, linger=0.001, concurrent=1)
        first = asyncio.create_task(batcher.submit("s", 0))
        await asyncio.sleep(0.01)  # the first batch is being sent
        later = [asyncio.create_task(batcher.submit("s", n)) for n in range(1, 6)]
        await asyncio.sleep(0.01)
        await asyncio.gather(first, *later)

    run(main())
    assert calls == [[0], [1, 2, 3, 4, 5]]
