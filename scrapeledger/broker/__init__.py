"""A real Apache Kafka (KRaft) from Maven Central jars: one combined broker+controller node, or a cluster.

Tests, CI and ``scrapeledger up`` need a real broker on machines that have Java and Maven but no
container engine, and a mock would hide exactly the behaviour the ledger depends on. Dev and test
only: production runs Strimzi. One concept per module:

- :mod:`._classpath`: Maven resolves Kafka's jars once into a cache shared by every checkout
  (``kafka_classpath``, ``cache_root``, ``KAFKA_VERSION``);
- :mod:`._config`: what a node is told before its JVM starts and keeps in its data dir: ports,
  cluster id, ``server.properties``, JVM flags, the KRaft storage format (``free_port``,
  ``BROKER_JVM_OPTS``, ``ClusterNode``);
- :mod:`._readiness`: "ready" means *this* cluster (its cluster id) accepted a topic creation
  (validated, not written), not that a port opened or a log line appeared;
- :mod:`._process`: one node as a JVM process, started, awaited, stopped or killed
  (``LocalBroker``, ``BrokerStartAborted``), with an exit safety net for forgotten ones;
- :mod:`._cluster`: several nodes that survive the loss of one (``LocalCluster``);
- :mod:`._foreground`: ``scrapeledger broker`` / ``python -m scrapeledger.broker``
  (``run_foreground``), which prints one ``broker ready at ...`` line once usable.
"""

from ._classpath import KAFKA_VERSION, cache_root, kafka_classpath
from ._cluster import LocalCluster
from ._config import BROKER_JVM_OPTS, ClusterNode, free_port, new_cluster_id
from ._foreground import _parse_args as _parse_args  # tests/unit/test_broker_args.py
from ._foreground import run_foreground
from ._process import BrokerStartAborted, LocalBroker

__all__ = [
    "BROKER_JVM_OPTS",
    "KAFKA_VERSION",
    "BrokerStartAborted",
    "ClusterNode",
    "LocalBroker",
    "LocalCluster",
    "cache_root",
    "free_port",
    "kafka_classpath",
    "new_cluster_id",
    "run_foreground",
]
