from __future__ import annotations

import pytest

from scrapeledger.partitioner import murmur2, partition_for


@pytest.mark.parametrize(
    ("key", "expected"),
    [  # vectors from Apache Kafka's UtilsTest.testMurmur2
        ("21", -973932308),
        ("foobar", -790332482),
        ("a-little-bit-long-string", -985981536),
        ("a-little-bit-longer-string", -1486304829),
        ("lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971),
        ("abc", 479470107),
    ],
)
def test_murmur2_matches_kafka(key: str, expected: int) -> None:
    assert murmur2(key.encode()) == expected


def test_partition_is_in_range() -> None:
    for n in range(1, 20):
        assert 0 <= partition_for(f"pod-{n}", 7) < 7
