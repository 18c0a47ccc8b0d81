"""The CDC part of the local platform: PostgreSQL, a Connect worker per Connect cluster, the sample service.

`make local` starts it when the catalog declares outbox sources: Debian's PostgreSQL in the state dir, each
source's database, outbox table, publication and replication login; a Kafka Connect worker with Debezium as
its catalog principal and each source's outbox connector; and agent-actions, the sample service, which
commits a decision (business row + outbox row) a few times a second. A read_committed reader counts the events
that reach the routed topics, and the console shows the flow: rows committed, events captured, the
connector's state and how much WAL the replication slot holds back.
"""

from __future__ import annotations

import contextlib
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, TopicPartition

from headwater.local import agent_actions
from headwater.local.agent_actions import Decision
from headwater.local.connect import LocalConnect
from headwater.local.kafka import LocalKafka
from headwater.local.postgres import LocalPostgres
from headwater.local.process import Progress, stderr_progress
from headwater.local.slot_exporter import LocalSlotExporter
from headwater.spec import Platform, Source

SERVICE_INTERVAL_S = 0.2  # the sample service commits a decision this often


@dataclass
class CdcStats:
    committed: int = 0  # outbox rows committed by the sample service
    captured: int = 0  # events seen on the routed topics (read_committed)
    dead_letters: int = 0
    slot_lag_bytes: int | None = None
    connector_state: str = "?"


class LocalCdc:
    """Everything CDC of one local stack: started after the broker is provisioned, stopped before it."""

    def __init__(
        self,
        platform: Platform,
        kafka: LocalKafka,
        state_dir: Path,
        *,
        progress: Progress | None = None,
        service_interval: float = SERVICE_INTERVAL_S,
    ) -> None:
        self.platform = platform
        self.kafka = kafka
        self.state_dir = state_dir
        self.progress = progress or stderr_progress("cdc")
        self.service_interval = service_interval
        self.postgres = LocalPostgres(state_dir, progress=stderr_progress("postgres"))
        self.connects = {
            c.name: LocalConnect(kafka, c, state_dir=state_dir, progress=stderr_progress(f"connect:{c.name}"))
            for c in platform.connect_clusters
            if any(s.connect == c.name for s in platform.sources)
        }
        self.sources: list[Source] = []
        # The slots' exporter (what the slot alerts read), once the databases and their CDC roles exist.
        self.slot_exporter: LocalSlotExporter | None = None
        self.stats = CdcStats()
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self.postgres.start()
        for source in self.platform.sources:
            self.postgres.prepare_source(source)
            with self.postgres.connect(source.database) as conn:
                agent_actions.prepare(conn)
            self.sources.append(self.postgres.served(source))
        if self.sources:
            self.slot_exporter = LocalSlotExporter(self.postgres, self.sources[0], self.state_dir).start()
        for connect in self.connects.values():
            connect.start()
        for source in self.sources:
            connect = self.connects[source.connect]
            connect.put_outbox_connector(source, self.postgres.credentials_dir(source))
            connect.wait_running(source.connector_name, timeout=180)
            self.progress(
                f"{source.connector_name}: {source.database}.{source.outbox_table} -> "
                + ", ".join(f"{r.aggregate_type}: {r.topic}" for r in source.routes)
            )
        self._threads = [
            threading.Thread(target=self._count, name="cdc-reader", daemon=True),
            threading.Thread(target=self._serve, name="agent-actions", daemon=True),
            threading.Thread(target=self._observe, name="cdc-observer", daemon=True),
        ]
        for t in self._threads:
            t.start()

    def _serve(self) -> None:
        """agent-actions: a decision per tick, business row and outbox row in one transaction."""
        source = next((s for s in self.sources if s.route("approval")), None)
        if source is None:
            return
        sequence = 0
        while not self._stop.is_set():
            try:
                with self.postgres.connect(source.database) as conn:
                    while not self._stop.wait(self.service_interval):
                        sequence += 1
                        decision = Decision(
                            f"approval-{sequence % 50}",
                            f"agent-{sequence % 7}",
                            "refund.issue",
                            agent_actions.DECISIONS[sequence % len(agent_actions.DECISIONS)],
                            sequence,
                        )
                        with conn.transaction():
                            agent_actions.record(conn, source, decision)
                        self.stats.committed += 1
            except Exception:  # the database restarting: reconnect on the next tick
                self._stop.wait(1.0)

    def _count(self) -> None:
        routed = sorted({r.topic for s in self.sources for r in s.routes})
        dead = sorted({s.dead_letter_topic for s in self.sources})
        consumer = Consumer(
            {
                **self.kafka.admin_config(),
                "group.id": "headwater-local-cdc-reader",
                "isolation.level": "read_committed",
                "enable.auto.commit": False,
            }
        )
        try:
            parts = []
            for topic in routed + dead:
                meta = consumer.list_topics(topic, timeout=30)
                parts += [TopicPartition(topic, p, OFFSET_END) for p in meta.topics[topic].partitions]
            consumer.assign(parts)
            while not self._stop.is_set():
                msg = consumer.poll(0.5)
                if msg is None or msg.error():
                    continue
                if msg.topic() in dead:
                    self.stats.dead_letters += 1
                else:
                    self.stats.captured += 1
        finally:
            consumer.close()

    def _observe(self) -> None:
        while not self._stop.wait(2.0):
            with contextlib.suppress(Exception):
                source = self.sources[0]
                self.stats.slot_lag_bytes = self.postgres.slot_lag_bytes(source)
                status: dict[str, Any] = self.connects[source.connect].status(source.connector_name)
                states = [status.get("connector", {}).get("state", "?")] + [
                    t.get("state", "?") for t in status.get("tasks", [])
                ]
                self.stats.connector_state = "/".join(states)

    def lines(self) -> list[str]:
        """The CDC flow for the console."""
        s = self.stats
        lag = "?" if s.slot_lag_bytes is None else f"{s.slot_lag_bytes} B"
        out = [f"{'postgres':<18}pid {self.postgres.pid}  127.0.0.1:{self.postgres.port}  wal_level=logical"]
        if self.slot_exporter is not None:
            out.append(
                f"{'slot exporter':<18}pid {self.slot_exporter.pid}  {self.slot_exporter.metrics_target}"
            )
        for name, connect in self.connects.items():
            out.append(f"{'connect ' + name:<18}pid {connect.pid}  {connect.url}")
        out.append(
            f"{'cdc flow':<18}rows committed {s.committed} · events captured {s.captured} · dead letters "
            f"{s.dead_letters} · connector {s.connector_state} · slot lag {lag}"
        )
        return out

    def dead(self) -> list[str]:
        out = []
        if self.postgres.pid is not None and not self.postgres.running():
            out.append(f"PostgreSQL exited (log: {self.postgres.log_file})")
        if (
            self.slot_exporter is not None
            and self.slot_exporter.pid is not None
            and not self.slot_exporter.running()
        ):
            out.append(f"the slot exporter exited (log: {self.slot_exporter.log_file})")
        for name, connect in self.connects.items():
            if connect.pid is not None and not connect.running():
                out.append(f"Kafka Connect {name} exited (log: {connect.log_file})")
        return out

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(10)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and any(t.is_alive() for t in self._threads):
            time.sleep(0.1)
        for connect in self.connects.values():
            connect.stop()
        if self.slot_exporter is not None:
            self.slot_exporter.stop()
        self.postgres.stop()
