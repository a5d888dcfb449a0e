"""The HTTP face of the prediction service (Starlette on uvicorn).

    POST /predict      {"records": [...]} or {"entity_ids": [...]} (or any MLflow format) -> scores with
                       prediction id, model version and variant per row
    POST /invocations  MLflow's scoring protocol: same request formats, same {"predictions": [...]}
    POST /feedback     {"labels": [{"prediction_id": ..., "label": ...}]}: late labels for the canary
    GET  /health  /ready  /version  /metrics

Errors use MLflow's shape, {"error_code": ..., "message": ...}, with a message that names the field.
With ML_PLATFORM_SERVING_TOKEN set, the POST endpoints need `Authorization: Bearer <token>`.
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import json
import logging
import math
import os
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Any

import orjson
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from ml_platform.serving.schema import MLFLOW_FORMATS, InputError, records_of
from ml_platform.serving.service import NotReadyError, PredictionService
from ml_platform.serving.traffic import CHECK_HEADER

log = logging.getLogger("ml_platform.serving")
TOKEN_ENV = "ML_PLATFORM_SERVING_TOKEN"


class HTTPError(Exception):
    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def _json(payload: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(payload, option=orjson.OPT_SERIALIZE_NUMPY), status_code=status,
                    media_type="application/json")


def create_app(service: PredictionService, *, token: str | None = None) -> Starlette:
    settings = service.settings
    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    metrics = service.metrics

    def endpoint(name: str, *, protected: bool = False) -> Callable:
        """Times the handler and counts its status; turns known errors into 4xx/5xx JSON."""
        def wrap(handler: Callable[[Request], Awaitable[Response]]) -> Callable:
            async def run(request: Request) -> Response:
                started = time.perf_counter()
                try:
                    if protected and token:
                        given = request.headers.get("authorization", "")
                        if not hmac.compare_digest(given.encode(), f"Bearer {token}".encode()):
                            raise HTTPError(401, "UNAUTHENTICATED", "missing or wrong bearer token")
                    response = await handler(request)
                except HTTPError as exc:
                    response = _json({"error_code": exc.code, "message": exc.message}, exc.status)
                except InputError as exc:
                    response = _json({"error_code": "BAD_REQUEST", "message": str(exc)}, 400)
                except KeyError as exc:  # our bug, not an unknown id (that is UnknownEntityError)
                    log.exception("%s failed", name)
                    response = _json({"error_code": "INTERNAL_ERROR", "message": f"missing key {exc}"}, 500)
                except LookupError as exc:  # an entity id the online feature table does not know
                    response = _json({"error_code": "NOT_FOUND", "message": str(exc)}, 404)
                except NotReadyError as exc:
                    response = _json({"error_code": "NOT_READY", "message": str(exc)}, 503)
                except Exception as exc:
                    log.exception("%s failed", name)
                    response = _json({"error_code": "INTERNAL_ERROR", "message": str(exc)}, 500)
                metrics.requests.labels(name, str(response.status_code)).inc()
                metrics.request_latency.labels(name).observe(time.perf_counter() - started)
                return response
            return run
        return wrap

    async def read_json(request: Request, *, require_json_type: bool) -> Any:
        content_type = request.headers.get("content-type", "")
        if require_json_type and content_type.split(";")[0].strip() != "application/json":
            raise HTTPError(415, "UNSUPPORTED_MEDIA_TYPE",
                            f"content type must be application/json, got '{content_type or 'none'}'")
        declared = request.headers.get("content-length")
        if declared and declared.isdigit() and int(declared) > settings.max_body_bytes:
            raise HTTPError(413, "PAYLOAD_TOO_LARGE", f"body of {declared} bytes is over the limit of "
                            f"{settings.max_body_bytes} bytes (serving.max_body_bytes)")
        chunks, size = [], 0
        async for chunk in request.stream():  # a body without a length is cut off at the limit, not read whole
            size += len(chunk)
            if size > settings.max_body_bytes:
                raise HTTPError(413, "PAYLOAD_TOO_LARGE",
                                f"body is over the limit of {settings.max_body_bytes} bytes (serving.max_body_bytes)")
            chunks.append(chunk)
        body = b"".join(chunks)
        if not body.strip():
            raise InputError("empty request body: send a JSON object")
        try:
            return orjson.loads(body)
        except orjson.JSONDecodeError:
            pass
        try:  # the slow path: MLflow's own client writes NaN for missing values, which orjson rejects
            return json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise InputError(f"malformed JSON: {exc}") from None

    def checked_rows(records: list[Any], fmt: str) -> tuple[list[dict], list[str | None]]:
        champion = service.models.champion
        if champion is None:
            raise NotReadyError(f"no champion of model '{service.config.model.name}' is loaded yet")
        schema = champion.schema
        if fmt == "entity_ids":
            records = [{schema.id_column: str(e)} for e in records]
        lookup = [i for i, r in enumerate(records) if schema.wants_lookup(r)]
        if lookup:
            records = list(records)
            for i, features in zip(lookup, service.online_features([str(records[i][schema.id_column])
                                                                    for i in lookup]), strict=True):
                records[i] = {**features, **records[i]}
        rows = [schema.check_row(r, f"record {i}") for i, r in enumerate(records)]
        return rows, [schema.entity_of(r) for r in records]

    @endpoint("predict", protected=True)
    async def predict(request: Request) -> Response:
        body = await read_json(request, require_json_type=False)
        fmt, records = records_of(body, ("records", "entity_ids", *MLFLOW_FORMATS))
        rows, entities = checked_rows(records, fmt)
        out = await service.score(rows, entities, check=CHECK_HEADER in request.headers)
        return _json({"predictions": [
            {"prediction_id": pid, "entity_id": entity, "score": score, "label": label, "model_version": version,
             "variant": variant}
            for pid, entity, score, label, version, variant in zip(
                out["prediction_id"], entities, out["score"], out["label"], out["model_version"], out["variant"],
                strict=True)
        ]})

    @endpoint("invocations", protected=True)
    async def invocations(request: Request) -> Response:
        body = await read_json(request, require_json_type=True)
        fmt, records = records_of(body, MLFLOW_FORMATS)
        rows, entities = checked_rows(records, fmt)
        out = await service.score(rows, entities, check=CHECK_HEADER in request.headers)
        return _json({"predictions": out["label"]})

    @endpoint("feedback", protected=True)
    async def feedback(request: Request) -> Response:
        body = await read_json(request, require_json_type=False)
        items = body.get("labels") if isinstance(body, dict) else None
        if not isinstance(items, list) or not items:
            raise InputError('expected {"labels": [{"prediction_id": ..., "label": ...}, ...]}')
        data = service.config.data
        labels = {}
        for i, item in enumerate(items):
            if not isinstance(item, dict) or "prediction_id" not in item or "label" not in item:
                raise InputError(f"labels[{i}]: expected prediction_id and label")
            label = item["label"]
            if data.labels is None:  # a regression: the label is the true value
                if isinstance(label, bool) or not isinstance(label, int | float) or not math.isfinite(label):
                    raise InputError(f"labels[{i}]: label {label!r} is not a finite number (a regression's label "
                                     "is the true value)")
                labels[str(item["prediction_id"])] = float(label)
                continue
            if label not in data.labels:
                raise InputError(f"labels[{i}]: label {label!r} is not one of {data.labels}")
            labels[str(item["prediction_id"])] = int(label == data.positive_label)
        return _json({"received": len(labels), "matched": service.traffic.add_labels(labels)})

    @endpoint("health")
    async def health(request: Request) -> Response:
        return _json({"status": "ok", "uptime_seconds": round(time.time() - service.started_at, 1)})

    @endpoint("ready")
    async def ready(request: Request) -> Response:
        champion = service.models.champion
        if not service.ready:
            reason = service.models.champion_refused() or service.models.last_error or "loading the champion"
            return _json({"ready": False, "reason": reason}, 503)
        return _json({"ready": True, "model": service.config.model.name, "champion_version": champion.version})

    @endpoint("version")
    async def version(request: Request) -> Response:
        return _json(service.version_info())

    @endpoint("metrics")
    async def metrics_text(request: Request) -> Response:
        metrics.log_pending.set(service.prediction_log.pending_rows())
        return Response(metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette):
        await service.start_batching()
        # Load in a thread: /health answers at once, /ready once the champion is loaded.
        loading = asyncio.create_task(asyncio.to_thread(service.start_background))
        yield
        await loading
        await service.stop()

    return Starlette(routes=[
        Route("/predict", predict, methods=["POST"]),
        Route("/invocations", invocations, methods=["POST"]),
        Route("/feedback", feedback, methods=["POST"]),
        Route("/health", health, methods=["GET"]),
        Route("/ping", health, methods=["GET"]),  # MLflow's liveness path
        Route("/ready", ready, methods=["GET"]),
        Route("/version", version, methods=["GET"]),
        Route("/metrics", metrics_text, methods=["GET"]),
    ], lifespan=lifespan)


def build_service(config: Any, *, version: str | None = None, log_predictions: bool = True) -> PredictionService:
    """The service on the platform's resources (the same registry, warehouse and audit log as the runs).
    `version` pins the model answering (instead of following `champion`); `log_predictions=False` keeps its
    answers out of the prediction log (a smoke test's rows are not traffic)."""
    from ml_platform import settings
    from ml_platform.resources import Alerts, Governance, ModelRegistry, Warehouse
    from ml_platform.serving.online_store import OnlineFeatureStore

    registry, warehouse = ModelRegistry(), Warehouse()
    alerts = Alerts(warehouse=warehouse)
    return PredictionService(
        config, registry=registry, warehouse=warehouse,
        governance=Governance(registry=registry, warehouse=warehouse, alerts=alerts), alerts=alerts,
        online_store=OnlineFeatureStore(settings.platform_paths().online_store),
        pinned_version=version, log_predictions=log_predictions,
    )


def serve(config: Any, *, host: str = "127.0.0.1", port: int = 8080, version: str | None = None,
          log_predictions: bool = True) -> None:
    import uvicorn

    sys.setswitchinterval(0.001)  # background threads (log writer, alias watcher) yield the GIL to requests sooner
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    app = create_app(build_service(config, version=version, log_predictions=log_predictions))
    uvicorn.run(app, host=host, port=port, loop="uvloop", http="httptools", log_level="warning",
                access_log=False, timeout_graceful_shutdown=10)
