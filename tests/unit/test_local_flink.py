"""How a local Flink job is configured and which snapshot it resumes from (no process is started here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from headwater import jvm
from headwater.config import load_platform
from headwater.local import flink
from headwater.local.flink import LocalFlinkError, LocalFlinkJob, completed_snapshots, keep_previous_logs
from headwater.local.kafka import KafkaPorts, LocalKafka

PLATFORM = load_platform("local")


@pytest.fixture
def kafka(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> LocalKafka:
    kafka = LocalKafka(PLATFORM, tmp_path / "state", KafkaPorts(sasl=19093, mtls=19094, controller=19095))
    kafka.secrets_dir.mkdir(parents=True)
    for app in PLATFORM.apps:
        (kafka.secrets_dir / f"{app.name}.flink.properties").write_text("security.protocol=SASL_SSL\n")
    jars = tmp_path / "jars"
    jars.mkdir()
    (jars / "flink-sql-connector-kafka.jar").write_bytes(b"")
    monkeypatch.setattr(jvm, "fetch", lambda name, quiet=False: jars)
    return kafka


def options(args: list[str], flag: str) -> list[str]:
    return [args[i + 1] for i, a in enumerate(args) if a == flag]


def conf(args: list[str]) -> dict[str, str]:
    return dict(item.split("=", 1) for item in options(args, "--flink-conf"))


def test_arguments_point_the_principal_flows_at_the_local_services(kafka: LocalKafka) -> None:
    job = LocalFlinkJob(PLATFORM, "agent-events", kafka, "http://127.0.0.1:8181", kafka.state_dir)
    job.rest_port = 18081
    args = job.arguments(None)
    assert options(args, "--bootstrap-servers") == ["127.0.0.1:19093"]  # a SCRAM principal: SASL_SSL
    assert options(args, "--kafka-properties-file") == [
        str(kafka.secrets_dir / "agent-events.flink.properties")
    ]
    assert options(args, "--source-topic") == ["agents.events.raw.v1"]
    assert options(args, "--group-id") == ["agent-events"]
    assert options(args, "--sink-topic") == ["agents.signals.v1"]
    assert options(args, "--dead-letter-topic") == ["agents.events.deadletter.v1"]
    assert options(args, "--transactional-id-prefix") == ["agent-events-"]
    assert options(args, "--transaction-timeout-ms") == [str(PLATFORM.kafka.transaction_max_timeout_ms)]
    assert options(args, "--schema-registry-url") == ["http://127.0.0.1:8181"]
    jars = options(args, "--pipeline-jars")[0].split(",")
    assert jars[0].endswith("flink-sql-connector-kafka.jar")
    assert Path(jars[-1]).name.startswith("flink-functions-")  # the apps' native functions, as in the image
    settings = conf(args)
    state = kafka.state_dir / "flink" / "agent-events"
    assert settings["state.backend.type"] == "rocksdb"
    assert settings["execution.checkpointing.incremental"] == "true"
    assert settings["execution.checkpointing.mode"] == "EXACTLY_ONCE"
    assert settings["execution.checkpointing.dir"] == (state / "checkpoints").as_uri()
    assert settings["execution.checkpointing.savepoint-dir"] == (state / "savepoints").as_uri()
    assert settings["execution.checkpointing.interval"] == f"{PLATFORM.flink.checkpoint_interval_ms} ms"
    assert settings["execution.checkpointing.externalized-checkpoint-retention"] == "RETAIN_ON_CANCELLATION"
    assert settings["rest.bind-port"] == "18081"
    assert "execution.state-recovery.path" not in settings
    assert job.command(None)[:3] == [str(flink.FLINK_PYTHON), "-m", "flink_apps.agent_events.main"]


def test_a_restore_path_and_the_restart_strategy_become_flink_settings(kafka: LocalKafka) -> None:
    checkpoint = kafka.state_dir / "flink" / "agent-events" / "checkpoints" / "abc" / "chk-7"
    never = LocalFlinkJob(PLATFORM, "agent-events", kafka, "http://r", kafka.state_dir, restart_attempts=0)
    settings = conf(never.arguments(checkpoint))
    assert settings["execution.state-recovery.path"] == checkpoint.as_uri()
    assert settings["restart-strategy.type"] == "none"
    retrying = LocalFlinkJob(PLATFORM, "feature-aggregator", kafka, "http://r", kafka.state_dir)
    settings = conf(retrying.arguments(None))
    assert settings["restart-strategy.type"] == "fixed-delay"
    assert settings["restart-strategy.fixed-delay.attempts"] == "3"
    overridden = LocalFlinkJob(
        PLATFORM, "agent-events", kafka, "http://r", kafka.state_dir, flink_conf={"parallelism.default": "2"}
    )
    assert conf(overridden.arguments(None))["parallelism.default"] == "2"


def _snapshot(folder: Path, mtime: int, *, complete: bool = True) -> Path:
    folder.mkdir(parents=True)
    if complete:
        metadata = folder / "_metadata"
        metadata.write_bytes(b"\x49\x60\x67\x2d")
        os.utime(metadata, (mtime, mtime))
    return folder


def test_latest_checkpoint_is_the_newest_completed_snapshot_of_any_run(kafka: LocalKafka) -> None:
    job = LocalFlinkJob(PLATFORM, "agent-events", kafka, "http://r", kafka.state_dir)
    assert job.latest_checkpoint() is None
    first_run = _snapshot(job.checkpoint_dir / "run-a" / "chk-9", 1_000)
    savepoint = _snapshot(job.savepoint_dir / "savepoint-a-1", 2_000)
    restored_run = _snapshot(job.checkpoint_dir / "run-b" / "chk-10", 3_000)
    _snapshot(job.checkpoint_dir / "run-b" / "chk-11", 4_000, complete=False)  # still being written
    assert completed_snapshots(job.checkpoint_dir) == [first_run, restored_run]
    assert job.latest_checkpoint() == restored_run
    newer_savepoint = _snapshot(job.savepoint_dir / "savepoint-b-2", 5_000)
    assert job.latest_checkpoint() == newer_savepoint
    assert savepoint in completed_snapshots(job.savepoint_dir)


def test_errors_name_what_is_missing(kafka: LocalKafka) -> None:
    with pytest.raises(
        LocalFlinkError, match=r"no app 'agent_events'; its apps: agent-events, feature-aggregator"
    ):
        LocalFlinkJob(PLATFORM, "agent_events", kafka, "http://r", kafka.state_dir)
    (kafka.secrets_dir / "agent-events.flink.properties").unlink()
    job = LocalFlinkJob(PLATFORM, "agent-events", kafka, "http://r", kafka.state_dir)
    with pytest.raises(LocalFlinkError, match="provision the local broker"):
        job.arguments(None)
    with pytest.raises(LocalFlinkError, match="not running"):
        job.kill()


def test_local_jobs_and_flink_deployments_share_every_checkpoint_state_and_python_setting(
    kafka: LocalKafka,
) -> None:
    """One derivation, two realizations: a setting one of them has, the other has with the same value
    (state paths aside: a local folder here, the stack's state URI there)."""
    from components import flink_application as fa
    from headwater import flink_conf

    shared = set(flink_conf.flink_conf(1_000, "file:///c", "file:///s"))
    paths = {"execution.checkpointing.dir", "execution.checkpointing.savepoint-dir"}
    for app in PLATFORM.apps:
        local = conf(LocalFlinkJob(PLATFORM, app.name, kafka, "http://r", kafka.state_dir).arguments(None))
        deployed = fa.flink_configuration(PLATFORM, app)
        for key in sorted(shared - paths):
            assert local.get(key) == deployed.get(key), (app.name, key, local.get(key), deployed.get(key))
        assert deployed["python.execution-mode"] in ("process", "thread")


def test_the_settings_derivation_imports_nothing_above_the_spec() -> None:
    """headwater.flink_conf sits below the components and the local runtime, which both import it."""
    import ast

    from headwater.config import ROOT

    tree = ast.parse((ROOT / "headwater" / "flink_conf.py").read_text())
    imported = {
        n.module if isinstance(n, ast.ImportFrom) else alias.name
        for n in ast.walk(tree)
        if isinstance(n, ast.Import | ast.ImportFrom)
        for alias in n.names
    }
    project = {m for m in imported if m and m.split(".")[0] in ("headwater", "components", "flink_apps")}
    assert project <= {"headwater.spec", "headwater.versions"}, project


def test_each_start_keeps_the_flink_logs_of_the_runs_before(tmp_path: Path) -> None:
    """Flink writes every run's log under the same name; a killed run's log must survive the restart."""
    log = tmp_path / "flink-root-python-vm.log"
    for run in range(1, 5):
        keep_previous_logs(tmp_path, kept=2)
        log.write_text(f"run {run}\n")
    assert log.read_text() == "run 4\n"
    assert (tmp_path / f"{log.name}.1").read_text() == "run 3\n"
    assert (tmp_path / f"{log.name}.2").read_text() == "run 2\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [log.name, f"{log.name}.1", f"{log.name}.2"]


def test_registry_credentials_reach_the_app_in_a_private_properties_file(kafka: LocalKafka) -> None:
    """The app reads schemas as itself: its properties carry `schema.registry.basic.auth.user.info`."""
    job = LocalFlinkJob(
        PLATFORM,
        "agent-events",
        kafka,
        "http://r",
        kafka.state_dir,
        registry_user_info="agent-events:s3cr3t",
    )
    job.rest_port = 18081
    args = job.arguments(None)
    (path,) = options(args, "--kafka-properties-file")
    props = Path(path)
    assert props.parent == kafka.state_dir / "flink" / "agent-events"
    assert props.read_text().splitlines() == [
        "security.protocol=SASL_SSL",
        "schema.registry.basic.auth.user.info=agent-events:s3cr3t",
    ]
    assert oct(props.stat().st_mode & 0o777) == "0o600"
    assert not any("s3cr3t" in a for a in args)
