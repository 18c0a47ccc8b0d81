"""The replication slots' exporter for real: Debian's PostgreSQL and `prometheus-postgres-exporter` running the
platform's slot query, as the alerts `HeadwaterCdcSlotRetainsWal` and `HeadwaterCdcSlotInactive` read it.

A logical slot nobody reads holds back the WAL written after it: the exporter shows it inactive and its
retained bytes growing; once the changes are consumed, its lag falls back. Other slots are not exported.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from headwater import versions
from headwater.config import load_platform
from headwater.local.postgres import LocalPostgres
from headwater.local.slot_exporter import LocalSlotExporter, exporter_binary
from headwater.spec import Source

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def served() -> Iterator[tuple[LocalPostgres, Source, LocalSlotExporter]]:
    source = load_platform("local").sources[0]
    state = Path(tempfile.mkdtemp(prefix="headwater-slots-"))
    state.chmod(0o711)  # the server's unprivileged user must reach its folder
    pg = LocalPostgres(state)
    exporter: LocalSlotExporter | None = None
    try:
        pg.start()
        pg.prepare_source(source)
        served = pg.served(source)
        exporter = LocalSlotExporter(pg, served, state).start()
        yield pg, served, exporter
    finally:
        if exporter is not None:
            exporter.stop()
        pg.stop()
        shutil.rmtree(state, ignore_errors=True)


def _series(exporter: LocalSlotExporter) -> dict[str, dict[str, float]]:
    """`{metric: {slot_name: value}}` of the slot metrics the exporter serves now."""
    with urllib.request.urlopen(f"http://{exporter.metrics_target}/metrics", timeout=10) as response:
        text = response.read().decode()
    out: dict[str, dict[str, float]] = {}
    for match in re.finditer(
        r'^(headwater_cdc_slot_\w+)\{[^}]*slot_name="([^"]+)"[^}]*\} (\S+)$', text, re.M
    ):
        out.setdefault(match.group(1), {})[match.group(2)] = float(match.group(3))
    return out


def test_the_exporter_is_the_release_the_kubernetes_image_pins() -> None:
    shown = subprocess.run(
        [exporter_binary(), "--version"], capture_output=True, text=True, timeout=30, check=False
    )
    assert f"version {versions.POSTGRES_EXPORTER_VERSION}" in shown.stdout + shown.stderr


def test_an_unread_slot_shows_inactive_and_its_retained_wal_grows_until_read(
    served: tuple[LocalPostgres, Source, LocalSlotExporter],
) -> None:
    pg, source, exporter = served
    with pg.connect(source.database, autocommit=True) as conn:
        conn.execute("SELECT pg_create_logical_replication_slot(%s, 'test_decoding')", (source.slot_name,))
        conn.execute("SELECT pg_create_logical_replication_slot('someone_elses_slot', 'test_decoding')")
        conn.execute("CREATE TABLE IF NOT EXISTS filler (id serial PRIMARY KEY, body text)")
    before = _series(exporter)
    assert before["headwater_cdc_slot_inactive"] == {source.slot_name: 1.0}  # not the other slot
    with pg.connect(source.database, autocommit=True) as conn:
        conn.execute("INSERT INTO filler (body) SELECT repeat('x', 1000) FROM generate_series(1, 2000)")
    grown = _series(exporter)
    retained = grown["headwater_cdc_slot_retained_bytes"][source.slot_name]
    assert retained > before["headwater_cdc_slot_retained_bytes"][source.slot_name] + 1_500_000
    assert grown["headwater_cdc_slot_lag_bytes"][source.slot_name] > 1_500_000
    with pg.connect(source.database, autocommit=True) as conn:
        changes = conn.execute(
            "SELECT count(*) FROM pg_logical_slot_get_changes(%s, NULL, NULL)", (source.slot_name,)
        ).fetchone()
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        read = _series(exporter)
        if read["headwater_cdc_slot_lag_bytes"][source.slot_name] < 100_000:
            break
        time.sleep(0.5)
    print(
        f"\n[slot exporter] unread slot retained {retained:.0f} B after 2000 rows of 1 kB; "
        f"{changes[0] if changes else 0} changes read, then lag "
        f"{read['headwater_cdc_slot_lag_bytes'][source.slot_name]:.0f} B"
    )
    assert read["headwater_cdc_slot_lag_bytes"][source.slot_name] < 100_000
