"""The feature server: agents' online reads over HTTP, with provenance and freshness. `python -m feature_store.server`.

A thin HTTP layer over `feature_store.serving.FeatureClient`, not Feast's own `feast serve`: Feast's server
answers with values and statuses only, so the window's age (freshness) and the row's provenance would be
left to every agent to work out, and an unknown view or entity comes back as an empty value or a server
error rather than a 404 naming what exists. Here every answer carries them, computed once, the same way the
SDK path computes them.

- `GET /features/{feature_set}/{version}/{entity}`: one entity's answer.
- `POST /features/{feature_set}/{version}` with `{"entities": [...]}`: answers in the order asked.
- `GET /features`: the served views (feature set, version, entity, freshness budget, TTL).
- `GET /healthz` (the process answers) and `GET /readyz` (the online store answers an authenticated PING).

Errors are JSON `{"error": <kind>, "detail": <what exists>}`: 404 for an unknown feature set, version or
entity (or one whose row expired), 400 for a malformed version or an empty or oversized batch.

The Redis password comes from the environment (HEADWATER_REDIS_PASSWORD), never from an argument.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Any

import redis
import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from feature_store.description import Description
from feature_store.repo import REDIS_PASSWORD_ENV, Redis, open_store
from feature_store.serving import (
    FeatureAnswer,
    FeatureClient,
    FeatureLookupError,
    UnknownEntity,
    UnknownFeatureSet,
    UnknownVersion,
)

LOG = logging.getLogger("feature_store.server")
MAX_BATCH = 1000


class Batch(BaseModel):
    entities: list[str]


def answer_json(answer: FeatureAnswer) -> dict[str, Any]:
    """An answer as JSON: timestamps in ISO 8601 (UTC), the freshness figure in seconds."""

    def plain(value: Any) -> Any:
        return value.isoformat() if isinstance(value, datetime) else value

    return {
        "entity": answer.entity,
        "view": answer.view,
        "values": {k: plain(v) for k, v in answer.values.items()},
        "window_start": plain(answer.window_start),
        "window_end": plain(answer.window_end),
        "freshness_s": round(answer.freshness_s, 3),
        "fresh": answer.fresh,
        "provenance": asdict(answer.provenance),
    }


def _error(status: int, kind: str, detail: str) -> JSONResponse:
    return JSONResponse(status_code=status, content={"error": kind, "detail": detail})


_KINDS: dict[type[FeatureLookupError], str] = {
    UnknownFeatureSet: "unknown_feature_set",
    UnknownVersion: "unknown_version",
    UnknownEntity: "unknown_entity",
}


def create_app(client: FeatureClient, ping: Any = None) -> FastAPI:
    """The HTTP API over `client`; `ping()` says whether the online store answers (for /readyz)."""
    app = FastAPI(title="Headwater feature server", docs_url=None, redoc_url=None, openapi_url=None)
    # Feast's store keeps a registry cache it refreshes on reads: one read at a time through it.
    lock = threading.Lock()

    def lookup(feature_set: str, version: str, entities: list[str]) -> JSONResponse | list[FeatureAnswer]:
        if not version.isdigit():
            return _error(400, "bad_version", f"version {version!r}: allowed: a positive integer, like 1")
        if not entities or len(entities) > MAX_BATCH:
            return _error(
                400, "bad_batch", f"{len(entities)} entities: allowed: 1 to {MAX_BATCH} per request"
            )
        try:
            with lock:
                return client.get_many(feature_set, int(version), entities)
        except FeatureLookupError as exc:
            return _error(404, _KINDS.get(type(exc), "not_found"), str(exc))

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/readyz")
    def readyz() -> JSONResponse:
        try:
            ok = bool(ping()) if ping is not None else True
        except Exception as exc:  # a down store is an answer here, not a crash
            return _error(503, "store_unavailable", f"{type(exc).__name__}: {exc}")
        return JSONResponse({"status": "ok"}) if ok else _error(503, "store_unavailable", "no PONG")

    @app.get("/features")
    def views() -> dict[str, Any]:
        return {
            "views": [
                {
                    "view": v.name,
                    "feature_set": v.feature_set,
                    "version": v.version,
                    "entity": v.join_key,
                    "freshness_s": v.freshness_s,
                    "ttl_s": v.ttl_s,
                    "topic": v.topic,
                }
                for v in client.description.views
            ]
        }

    @app.get("/features/{feature_set}/{version}/{entity}")
    def one(feature_set: str, version: str, entity: str) -> Any:
        found = lookup(feature_set, version, [entity])
        return found if isinstance(found, JSONResponse) else answer_json(found[0])

    @app.post("/features/{feature_set}/{version}")
    def many(feature_set: str, version: str, batch: Batch) -> Any:
        found = lookup(feature_set, version, batch.entities)
        return found if isinstance(found, JSONResponse) else {"answers": [answer_json(a) for a in found]}

    return app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="feature_store.server", description=__doc__)
    p.add_argument("--repo", type=Path, required=True, help="the repo description (repo.json)")
    p.add_argument("--store-dir", type=Path, required=True, help="Feast's registry folder (its own)")
    p.add_argument("--redis", required=True, help="host:port of the online store")
    p.add_argument("--redis-tls", action="store_true")
    p.add_argument("--redis-ca", help="CA bundle for Redis over TLS")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s", stream=sys.stdout
    )
    args = parse_args(argv)
    host, _, port = args.redis.rpartition(":")
    if not host or not port.isdigit():
        raise SystemExit(f"--redis {args.redis!r}: allowed: host:port")
    where = Redis(host, int(port), tls=args.redis_tls, ca_file=args.redis_ca)
    description = Description.load(args.repo)
    # Its own registry file, applied from the description (idempotent): the same views as the materializer's.
    store = open_store(description, args.store_dir, where, apply=True)
    password = os.environ.get(REDIS_PASSWORD_ENV)
    pinger = redis.Redis(
        host=where.host,
        port=where.port,
        password=password,
        ssl=where.tls,
        ssl_ca_certs=where.ca_file,
        socket_timeout=2,
        socket_connect_timeout=2,
    )
    app = create_app(FeatureClient(store, description), pinger.ping)
    LOG.info("serving %s on %s:%d", ", ".join(v.name for v in description.views), args.host, args.port)
    # uvicorn shuts down gracefully on SIGTERM/SIGINT, then re-raises the signal to the handler found before it:
    # a no-op here, so a requested stop ends with status 0 rather than "killed by SIGTERM".
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda signum, frame: None)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    LOG.info("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
