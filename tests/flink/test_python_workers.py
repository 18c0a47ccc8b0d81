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


def _through_the_gateway(value: int) -> int:
    from pyflink.java_gateway import get_gateway

    return int(get_gateway().jvm.java.lang.Math.abs(value))


@pytest.mark.timeout(180)
def test_an_operator_that_touches_the_jvm_gateway_fails_the_job(tmp_path: Path) -> None:
    env = environment(tmp_path)
    out = env.from_collection([-1, 2], type_info=Types.INT()).map(_through_the_gateway, Types.INT())
    with out.execute_and_collect() as results, pytest.raises(Py4JJavaError) as failure:
        list(results)
    assert "PythonGatewayServer during Python UDF execution" in str(failure.value)


def _pid(value: int) -> int:
    return os.getpid()


@pytest.mark.timeout(180)
def test_operators_run_outside_the_submitting_process(tmp_path: Path) -> None:
    env = environment(tmp_path)
    out = env.from_collection([1, 2], type_info=Types.INT()).map(_pid, Types.INT())
    with out.execute_and_collect() as results:
        pids = set(results)
    assert pids and os.getpid() not in pids, "Python operators ran inside the process that submitted the job"
