"""The one place the processors reach into Quix Streams' private attributes and methods.

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

from collections.abc import Callable
from typing import Any

from quixstreams import Application


def assigned_partitions(app: Any) -> int:
    """How many partitions ``app``'s consumer holds; 0 where there is no app or no consumer yet."""
    consumer = getattr(app, "_consumer", None)
    if consumer is None:
        return 0
    return len(consumer.assignment())


class StopAwareApplication(Application):
    """An :class:`~quixstreams.Application` that also says when SIGTERM/SIGINT stopped it.

    ``Application.run()`` installs its own handlers (``_on_sigterm`` / ``_on_sigint``, private,
    quixstreams/app.py around line 1370) and, once the loop ends, commits a final checkpoint.
    With the broker gone at that moment (``scrapeledger up`` SIGKILLed with its broker: every
    child gets SIGTERM from its parent-death signal) that commit raises a Kafka error, and
    ``Processor.run`` would take it for an outage to ride out, build a new Application and run
    on, the stop forgotten. Calling ``on_stop`` here lets it stop instead
    (tests/integration/test_up.py). If an upgrade renames the two methods, the overrides are
    never called: a stop during an outage then lingers until the outage limit, and that test
    fails.
    """

    def __init__(self, *args: Any, on_stop: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.on_stop = on_stop

    def _on_sigterm(self, *args: Any) -> None:
        self.on_stop()
        super()._on_sigterm(*args)  # type: ignore[no-untyped-call]

    def _on_sigint(self, *args: Any) -> None:
        self.on_stop()
        super()._on_sigint(*args)  # type: ignore[no-untyped-call]
