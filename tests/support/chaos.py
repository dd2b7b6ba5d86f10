"""The chaos run: many clients, random disconnects, and SIGKILLs of every kind of process.

One run starts the whole service as real processes on the real broker (state, validator,
scraper and two edges on fixed ports, so a restarted edge comes back at the same address),
then at once:

* ``clients`` Python clients (:class:`ws_edge.Client`, each knowing both edges) submit ``jobs``
  jobs at ``rate`` per second and each drops its connection at random (mean ``disconnect_every``
  seconds), reconnecting to the other edge and resuming; a job whose ``accepted`` was lost is
  submitted again with the idempotency key the client gave it, so it must never run twice;
* every ``kill_every`` seconds one process chosen at random is SIGKILLed and started again;
  given the broker, the broker (or one node of a cluster) is among the victims.

When every client holds every result (or ``deadline_s`` passes), the killing stops and the run is
checked against the ledger and the compacted ``job-state`` topic: see :meth:`ChaosReport.problems`.
``tests/chaos`` runs a short form in CI; ``bench/chaos.py`` runs the long form and prints figures.
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ledger
from replay import latest_states, read_to_end, rebuild
from scrapeledger import topics
from scrapeledger.broker import LocalBroker, LocalCluster, free_port
from scrapeledger.settings import Settings
from ws_edge import Client

from .stack import Stack

PROCESSORS = ("state", "validator", "scraper")
EDGES = ("edge-a", "edge-b")
MAX_ATTEMPTS = 3


@dataclass(frozen=True)
class ChaosConfig:
    jobs: int = 2000
    clients: int = 20
    rate: float = 50.0
    kill_every: float = 3.0
    disconnect_every: float = 4.0
    deadline_s: float = 600.0
    seed: int = field(default_factory=lambda: random.randrange(1_000_000))
    """Picks the jobs, the victims, the pauses and the disconnects (timing still varies)."""
    broker_down_s: float = 3.0
    """How long a killed broker (or cluster node) stays dead before it is started again on its
    own data dir and port, when the run is given the broker to kill (:func:`run_chaos`)."""


@dataclass(frozen=True)
class Job:
    url: str
    status: str
    marker: str | None = None  # text the page's HTML must contain
    code: str | None = None


@dataclass
class ChaosReport:
    config: ChaosConfig
    seconds: float = 0.0
    kills: Counter[str] = field(default_factory=Counter)
    disconnects: int = 0
    reconnects: int = 0
    resumes: int = 0
    duplicates: int = 0
    results: dict[int, dict[str, Any]] = field(default_factory=dict)
    wrong: list[str] = field(default_factory=list)
    lost: int = 0
    ledger_jobs: int = 0
    ledger_events: int = 0
    resubmits: int = 0
    """``JobSubmitted`` events beyond each job's first: clients' resubmits with the same
    idempotency key (after a lost ``accepted``), which must name the same job."""
    statuses: Counter[str] = field(default_factory=Counter)
    not_terminal: list[str] = field(default_factory=list)
    terminal_events_max: int = 0
    terminal_dupes: dict[str, list[str]] = field(default_factory=dict)
    replayed_outcomes: int = 0
    attempts_max: int = 0
    crash_dead_letters: int = 0
    rebuild_written: int = -1
    rebuild_differs: list[str] = field(default_factory=list)
    rebuild_events_per_s: float = 0.0

    def problems(self) -> list[str]:
        """Every broken promise; empty means the run passed."""
        out = []
        if self.lost:
            out.append(f"{self.lost} job(s) never reached their client")
        if self.duplicate_runs:
            out.append(f"{self.duplicate_runs} job(s) ran twice: the ledger has {self.ledger_jobs} jobs "
                       f"for {self.config.jobs} submitted")
        out += self.wrong[:10]
        if self.not_terminal:
            out.append(f"{len(self.not_terminal)} job(s) not terminal in job-state: {self.not_terminal[:5]}")
        if self.terminal_events_max > 1:
            out.append(f"a job has {self.terminal_events_max} terminal events in the ledger: "
                       f"{list(self.terminal_dupes.items())[:3]}")
        if self.attempts_max > MAX_ATTEMPTS:
            out.append(f"a job used {self.attempts_max} attempts (limit {MAX_ATTEMPTS})")
        if self.rebuild_written != 0 or self.rebuild_differs:
            out.append(f"replay rebuild differs: {self.rebuild_written} written, {self.rebuild_differs[:5]}")
        return out

    @property
    def duplicate_runs(self) -> int:
        """Jobs that ran more than once: a resubmit that became a job of its own."""
        return max(0, self.ledger_jobs - self.config.jobs)

    def summary(self) -> str:
        kills = ", ".join(f"{k} {v}" for k, v in sorted(self.kills.items()))
        return (
            f"seed {self.config.seed}: {self.config.jobs} jobs from {self.config.clients} clients in "
            f"{self.seconds:.0f}s; "
            f"kills: {sum(self.kills.values())} ({kills}); client disconnects {self.disconnects}, "
            f"reconnects {self.reconnects}, resumes sent {self.resumes}, duplicate results seen "
            f"{self.duplicates}; lost {self.lost}; ledger: {self.ledger_jobs} jobs, {self.ledger_events} "
            f"events, {self.resubmits} resubmits, {self.duplicate_runs} duplicate runs; "
            f"statuses {dict(self.statuses)}; max attempts {self.attempts_max}; "
            f"scraper_crashed {self.crash_dead_letters}; replayed attempt outcomes "
            f"{self.replayed_outcomes}; rebuild written {self.rebuild_written} "
            f"({self.rebuild_events_per_s:,.0f} events/s)"
        )


def job_plan(pages: str, n: int, rng: random.Random) -> list[Job]:
    """Mostly pages whose HTML is checked, some that succeed on a retry, some permanent 404s."""
    jobs = []
    for i in range(n):
        roll = rng.random()
        if roll < 0.1:
            jobs.append(Job(f"{pages}/flaky/{ledger.new_job_id()}?fail=1", "succeeded"))
        elif roll < 0.2:
            jobs.append(Job(f"{pages}/status/404?n={i}", "failed", code="http_404"))
        else:
            jobs.append(Job(f"{pages}/page/{i}", "succeeded", marker=f"page {i} "))
    return jobs


Broker = LocalBroker | LocalCluster


def broker_victims(broker: Broker | None) -> tuple[str, ...]:
    """The broker's share of each round: the single node, or one name per cluster node."""
    if broker is None:
        return ()
    if isinstance(broker, LocalCluster):
        return tuple(f"kafka-{i + 1}" for i in range(len(broker.brokers)))
    return ("kafka",)


class Killer(threading.Thread):
    """SIGKILL a component every ``every`` seconds (±50%) and start it again at once.

    Victims come in rounds, each a random order of all five processes (and, when the run owns
    its broker, the broker: the single node, or each node of a cluster once), so every kind of
    process dies in every round while the order stays unpredictable. A killed broker or node
    stays dead for ``broker_down_s`` and comes back on its own data dir and port; a cluster only
    ever loses one node at a time (the next kill waits for the restart).
    """

    def __init__(self, stack: Stack, ports: dict[str, int], every: float, rng: random.Random,
                 broker: Broker | None = None, broker_down_s: float = 3.0) -> None:
        super().__init__(name="chaos-killer", daemon=True)
        self.stack, self.ports, self.every, self.rng = stack, ports, every, rng
        self.broker, self.broker_down_s = broker, broker_down_s
        self.stop = threading.Event()
        self.kills: Counter[str] = Counter()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            victims = (*PROCESSORS, *EDGES, *broker_victims(self.broker))
            round_: list[str] = []
            while not self.stop.wait(self.every * self.rng.uniform(0.5, 1.5)):
                if not round_:
                    round_ = self.rng.sample(victims, k=len(victims))
                victim = round_.pop()
                self.kills[victim] += 1
                if victim.startswith("kafka"):
                    self._kill_broker(victim)
                    continue
                self.stack.kill(victim)
                if victim in EDGES:
                    self.stack.edge(victim, port=self.ports[victim])
                else:
                    self.stack.start(victim)
        except BaseException as exc:  # reported by run_chaos
            self.error = exc

    def _kill_broker(self, victim: str) -> None:
        broker = self.broker
        if isinstance(broker, LocalCluster):
            node = int(victim.rsplit("-", 1)[1]) - 1
            broker.kill(node)
            self.stop.wait(self.broker_down_s)  # the outage itself, not a readiness guess
            broker.restart(node)  # returns once the node is usable again
        elif broker is not None:
            broker.kill()
            self.stop.wait(self.broker_down_s)
            broker.start()


async def _clients(servers: list[str], jobs: list[Job], cfg: ChaosConfig, report: ChaosReport,
                   rng: random.Random) -> None:
    done = asyncio.Event()

    async def dropper(client: Client) -> None:
        while True:
            try:
                await asyncio.wait_for(done.wait(), rng.expovariate(1 / cfg.disconnect_every))
                return
            except TimeoutError:
                report.disconnects += 1
                await client.reconnect()

    async def one(client: Client, i: int) -> None:
        report.results[i] = await client.scrape(jobs[i].url)

    async def run_client(c: int) -> None:
        mine = list(range(c, len(jobs), cfg.clients))
        order = servers[c % len(servers):] + servers[: c % len(servers)]
        async with Client(order, max_reconnect_s=300) as client:
            drop = asyncio.create_task(dropper(client))
            tasks = []
            for i in mine:
                tasks.append(asyncio.create_task(one(client, i)))
                await asyncio.sleep(cfg.clients / cfg.rate)  # load shaping, not a readiness wait
            await asyncio.gather(*tasks)
            drop.cancel()
            report.reconnects += client.reconnects
            report.resumes += client.resumes
            report.duplicates += client.duplicates

    try:
        await asyncio.wait_for(asyncio.gather(*(run_client(c) for c in range(cfg.clients))), cfg.deadline_s)
    finally:
        done.set()


def run_chaos(
    settings: Settings, workdir: Path, pages: str, cfg: ChaosConfig, broker: Broker | None = None
) -> ChaosReport:
    """One chaos run; with ``broker`` (the one ``settings`` points at) the broker is killed too."""
    rng = random.Random(cfg.seed)
    report = ChaosReport(cfg)
    jobs = job_plan(pages, cfg.jobs, rng)
    stack = Stack(settings, workdir, env={"SCRAPER_MAX_ATTEMPTS": str(MAX_ATTEMPTS)})
    ports = {pod: free_port() for pod in EDGES}
    try:
        for name in PROCESSORS:
            stack.start(name)
        servers = [stack.edge(pod, port=port) for pod, port in ports.items()]
        killer = Killer(stack, ports, cfg.kill_every, rng, broker, cfg.broker_down_s)
        start = time.monotonic()
        killer.start()
        try:
            asyncio.run(_clients(servers, jobs, cfg, report, rng))
        except TimeoutError:
            pass  # what is missing is counted as lost below
        finally:
            killer.stop.set()
            killer.join(120)
        report.seconds = time.monotonic() - start
        report.kills = killer.kills
        if killer.error is not None:
            raise killer.error
        _check_results(jobs, report)
        _check_ledger(settings, report)
    finally:
        stack.stop_all()
    return report


def _check_results(jobs: list[Job], report: ChaosReport) -> None:
    report.lost = len(jobs) - len(report.results)
    for i, frame in report.results.items():
        job = jobs[i]
        if frame.get("status") != job.status:
            report.wrong.append(f"job {i} {job.url}: {frame.get('status')} {frame.get('error')}")
        elif job.marker is not None and job.marker not in str(frame.get("html")):
            report.wrong.append(f"job {i} {job.url}: wrong body")
        elif job.code is not None and (frame.get("error") or {}).get("code") != job.code:
            report.wrong.append(f"job {i} {job.url}: code {frame.get('error')}")


def _check_ledger(settings: Settings, report: ChaosReport) -> None:
    terminal_ids: dict[str, set[str]] = {}
    story: dict[str, list[str]] = {}
    seen: set[str] = set()
    submitted: set[str] = set()
    for msg in read_to_end(settings, settings.topic(topics.LEDGER)):
        event = ledger.decode_event(msg.value())
        report.ledger_events += 1
        story.setdefault(event.job_id, []).append(
            f"{msg.offset()}:{event.TYPE}:{event.attempt}:{event.source}:{event.event_id[23:]}"
        )
        report.attempts_max = max(report.attempts_max, event.attempt)
        if isinstance(event, ledger.JobSubmitted):
            if event.job_id in submitted and event.event_id not in seen:
                report.resubmits += 1
            submitted.add(event.job_id)
        if event.event_id in seen:
            # a replayed step: same id, dropped by the fold whatever it says ("first outcome wins")
            report.replayed_outcomes += ledger.is_outcome(event)
            continue
        seen.add(event.event_id)
        terminal = ledger.ScrapeSucceeded | ledger.JobFailed | ledger.JobDeadLettered | ledger.JobRejected
        if isinstance(event, terminal):
            terminal_ids.setdefault(event.job_id, set()).add(event.event_id)
            if isinstance(event, ledger.JobDeadLettered) and event.code == "scraper_crashed":
                report.crash_dead_letters += 1
    report.terminal_events_max = max((len(ids) for ids in terminal_ids.values()), default=0)
    report.terminal_dupes = {j: story[j] for j, ids in terminal_ids.items() if len(ids) > 1}

    # the materializer may still be folding the last deliveries: the topic must catch up with a
    # fresh fold of the ledger, and every check below is a new read of both
    deadline = time.monotonic() + 120
    while True:
        result = rebuild(settings, write=False)
        current = latest_states(settings)
        differs = [j for j, s in result.states.items() if current.get(j) != s]
        if (not differs and result.written == 0) or time.monotonic() > deadline:
            break
    report.rebuild_written = result.written
    report.rebuild_differs = differs
    report.rebuild_events_per_s = result.events_per_s
    report.ledger_jobs = len(result.states)
    report.statuses = Counter(s.status for s in result.states.values())
    report.not_terminal = [j for j, s in current.items() if s is None or not s.terminal]
    report.not_terminal += [j for j in result.states if j not in current]
    report.attempts_max = max(
        [report.attempts_max, *(s.attempts - s.attempt_base for s in result.states.values())]
    )
