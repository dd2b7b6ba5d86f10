"""Several local Kafka nodes forming one cluster, for tests that lose a node and keep going."""

from __future__ import annotations

import logging
import signal
import threading
import time
from pathlib import Path
from typing import Any

from ..errors import LocalBrokerError
from ._classpath import KAFKA_VERSION
from ._config import CLUSTER_STATE_FILE, ClusterNode, free_port, new_cluster_id, read_state, write_state
from ._process import LOG_TAIL, LocalBroker, Running, make_temp_dir, remove_temp_dir

# one logger for the whole launcher, as when it was one module: lines keep their name
log = logging.getLogger("scrapeledger.broker")

_CLEAN_EXITS = (0, 143, -signal.SIGTERM, None)
"""Exit codes of a node that stopped as asked (143: the JVM's answer to SIGTERM)."""


class LocalCluster(Running):
    """Several local Kafka nodes in one cluster: ``scrapeledger broker --nodes 3``.

    Every node is a combined broker+controller (``process.roles=broker,controller``) and a voter
    of a static quorum, so three JVMs (not six) give a cluster that survives the loss of any one
    node: the controller quorum keeps its majority and every topic (replication factor 3,
    ``min.insync.replicas=2``) keeps taking writes. Node *i* lives in ``DATA_DIR/node-i`` with its
    own ports; the ports and the cluster id are kept in ``DATA_DIR``, so a killed node comes back
    on the same address with its log (:meth:`kill` / :meth:`restart`).
    """

    def __init__(
        self, nodes: int = 3, port: int = 9092, data_dir: Path | None = None, heap: str = "256m"
    ) -> None:
        if nodes < 2:
            raise ValueError("a cluster has at least 2 nodes; use LocalBroker for one")
        if port and not 0 < port <= 65535 - nodes:
            raise ValueError(f"ports {port}..{port + nodes - 1} are not all valid")
        self._owns_dir = data_dir is None
        self.data_dir = Path(data_dir) if data_dir is not None else make_temp_dir()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        state = self._state()
        if not state:
            state = _new_state(nodes, port)
            write_state(self.data_dir / CLUSTER_STATE_FILE, state)
        ports, cports = list(state["ports"]), list(state["controller_ports"])
        if len(ports) != nodes:
            raise LocalBrokerError(f"{self.data_dir} holds a {len(ports)}-node cluster, not {nodes}")
        voters = ",".join(f"{i + 1}@127.0.0.1:{cp}" for i, cp in enumerate(cports))
        self.brokers = [
            LocalBroker(
                port=ports[i], data_dir=self.data_dir / f"node-{i + 1}", heap=heap,
                node=ClusterNode(i + 1, cports[i], voters, str(state["cluster_id"]), nodes),
            )
            for i in range(nodes)
        ]
        self.started_in: float | None = None

    def _state(self) -> dict[str, Any]:
        return read_state(self.data_dir / CLUSTER_STATE_FILE)

    @property
    def bootstrap(self) -> str:
        """Every node's address: clients keep working while any one of them is down."""
        return ",".join(b.bootstrap for b in self.brokers)

    @property
    def _abort(self) -> threading.Event:
        """The first node's abort event, which :meth:`start` gives every node: one signal stops all."""
        return self.brokers[0]._abort

    def abort_start(self) -> None:
        """Make a start-up still waiting give up at its next poll (for a signal handler)."""
        self._abort.set()

    def running(self) -> bool:
        """Whether every node's JVM is alive."""
        return all(b.running() for b in self.brokers)

    def log_tail(self, lines: int = LOG_TAIL) -> str:
        """Every node's last output lines, each under its node number."""
        return "\n".join(f"[node {b.node.node_id if b.node else '?'}]\n{b.log_tail(lines // 2)}"
                         for b in self.brokers)

    def start(self, timeout: float = 180.0) -> str:
        """Launch every node, then wait until each one is usable; returns the bootstrap.

        Every node launches before any is waited for: a node is usable only once a majority of
        the controller quorum runs."""
        began = time.monotonic()
        try:
            for b in self.brokers:
                b._abort = self._abort  # one abort (a signal during start-up) for every node
                if not b.running():
                    b.data_dir.mkdir(parents=True, exist_ok=True)
                    b.launch()
            for b in self.brokers:
                b.wait_ready(max(1.0, began + timeout - time.monotonic()))
        except BaseException:
            self.stop(timeout=10)
            raise
        self.started_in = time.monotonic() - began
        log.info("Kafka %s cluster of %d nodes usable at %s after %.1fs",
                 KAFKA_VERSION, len(self.brokers), self.bootstrap, self.started_in)
        return self.bootstrap

    def kill(self, index: int) -> None:
        """SIGKILL node ``index`` (0-based); the others carry on."""
        self.brokers[index].kill()

    def restart(self, index: int, timeout: float = 120.0) -> None:
        """Start node ``index`` again on its directory and ports; returns once it is usable."""
        self.brokers[index].start(timeout)

    def stop(self, timeout: float = 30.0) -> int | None:
        """Stop every node (SIGTERM, all at once); returns the first non-clean exit code or 0."""
        for b in self.brokers:
            b._signal(signal.SIGTERM)
        worst: int | None = 0
        for b in self.brokers:
            code = b.stop(timeout)
            if code not in _CLEAN_EXITS and worst == 0:
                worst = code
        if self._owns_dir:
            remove_temp_dir(self.data_dir)
        return worst


def _new_state(nodes: int, port: int) -> dict[str, Any]:
    """A new cluster's id and ports: ``port``, ``port + 1``, ... (free ones for port 0), and free
    controller ports; no two the same, as free ports picked one by one could otherwise be."""
    taken: set[int] = set()

    def pick(wanted: int) -> int:
        chosen = wanted
        while not chosen or chosen in taken:
            chosen = free_port()
        taken.add(chosen)
        return chosen

    ports = [pick(port + i if port else 0) for i in range(nodes)]
    return {
        "cluster_id": new_cluster_id(),
        "ports": ports,
        "controller_ports": [pick(0) for _ in range(nodes)],
    }
