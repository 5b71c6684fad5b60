"""REST handlers of AI jobs: ``/neuronova/ai/jobs...`` (USER scope: every handler authorizes).

- ``POST /neuronova/ai/jobs`` ``{"study", "model", "series"?}``: admins; doctors and
  radiologists for studies they may see. 201 with a new job, 200 with the existing job of
  the same study content and model.
- ``GET /neuronova/ai/jobs?study=&status=&model=&limit=&offset=``: jobs of the studies the
  caller may see (the gate's visibility), newest first.
- ``GET /neuronova/ai/jobs/{id}``: one job with its history (404 when not visible).
- ``POST /neuronova/ai/jobs/{id}/retry``: a failed job back to the queue (same roles as POST).

Every call is audited (DICOM "Application Activity", 110100; denials as security alerts).
"""

from __future__ import annotations

from ..audit import ALLOW, DENY
from ..dicomweb.paths import UID_RE
from ..errors import HttpError
from ..gate import Gate
from ..gate.api import caller
from ..gate.identity import Identity
from ..gate.policy import PHYSICIAN_ROLES
from ..gate.routes import EVENT_APPLICATION_ACTIVITY, EVENT_SECURITY_ALERT
from ..http import Request, Response, json_response
from ..router import Router
from ..scope import Scope
from .jobs import STATUSES, Job, StateError
from .service import AiService

JOB_ID = r"[0-9a-f]{32}"
ROUTE = "ai/jobs"



class AiApi:
    def __init__(self, gate: Gate, service: AiService) -> None:
        self.gate = gate
        self.service = service

    def register(self, router: Router) -> None:
        router.add("GET", "/neuronova/ai/jobs", self.list_jobs, scope=Scope.USER)
        router.add("POST", "/neuronova/ai/jobs", self.create_job, scope=Scope.USER)
        router.add("GET", f"/neuronova/ai/jobs/(?P<id>{JOB_ID})", self.get_job, scope=Scope.USER)
        router.add("POST", f"/neuronova/ai/jobs/(?P<id>{JOB_ID})/retry", self.retry_job, scope=Scope.USER)

    def _audit(self, identity: Identity, request: Request, study: str, decision: str, reason: str) -> None:
        event = EVENT_APPLICATION_ACTIVITY if decision == ALLOW else EVENT_SECURITY_ALERT
        self.gate.record(identity, request.ip, request.method, ROUTE, request.path, study, decision, reason, event)

    def _json(self, job: Job, with_history: bool = False) -> dict[str, object]:
        history = self.service.jobs.history(job.id) if with_history else None
        return job.to_json(self.service.max_attempts, history)

    def _may_see(self, identity: Identity, job: Job) -> bool:
        return self.gate.policy.decide(identity, job.study_uid).allowed

    def _may_run(self, identity: Identity, request: Request, study: str) -> None:
        """Admins, or doctors and radiologists allowed on the study (else 403, audited)."""
        if not (identity.is_admin or identity.role in PHYSICIAN_ROLES):
            self._audit(identity, request, study, DENY, f"role {identity.role or 'none'} may not run AI jobs")
            raise HttpError(403, "only admins, doctors and radiologists run AI jobs")
        decision = self.gate.policy.decide(identity, study)
        if not decision.allowed:
            self._audit(identity, request, study, DENY, decision.reason)
            raise HttpError(403, "you may not run AI jobs on this study")

    # -- handlers ------------------------------------------------------------------------

    def create_job(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        body = request.json()
        if not isinstance(body, dict) or not isinstance(body.get("study"), str) or not UID_RE.match(body["study"]) \
                or not isinstance(body.get("model"), str) or len(body["study"]) > 64:
            raise HttpError(400, 'body must be {"study": "<StudyInstanceUID>", "model": "<name>"}')
        series = body.get("series", "")
        if not isinstance(series, str) or (series and not UID_RE.match(series)):
            raise HttpError(400, "series must be a SeriesInstanceUID")
        study, model = body["study"], body["model"]
        self._may_run(identity, request, study)
        job, created = self.service.submit(study, model, identity.subject, series)
        self._audit(identity, request, study, ALLOW,
                    f"{'created' if created else 'existing'} AI job {job.id} ({model})")
        return json_response({"created": created, **self._json(job)}, 201 if created else 200)

    def list_jobs(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        q = request.query
        status = q.get("status", "")
        if status and status not in STATUSES:
            raise HttpError(400, f"status must be one of {list(STATUSES)}")
        study = q.get("study", "")
        if study and not UID_RE.match(study):
            raise HttpError(400, "study must be a StudyInstanceUID")
        visibility = self.gate.visibility(identity)
        jobs = self.service.jobs.find(
            study=study, status=status, model=q.get("model", ""),
            studies=None if visibility.everything else visibility.studies,
            limit=request.int_param("limit", 100, 1, 1000), offset=request.int_param("offset", 0, 0, 10**9),
        )
        self._audit(identity, request, study, ALLOW, f"list AI jobs ({len(jobs)})")
        return json_response([self._json(job) for job in jobs])

    def _visible_job(self, identity: Identity, request: Request) -> Job:
        """The job in the path, if the caller may see its study (404 otherwise, audited)."""
        job = self.service.jobs.get(request.groups[0])
        if job is None or not self._may_see(identity, job):
            if job is not None:
                self._audit(identity, request, job.study_uid, DENY, "job of a study the caller may not see")
            raise HttpError(404, "no such job")
        return job

    def get_job(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        job = self._visible_job(identity, request)
        self._audit(identity, request, job.study_uid, ALLOW, f"read AI job {job.id}")
        return json_response(self._json(job, with_history=True))

    def retry_job(self, request: Request) -> Response:
        identity = caller(self.gate, request)
        job = self._visible_job(identity, request)
        self._may_run(identity, request, job.study_uid)
        try:
            job = self.service.retry(job.id, identity.subject)
        except StateError as exc:
            raise HttpError(409, str(exc)) from exc
        self._audit(identity, request, job.study_uid, ALLOW, f"retry AI job {job.id}")
        return json_response(self._json(job, with_history=True))
