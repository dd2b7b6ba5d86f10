"""Jobs under steady load while a fault is injected: the broker-loss tests' shared driver."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import orjson
from confluent_kafka import TopicPartition

from replay import committed_offsets, consumer, history, partitions_of, read_to_end
from scrapeledger import topics
from scrapeledger.partitioner import partition_for
from scrapeledger.settings import Settings
from tests.support.stack import Stack, eventually
from ws_edge import Client

ANSWER_S = 300.0
"""How long every job has, after the fault, to be answered."""

Explain = Callable[[dict[int, str | None]], str]
"""Given the unanswered jobs (submit index -> job id, None if never accepted), say why."""


def scrape_through_a_fault(url: str, pages: str, jobs: int, fault: Callable[[], None],
                           rate: float = 40.0, explain: Explain | None = None,
                           ) -> list[dict[str, object]]:
    """Scrape ``/page/0`` .. ``/page/jobs-1`` at ``rate`` per second through one reconnecting
    client, and run ``fault`` (blocking, on a thread) once the stack is answering and most jobs
    are still to come, so it lands under load whatever the speed of the machine; returns the
    result frames in submit order.

    Jobs still unanswered :data:`ANSWER_S` after the fault fail the run with their ids and what
    ``explain`` says about them (a bare timeout told nobody where the jobs were stuck)."""

    async def go() -> list[dict[str, object]]:
        async with Client([url], max_reconnect_s=300) as client:
            tasks: list[asyncio.Task[dict[str, object]]] = []
            accepted: dict[int, str] = {}

            async def submit() -> None:  # a steady load, so the fault lands mid-stream
                for i in range(jobs):
                    tasks.append(asyncio.create_task(client.scrape(
                        f"{pages}/page/{i}", on_accepted=lambda job_id, i=i: accepted.update({i: job_id}),
                    )))
                    await asyncio.sleep(1 / rate)  # load shaping, not a readiness wait

            submitter = asyncio.create_task(submit())
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(None, lambda: eventually(
                lambda: len(tasks) >= jobs // 4 and any(t.done() for t in tasks), timeout=120,
                what="the first results", interval=0.05))
            await loop.run_in_executor(None, fault)
            await submitter
            await asyncio.wait(tasks, timeout=ANSWER_S)
            stuck = {i: accepted.get(i) for i, task in enumerate(tasks) if not task.done()}
            if stuck:
                for task in tasks:
                    task.cancel()
                why = await loop.run_in_executor(None, explain, stuck) if explain else ""
                raise AssertionError(
                    f"{len(stuck)} of {jobs} jobs unanswered {ANSWER_S:.0f} s after the fault "
                    f"(client: {client.reconnects} reconnects, {client.resumes} resumes):\n{why}"
                )
            return [task.result() for task in tasks]

    return asyncio.run(go())


NEXT_STEP = {
    "JobSubmitted": "validator (validate it)",
    "JobValidated": "scraper (start an attempt)",
    "RetryScheduled": "scraper (start the retry)",
    "JobRedriven": "scraper (start the attempt)",
    "AttemptStarted": "scraper (fetch, record the outcome)",
    "AttemptFailed": "scraper (a RetryScheduled should follow)",
    "ClientAttached": "state (deliver if finished)",
}
"""Who acts on a job whose last ledger event is this; a terminal one is the materializer's to
deliver and then the edge's to answer."""


def explain_unanswered(settings: Settings, stack: Stack, pod: str, stuck: dict[int, str | None],
                       logs: Path) -> str:
    """For each unanswered job: its last ledger event, who should act next, and whether the
    materializer wrote its notice for ``pod``; then each processor group's lag on the ledger.
    Every process's output is saved under ``logs`` (the pytest tmp dir) for the rest."""
    lines = [f"process logs: {save_logs(stack, logs)}", "processes: " + ", ".join(
        f"{name} {'running' if proc.popen.poll() is None else f'EXITED {proc.popen.poll()}'}"
        for name, proc in stack.procs.items()
    )]
    notices = _notices(settings, pod)
    for index, job_id in sorted(stuck.items()):
        if job_id is None:
            lines.append(f"  job {index}: never accepted")
            continue
        try:
            events = history(settings, job_id)
        except Exception as exc:  # a diagnosis must not hide the failure it explains
            lines.append(f"  job {index} {job_id}: no history ({exc})")
            continue
        last = events[-1]
        terminal = last.type in ("ScrapeSucceeded", "JobFailed", "JobDeadLettered", "JobRejected",
                                 "ResultDelivered")
        nxt = NEXT_STEP.get(last.type, "state -> edge (deliver)" if terminal else "?")
        seen = notices.get(job_id, [])
        lines.append(
            f"  job {index} {job_id}: {len(events)} events, last {last.type} from {last.source} "
            f"at {last.at:.3f}; next: {nxt}; notices for {pod}: {seen or 'none'}; "
            f"events: {' '.join(e.type for e in events)}"
        )
    lines.append(_lag(settings))
    return "\n".join(lines)


def _notices(settings: Settings, pod: str) -> dict[str, list[str]]:
    """The delivery notices for ``pod`` (job id -> statuses, with their offsets)."""
    found: dict[str, list[str]] = {}
    partition = partition_for(pod, settings.delivery_partitions)
    try:
        for msg in read_to_end(settings, settings.topic(topics.DELIVERIES), partitions=[partition]):
            data = orjson.loads(msg.value() or b"{}")
            found.setdefault(str(data.get("job_id")), []).append(f"{data.get('status')}@{msg.offset()}")
    except Exception as exc:  # the diagnosis goes on without them
        found["?"] = [f"deliveries unreadable: {exc}"]
    return found


def _lag(settings: Settings) -> str:
    """Each processor group's committed offsets against the ledger's end, per partition."""
    topic = settings.topic(topics.LEDGER)
    reader = consumer(settings)
    try:
        ends = {p: reader.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions_of(reader, topic)}
        parts = [f"ledger ends {ends}"]
        for name in ("validator", "scraper", "state"):
            parts.append(f"{name} committed {committed_offsets(settings, settings.group(name), topic)}")
        return "; ".join(parts)
    except Exception as exc:
        return f"lag unreadable: {exc}"
    finally:
        reader.close()


def save_logs(stack: Stack, logs: Path) -> Path:
    """Write every component's output to ``logs/NAME.log``; returns ``logs``."""
    logs.mkdir(parents=True, exist_ok=True)
    for name, proc in stack.procs.items():
        (logs / f"{name}.log").write_text(proc.output())
    return logs


def pids(stack: Stack) -> dict[str, int]:
    return {name: proc.popen.pid for name, proc in stack.procs.items()}


def assert_same_processes(stack: Stack, before: dict[str, int]) -> None:
    """Every process is the very one that ran before (same PID, never restarted, still up)."""
    for name, pid in before.items():
        proc = stack.procs[name]
        assert proc.popen.pid == pid and proc.popen.poll() is None, (
            f"{name} (pid {pid}) exited with {proc.popen.poll()}:\n{proc.output()[-4000:]}"
        )


def assert_pages(results: list[dict[str, object]], first: int = 0) -> None:
    for i, frame in enumerate(results, start=first):
        assert frame["status"] == "succeeded", frame
        assert f"page {i} " in str(frame["html"]), frame
