"""The approvers' page as a process: HTTPS only, as the catalog's approvers' principal.

    python -m approval_gate.approvers.main --description approvers.json --kafka-config kafka.json \
        --users users.json --session-key-file session.key --tls-cert tls.crt --tls-key tls.key --port 8443

It refuses to start without a certificate: passwords and session cookies never travel in clear text.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import uvicorn

from approval_gate.approvers.auth import Sessions, Users, UsersFileError
from approval_gate.approvers.board import Board
from approval_gate.approvers.kafka_io import AuditReader, DecisionWriter, PageDescription
from approval_gate.approvers.web import create_app
from approval_gate.main import PASSWORD_ENV, kafka_settings
from approval_gate.tracing import PageTracer

LOG = logging.getLogger("approval_gate.approvers")


class KafkaBackend:
    """The web app's view of Kafka: the audit reader's board and the decision writer."""

    def __init__(self, reader: AuditReader, writer: DecisionWriter) -> None:
        self.reader, self.writer = reader, writer

    def snapshot(self, read: Callable[[Board], Any]) -> Any:
        with self.reader.lock:
            return read(self.reader.board)

    def send(self, record: Mapping[str, Any], headers: list[tuple[str, bytes]] | None = None) -> None:
        self.writer.send(record, headers)

    def wait_for(self, predicate: Callable[[Board], bool], timeout_s: float) -> bool:
        return self.reader.wait_for(predicate, timeout_s)

    def ready(self) -> bool:
        return self.reader.caught_up.is_set()

    def live(self) -> bool:
        return self.reader.live()


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="approval_gate.approvers.main", description=__doc__.split("\n")[0])
    p.add_argument("--description", type=Path, required=True, help="the page description (approvers.json)")
    p.add_argument(
        "--kafka-config",
        type=Path,
        required=True,
        help=f"librdkafka settings of the approvers' principal (JSON; a password in it, or in ${PASSWORD_ENV})",
    )
    p.add_argument("--users", type=Path, required=True, help="the approvers' users file (scrypt hashes)")
    p.add_argument("--session-key-file", type=Path, required=True, help="the key that signs session cookies")
    p.add_argument(
        "--tls-cert", type=Path, required=True, help="the page's certificate (PEM, with its chain)"
    )
    p.add_argument("--tls-key", type=Path, required=True, help="its private key (PEM)")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8443)
    p.add_argument("--title", default="Approvals")
    p.add_argument(
        "--traces-file",
        type=Path,
        default=None,
        help="append the spans of the decisions sent here, one JSON line each (default: none; "
        "OTEL_EXPORTER_OTLP_ENDPOINT also sends them to that collector over OTLP/HTTP)",
    )
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    args = parse_args(argv)
    missing = [str(f) for f in (args.tls_cert, args.tls_key, args.session_key_file) if not f.is_file()]
    if missing:
        print(f"approvers' page: missing {', '.join(missing)} (the page serves HTTPS only)", file=sys.stderr)
        return 2
    try:
        users = Users.load(args.users)
    except UsersFileError as exc:
        print(exc, file=sys.stderr)
        return 2
    key = args.session_key_file.read_bytes().strip()
    if len(key) < 32:
        print(
            f"approvers' page: {args.session_key_file} holds {len(key)} bytes; at least 32", file=sys.stderr
        )
        return 2
    description = PageDescription.load(args.description)
    kafka = kafka_settings(args.kafka_config)
    reader = AuditReader(description, kafka)
    writer = DecisionWriter(description, kafka)
    tracer = PageTracer(f"{description.principal}-page", args.traces_file)
    reader.start()
    app = create_app(KafkaBackend(reader, writer), users, Sessions(key), title=args.title, tracer=tracer)
    LOG.info(
        "approvers' page for %d people as %s on https://%s:%d",
        len(users.hashes),
        description.principal,
        args.host,
        args.port,
    )
    # uvicorn handles SIGINT/SIGTERM itself (stops accepting, finishes requests) and then raises the signal
    # again for the handler that was there before it: this one, so that the reader and writer close below.
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda signum, frame: None)
    try:
        uvicorn.run(
            app,
            host=args.host,
            port=args.port,
            ssl_certfile=str(args.tls_cert),
            ssl_keyfile=str(args.tls_key),
            log_level="info",
            access_log=True,
            proxy_headers=False,
            server_header=False,
            timeout_graceful_shutdown=3,  # a browser's idle keep-alive connection must not hold the stop up
        )
    finally:
        reader.stop()
        writer.close()
        tracer.shutdown()
        LOG.info("stopped")
    return 0


if __name__ == "__main__":
    os.umask(0o077)
    sys.exit(main())
