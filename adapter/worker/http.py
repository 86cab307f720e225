"""The worker's HTTP side: ``/healthz`` for operators and the rest-hook endpoint for FHIR Subscriptions.

Notifications must carry the worker's secret (sent by the server from ``Subscription.channel.header``);
a notification only queues patients for re-screening, it is never trusted as data: the worker reads
the patient's record from the server itself.
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from adapter.fhir.client import FhirClient
from adapter.fhir.outcome import outcome_response
from adapter.fhir.search import any_of
from adapter.screening.wording import titles
from adapter.sources.server import observation_tokens, population_tokens
from mappings.clinical.record import patients_in, resources_in
from mappings.clinical.resource_types import SUBJECT_ELEMENT
from mappings.criteria import CriteriaDefinition

from .changes import render as render_changes
from .changes import what_changed
from .loop import Worker

log = logging.getLogger(__name__)

NOTIFY_PATH = "/notify"
MAX_NOTIFICATION_BYTES = 5_000_000


def build_app(worker: Worker, notify_secret: str) -> Starlette:
    async def healthz(request: Request) -> Response:
        status = worker.status.as_dict() | {
            "counts": worker.state.counts(),
            "studies": worker.state.counts_by_study(),
        }
        healthy = worker.status.consecutive_failures == 0
        return JSONResponse(status, status_code=200 if healthy else 503)

    async def notify(request: Request) -> Response:
        supplied = request.headers.get("authorization", "")
        if not hmac.compare_digest(supplied.encode(), f"Bearer {notify_secret}".encode()):
            return outcome_response(401, "login", "missing or wrong notification token")
        body = await request.body()
        if len(body) > MAX_NOTIFICATION_BYTES:
            return outcome_response(413, "too-long", "notification too large")
        if not body.strip():
            worker.notify_change()  # an empty (id-only) notification: poll now
            return Response(status_code=200)
        try:
            resource = json.loads(body)
        except (json.JSONDecodeError, UnicodeDecodeError):
            return outcome_response(400, "structure", "notification body is not JSON")
        resources = resources_in(resource)
        patients = patients_in(resources)
        if patients:
            log.info("subscription notification", extra={"patients": len(patients)})
            worker.notify_patients(patients)
        else:
            worker.notify_change()
        return Response(status_code=200)

    async def report(request: Request) -> Response:
        """What changed since the last full pass (``?since=`` ISO date-time; ``?format=html|text``)."""
        since = None
        if request.query_params.get("since"):
            try:
                since = datetime.fromisoformat(request.query_params["since"])
            except ValueError:
                return outcome_response(400, "value", "since: not an ISO date or date-time")
            since = since if since.tzinfo else since.replace(tzinfo=UTC)
        changes = what_changed(worker.state, since, {d.study: titles(d) for d in worker.definitions})
        fmt = request.query_params.get("format", "json")
        if fmt == "html":
            return HTMLResponse(render_changes(changes, "html"))
        if fmt == "text":
            return PlainTextResponse(render_changes(changes, "text"))
        return JSONResponse(changes)

    routes = [
        Route("/healthz", healthz, methods=["GET"]),
        Route("/report", report, methods=["GET"]),
        Route(NOTIFY_PATH, notify, methods=["POST", "PUT"]),
        Route(NOTIFY_PATH + "/{rest:path}", notify, methods=["POST", "PUT"]),
    ]
    return Starlette(routes=routes)


def subscription_criteria(worker: Worker) -> list[str]:
    """What the worker subscribes to: new Conditions of any study's population, the Observations any
    study's criteria read, and every other type whose changes can change a result (filtered by
    population on arrival)."""

    def union(tokens: Callable[[CriteriaDefinition], list[str]]) -> str:
        return any_of(dict.fromkeys(t for d in worker.definitions for t in tokens(d)))

    criteria = [f"Condition?code={union(population_tokens)}", f"Observation?code={union(observation_tokens)}"]
    criteria += [f"{t}?" for t in SUBJECT_ELEMENT if t not in ("Condition", "Observation")]
    return [*criteria, "Patient?"]


async def ensure_subscriptions(client: FhirClient, worker: Worker, endpoint: str, secret: str) -> list[str]:
    """Create (or refresh the secret of) one rest-hook Subscription per criterion; return their ids."""
    existing = await client.search_resources("Subscription", {"url": endpoint, "_count": "200"})
    by_criteria = {s.get("criteria"): s for s in existing if s.get("resourceType") == "Subscription"}
    ids = []
    for criteria in subscription_criteria(worker):
        subscription: dict[str, Any] = {
            "resourceType": "Subscription",
            "status": "requested",
            "reason": "trial-adapter worker: re-screen "
            f"{', '.join(d.study for d in worker.definitions)} candidates on change",
            "criteria": criteria,
            "channel": {
                "type": "rest-hook",
                "endpoint": endpoint,
                "payload": "application/fhir+json",
                "header": [f"Authorization: Bearer {secret}"],
            },
        }
        current = by_criteria.get(criteria)
        if current is not None:
            subscription["id"] = current["id"]
            response = await client.request("PUT", f"Subscription/{current['id']}", json_body=subscription)
        else:
            response = await client.request("POST", "Subscription", json_body=subscription)
        ids.append(response.json()["id"])
    log.info("subscriptions in place", extra={"count": len(ids)})
    return ids
