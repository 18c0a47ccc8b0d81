"""The client files provisioning writes work for the clients that read them, and stay private."""

from __future__ import annotations

import stat
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING

from headwater import jvm
from headwater.local.kafka import java_executable
from headwater.local.provision import FLINK_SHADED_PREFIX

if TYPE_CHECKING:
    from conftest import Provisioned

JAVA_CHECK = Path(__file__).resolve().parent / "java" / "CheckClientProperties.java"


def test_java_clients_connect_with_each_principals_properties_file(provisioned: Provisioned) -> None:
    """Plain Java clients read `<name>.properties`; flink-sql-connector-kafka's relocated client reads
    `<name>.flink.properties`. Each logs in as its principal and sees exactly the topics of its flows."""
    jars = [
        *jvm.fetch("kafka", quiet=True).glob("*.jar"),
        *jvm.fetch("flink-connectors", quiet=True).glob("*.jar"),
    ]
    args: list[str] = []
    expected: dict[str, set[str]] = {}
    for p in provisioned.platform.principals:
        topics = {c.topic for c in p.consumes} | {f.topic for f in p.produces} | {m.topic for m in p.monitors}
        for prefix, flink in (("", False), (FLINK_SHADED_PREFIX, True)):
            path = provisioned.properties_file(p.name, flink=flink)
            args += [prefix, provisioned.bootstrap(p.name), str(path)]
            expected[str(path)] = topics
    result = subprocess.run(
        [java_executable(), "-cp", ":".join(sorted(map(str, jars))), str(JAVA_CHECK), *args],
        capture_output=True,
        text=True,
        timeout=240,
        check=False,
    )
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    seen: dict[str, set[str]] = {}
    for line in result.stdout.splitlines():
        if "\t" in line:
            shown, listed = line.split("\t", 1)
            seen[shown] = set(filter(None, listed.split(",")))
    assert seen == expected


def test_secrets_are_readable_by_the_owner_only(provisioned: Provisioned) -> None:
    kafka = provisioned.kafka
    private = [kafka.ca.key_path, *kafka.certs_dir.glob("*.key"), *kafka.certs_dir.glob("*.keystore.pem")]
    private += [p for p in kafka.secrets_dir.iterdir() if p.is_file()]
    assert len(private) > 2 * len(provisioned.platform.principals)
    for path in [kafka.secrets_dir, kafka.certs_dir]:
        assert stat.S_IMODE(path.stat().st_mode) == 0o700, path
    for path in private:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600, path


def test_properties_files_carry_security_settings_but_no_bootstrap(provisioned: Provisioned) -> None:
    # The apps take the bootstrap servers from their own options and refuse a file that sets them.
    for p in provisioned.platform.principals:
        text = provisioned.properties_file(p.name).read_text()
        assert "bootstrap.servers" not in text
        assert "security.protocol=" in text
