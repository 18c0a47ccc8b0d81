"""The MiniCluster runs Python operators the way a cluster does: in worker processes without a JVM gateway.

Run inside the submitting process ("loopback") an operator could reach the gateway (py4j) and pass every
test here, then fail on Kubernetes on its first record.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from flink_harness import environment
from py4j.protocol import Py4JJavaError
from pyflink.common import Types
from pyflink.datastream.data_stream import CloseableIterator


def _through_the_gateway(value: int) -> int:
    from pyflink.java_gateway import get_gateway

    return int(get_gateway().jvm.java.lang.Math.abs(value))


@pytest.mark.timeout(180)
def test_an_operator_that_touches_the_jvm_gateway_fails_the_job(tmp_path: Path) -> None:
    env = environment(tmp_path)
    out = env.from_collection([-1, 2], type_info=Types.INT()).map(_through_the_gateway, Types.INT())
    results = out.execute_and_collect()
    assert isinstance(results, CloseableIterator)  # a list only when a limit is given
    with results, pytest.raises(Py4JJavaError) as failure:
        list(results)
    assert "PythonGatewayServer during Python UDF execution" in str(failure.value)


def _pid(value: int) -> int:
    return os.getpid()


@pytest.mark.timeout(180)
def test_operators_run_outside_the_submitting_process(tmp_path: Path) -> None:
    env = environment(tmp_path)
    out = env.from_collection([1, 2], type_info=Types.INT()).map(_pid, Types.INT())
    results = out.execute_and_collect()
    assert isinstance(results, CloseableIterator)
    with results:
        pids = set(results)
    assert pids and os.getpid() not in pids, "Python operators ran inside the process that submitted the job"


# What a Python worker imports before it runs the first record (PyFlink's operations pull in Beam and pandas).
_WORKER_MODULES = (
    "pyflink.fn_execution.beam.beam_sdk_worker_main",
    "pyflink.fn_execution.table.operations",
    "apache_beam.coders.coders",
    "pandas.core.frame",
    "flink_apps.agent_events.pipeline",
)


def test_python_workers_start_from_compiled_bytecode() -> None:
    """Each worker imports PyFlink, Beam and pandas at start: from source that costs about 2.5x the CPU, and
    neither a worker whose environment says PYTHONDONTWRITEBYTECODE nor the image's non-root user writes the
    bytecode itself. So the environments are built with it (`--compile-bytecode`), here and in the image."""
    import importlib
    import importlib.util

    uncompiled = []
    for name in _WORKER_MODULES:
        origin = importlib.import_module(name).__file__
        assert origin is not None
        if not Path(importlib.util.cache_from_source(origin)).is_file():
            uncompiled.append(name)
    project = Path(__file__).resolve().parents[2]
    if uncompiled:  # the project's own modules compile as the tests import them; the installed ones must not
        assert all(n.startswith("flink_apps.") for n in uncompiled), f"no bytecode installed for {uncompiled}"
    dockerfile = (project / "flink_apps" / "Dockerfile").read_text()
    installs = [line for line in dockerfile.split("uv pip install")[1:]]
    assert installs and all("--compile-bytecode" in i.split(";")[0] for i in installs), (
        "the image installs Python packages without --compile-bytecode"
    )
