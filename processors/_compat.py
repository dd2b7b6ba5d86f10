"""The one place the processors reach into Quix Streams' private attributes.

Written against **quixstreams 3.28.1** (``pip show quixstreams``). Quix Streams has no public way
to ask an :class:`~quixstreams.Application` whether its consumer holds partitions, which is what
a processor's readiness means (connected, in its group, assigned work). ``Application.__init__``
creates its ``InternalConsumer`` as ``self._consumer`` (``quixstreams/app.py``, around line 392)
and ``InternalConsumer.assignment()`` is confluent-kafka's.

If a Quix Streams upgrade renames or removes ``_consumer``, :func:`assigned_partitions` finds no
consumer and answers 0: ``/readyz`` then says "not ready" for ever (Kubernetes takes the pod out
of rotation, nothing crashes). ``tests/integration/test_metrics.py``
(``test_readyz_is_not_ready_while_the_broker_is_down``) waits for a 200 and would fail.
"""

from __future__ import annotations

from typing import Any


def assigned_partitions(app: Any) -> int:
    """How many partitions ``app``'s consumer holds; 0 where there is no app or no consumer yet."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return 0
    return len(consumer.assignment())
