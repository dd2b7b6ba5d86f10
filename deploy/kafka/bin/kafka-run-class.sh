#!/usr/bin/env bash
# java -cp <the image's jars> MAIN ARGS: what the release's bin/kafka-run-class.sh boils down to.
# Tools get a small heap and the C1 compiler only (they exit within seconds: the health check
# starts one every interval); the broker gets KAFKA_HEAP_OPTS / KAFKA_JVM_PERFORMANCE_OPTS, by
# default scrapeledger.broker's (docs/benchmarks.md has why C1).
set -euo pipefail
main=$1
shift
if [[ $main == kafka.Kafka ]]; then
  heap=${KAFKA_HEAP_OPTS:--Xms384m -Xmx384m}
  perf=${KAFKA_JVM_PERFORMANCE_OPTS:--XX:TieredStopAtLevel=1 -XX:+UseG1GC -XX:MaxGCPauseMillis=20}
else
  heap="-Xmx128m"
  perf="-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -XX:CICompilerCount=1"
fi
# shellcheck disable=SC2086  # the option strings are word lists on purpose
exec java $heap $perf -XX:+ExitOnOutOfMemoryError -Djava.awt.headless=true \
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties \
  ${KAFKA_OPTS:-} -cp "/opt/kafka/libs/*" "$main" "$@"
