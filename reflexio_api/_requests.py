"""The request layer: what to send, and how to read the answer.

Each builder is a pure function returning an `ApiCall`: method, path, body, query and the
parser of the decoded body. `interpret` turns an `httpx.Response` into the parsed result
or a typed error. The clients only send.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Generic, Literal, TypeVar
from urllib.parse import quote

import httpx
from pydantic import BaseModel, ValidationError

from reflexio_api._responses import decode
from reflexio_api.errors import (
    OperationInProgress,
    ServerReportedFailure,
    UnexpectedPayload,
    clean_server_text,
)
from reflexio_api.models import (
    AddRowsResult,
    AgentPlaybook,
    AggregationOperation,
    AggregationResult,
    BulkDeleteResult,
    CancelResult,
    ClearUserDataResult,
    ConfigWriteResult,
    Health,
    Interaction,
    ManualPlaybookGenerationResult,
    ManualProfileGenerationResult,
    OperationStarted,
    OperationStatus,
    PlaybookStatusName,
    Profile,
    ProfileDowngradeResult,
    ProfileStatistics,
    ProfileStatusName,
    ProfileUpgradeResult,
    PublishResult,
    ServiceName,
    StallNotified,
    StallState,
    UserPlaybook,
    UserPlaybookDowngradeResult,
    UserPlaybookUpgradeResult,
)
from reflexio_api.paging import Window

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

USER_PROFILES_TOP_K = 10_000
"""get_user_profiles asks for this many; a full answer raises IncompleteListing."""
MAX_IDS_PER_DELETE = 10_000
_OK = frozenset({200, 201, 202})
_IN_PROGRESS = "already in progress"
_NO_OPERATION = "No operation found"


class _PayloadProblem(Exception):
    def __init__(self, field: str | None, problem: str) -> None:
        super().__init__(problem)
        self.field = field
        self.problem = problem


class _Refused(Exception):
    def __init__(self, server_message: str) -> None:
        super().__init__(server_message)
        self.server_message = server_message


@dataclass(frozen=True)
class ApiCall(Generic[T]):
    """One REST call: what to send and how to parse the decoded JSON answer."""

    method: str
    path: str
    parse: Callable[[Any], T]
    json: Any = None
    params: Mapping[str, str | int] = field(default_factory=dict)
    long_running: bool = False
    accept: frozenset[int] = _OK

    @property
    def what(self) -> str:
        """Short description for messages, e.g. 'POST /api/upgrade_all_profiles'."""
        return f"{self.method} {self.path}"


def interpret(call: ApiCall[T], response: httpx.Response, base_url: str) -> T:
    """Map status, decode JSON, check `success`, validate: the result or a typed error."""
    body = decode(response, base_url, call.what, call.accept)
    try:
        return call.parse(body)
    except _Refused as refused:
        text = clean_server_text(refused.server_message)
        if _IN_PROGRESS in text:
            raise OperationInProgress(
                f"Reflexio at {base_url} refused {call.what}: another generation is already "
                "in progress. Wait for it (get_operation_status) or cancel it "
                "(cancel_operation), then try again.",
                server_message=text,
            ) from None
        raise ServerReportedFailure(
            f"Reflexio at {base_url} reported failure for {call.what} (HTTP 200, "
            f"success=false): {text}. Read the message and the server log before retrying.",
            server_message=text,
        ) from None
    except _PayloadProblem as bad:
        where = f"field '{bad.field}'" if bad.field else "the body"
        raise UnexpectedPayload(
            f"Reflexio at {base_url} answered {call.what} with an unexpected payload: {where} "
            f"{bad.problem}. Check that the server is reflexio-ai 0.2.32 compatible.",
            field=bad.field,
        ) from None


# --- parsing -------------------------------------------------------------------------------


def _object(body: Any) -> dict[str, Any]:
    if not isinstance(body, dict):
        raise _PayloadProblem(None, f"is a JSON {type(body).__name__}, not an object")
    return body


def _succeeded(body: Any) -> dict[str, Any]:
    data = _object(body)
    success = data.get("success")
    if success is False:
        raise _Refused(str(data.get("msg") or data.get("message") or "(no message)"))
    if success is not True:
        raise _PayloadProblem("success", "is missing or not a boolean")
    return data


def _validate(model: type[M], data: dict[str, Any]) -> M:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        location = ".".join(str(part) for part in first["loc"]) or None
        raise _PayloadProblem(location, f"is invalid ({first['msg']})") from None


def _model(model: type[M], *, envelope: bool = True) -> Callable[[Any], M]:
    def parse(body: Any) -> M:
        return _validate(model, _succeeded(body) if envelope else _object(body))

    return parse


class _Profiles(BaseModel):
    user_profiles: list[Profile]


class _UserPlaybooks(BaseModel):
    user_playbooks: list[UserPlaybook]


class _AgentPlaybooks(BaseModel):
    agent_playbooks: list[AgentPlaybook]


class _StatusEnvelope(BaseModel):
    operation_status: OperationStatus


def _parse_profiles(body: Any) -> list[Profile]:
    return _validate(_Profiles, _succeeded(body)).user_profiles


def _parse_user_playbooks(body: Any) -> list[UserPlaybook]:
    return _validate(_UserPlaybooks, _succeeded(body)).user_playbooks


def _parse_agent_playbooks(body: Any) -> list[AgentPlaybook]:
    return _validate(_AgentPlaybooks, _succeeded(body)).agent_playbooks


def _parse_operation_status(body: Any) -> OperationStatus | None:
    data = _object(body)
    if data.get("success") is False and str(data.get("msg", "")).startswith(_NO_OPERATION):
        return None
    data = _succeeded(data)
    if data.get("operation_status") is None:
        return None
    return _validate(_StatusEnvelope, data).operation_status


def _parse_config(body: Any) -> dict[str, Any]:
    return _object(body)


# --- building ------------------------------------------------------------------------------


def _compact(**fields: Any) -> dict[str, Any]:
    """Drop None values; datetimes become ISO 8601."""
    return {
        key: value.isoformat() if isinstance(value, datetime) else value
        for key, value in fields.items()
        if value is not None
    }


def _status_filter(status: str) -> str | None:
    """The server's list form of a status: CURRENT is null."""
    return None if status == "current" else status


def rerun_profile_generation(
    user_id: str | None, source: str | None, start_time: datetime | None, end_time: datetime | None
) -> ApiCall[OperationStarted]:
    """Background rerun over all interactions; output rows are PENDING."""
    body = _compact(user_id=user_id, source=source, start_time=start_time, end_time=end_time)
    return ApiCall("POST", "/api/rerun_profile_generation", _model(OperationStarted), json=body)


def rerun_playbook_generation(
    agent_version: str,
    source: str | None,
    start_time: datetime | None,
    end_time: datetime | None,
) -> ApiCall[OperationStarted]:
    """Background playbook rerun of one agent_version; output rows are PENDING."""
    body = _compact(
        agent_version=agent_version, source=source, start_time=start_time, end_time=end_time
    )
    return ApiCall("POST", "/api/rerun_playbook_generation", _model(OperationStarted), json=body)


def manual_profile_generation(
    user_id: str | None, source: str | None
) -> ApiCall[ManualProfileGenerationResult]:
    """Synchronous window-sized generation; output rows are CURRENT."""
    return ApiCall(
        "POST",
        "/api/manual_profile_generation",
        _model(ManualProfileGenerationResult),
        json=_compact(user_id=user_id, source=source),
        long_running=True,
    )


def manual_playbook_generation(
    agent_version: str, source: str | None
) -> ApiCall[ManualPlaybookGenerationResult]:
    """Synchronous window-sized playbook generation; output rows are CURRENT."""
    return ApiCall(
        "POST",
        "/api/manual_playbook_generation",
        _model(ManualPlaybookGenerationResult),
        json=_compact(agent_version=agent_version, source=source),
        long_running=True,
    )


def upgrade_profiles(only_affected_users: bool) -> ApiCall[ProfileUpgradeResult]:
    """Organisation-wide profile upgrade (H1): user_id/profile_ids are ignored, never sent."""
    body = {"only_affected_users": only_affected_users}
    return ApiCall("POST", "/api/upgrade_all_profiles", _model(ProfileUpgradeResult), json=body)


def downgrade_profiles(only_affected_users: bool) -> ApiCall[ProfileDowngradeResult]:
    """Organisation-wide profile downgrade: CURRENT -> PENDING, ARCHIVED -> CURRENT."""
    body = {"only_affected_users": only_affected_users}
    return ApiCall("POST", "/api/downgrade_all_profiles", _model(ProfileDowngradeResult), json=body)


def upgrade_user_playbooks(
    agent_version: str, archive_current: bool
) -> ApiCall[UserPlaybookUpgradeResult]:
    """User playbook upgrade scoped to one agent_version."""
    body = {"agent_version": agent_version, "archive_current": archive_current}
    return ApiCall(
        "POST", "/api/upgrade_all_user_playbooks", _model(UserPlaybookUpgradeResult), json=body
    )


def downgrade_user_playbooks(agent_version: str) -> ApiCall[UserPlaybookDowngradeResult]:
    """User playbook downgrade scoped to one agent_version."""
    return ApiCall(
        "POST",
        "/api/downgrade_all_user_playbooks",
        _model(UserPlaybookDowngradeResult),
        json={"agent_version": agent_version},
    )


def run_playbook_aggregation(agent_version: str) -> ApiCall[AggregationResult]:
    """Synchronous aggregation of user playbooks into agent playbooks."""
    return ApiCall(
        "POST",
        "/api/run_playbook_aggregation",
        _model(AggregationResult),
        json={"agent_version": agent_version},
        long_running=True,
    )


def start_playbook_aggregation_operation(
    request_id: str, agent_version: str
) -> ApiCall[AggregationOperation]:
    """Durable aggregation, idempotent per request_id (409 if its parameters change)."""
    return ApiCall(
        "POST",
        "/api/playbook_aggregation_operations",
        _model(AggregationOperation, envelope=False),
        json={"request_id": request_id, "agent_version": agent_version},
    )


def get_playbook_aggregation_operation(operation_id: str) -> ApiCall[AggregationOperation]:
    """One durable aggregation operation by id."""
    return ApiCall(
        "GET",
        f"/api/playbook_aggregation_operations/{quote(operation_id, safe='')}",
        _model(AggregationOperation, envelope=False),
    )


def clear_user_data(user_id: str) -> ApiCall[ClearUserDataResult]:
    """Delete (or, after a merge, anonymise: H9) every row of one user."""
    return ApiCall(
        "POST", "/api/clear_user_data", _model(ClearUserDataResult), json={"user_id": user_id}
    )


def get_stall_state() -> ApiCall[StallState]:
    """The learning-stall flag (no /api prefix)."""
    return ApiCall("GET", "/stall_state", _model(StallState, envelope=False))


def mark_stall_notified() -> ApiCall[StallNotified]:
    """Mark the current stall notified; a no-op when not stalled."""
    return ApiCall("POST", "/stall_state/notified", _model(StallNotified, envelope=False))


def cancel_operation(service_name: ServiceName | None) -> ApiCall[CancelResult]:
    """Ask running operations to stop (both services when service_name is None)."""
    return ApiCall(
        "POST",
        "/api/cancel_operation",
        _model(CancelResult),
        json=_compact(service_name=service_name),
    )


def get_operation_status(service_name: ServiceName) -> ApiCall[OperationStatus | None]:
    """The service's single status slot; None when no operation was ever recorded."""
    return ApiCall(
        "GET",
        "/api/get_operation_status",
        _parse_operation_status,
        params={"service_name": service_name},
    )


def get_profile_statistics() -> ApiCall[ProfileStatistics]:
    """Profile counts by status."""
    return ApiCall("GET", "/api/get_profile_statistics", _model(ProfileStatistics))


def list_profiles(
    status: ProfileStatusName,
    user_id: str | None,
    source: str | None,
    window: Window,
    limit: int,
    date_field: Literal["created_at"] | None = None,
) -> ApiCall[list[Profile]]:
    """One capped page of profiles in one status (GET /api/get_all_profiles), newest
    last_modified_timestamp first, inside `window` (inclusive epoch seconds) of
    last_modified_timestamp, or of `date_field` (the server windows on one column)."""
    params = _compact(
        status_filter=status,
        user_id=user_id,
        source=source,
        start_time=window.start,
        end_time=window.end,
        limit=limit,
        date_field=date_field,
    )
    return ApiCall("GET", "/api/get_all_profiles", _parse_profiles, params=params)


def get_user_profiles(
    user_id: str, statuses: Sequence[ProfileStatusName], top_k: int
) -> ApiCall[list[Profile]]:
    """One user's profiles in the given statuses (POST /api/get_profiles)."""
    body = {
        "user_id": user_id,
        "status_filter": [_status_filter(status) for status in statuses],
        "top_k": top_k,
    }
    return ApiCall("POST", "/api/get_profiles", _parse_profiles, json=body)


def _playbook_window(window: Window) -> dict[str, datetime]:
    """The window as the datetimes the playbook routes take.

    The server truncates each bound to whole seconds (`int(dt.timestamp())`) and refuses
    `end <= start`, so a one-second window [s, s] is sent as [s, s + 0.5 s].
    """
    bounds: dict[str, datetime] = {}
    if window.start is not None:
        bounds["start_time"] = datetime.fromtimestamp(window.start, UTC)
    if window.end is not None:
        end = datetime.fromtimestamp(window.end, UTC)
        bounds["end_time"] = (
            end + timedelta(milliseconds=500) if window.end == window.start else end
        )
    return bounds


def list_user_playbooks(
    status: PlaybookStatusName | None,
    user_id: str | None,
    agent_version: str | None,
    window: Window,
    limit: int,
) -> ApiCall[list[UserPlaybook]]:
    """One capped page of user playbooks, newest created_at first (then id descending);
    no status means every live status (CURRENT+PENDING+ARCHIVED)."""
    body = _compact(
        status_filter=None if status is None else [_status_filter(status)],
        user_id=user_id,
        agent_version=agent_version,
        limit=limit,
        **_playbook_window(window),
    )
    return ApiCall("POST", "/api/get_user_playbooks", _parse_user_playbooks, json=body)


def list_agent_playbooks(
    agent_version: str | None,
    status: PlaybookStatusName | None,
    playbook_status: str | None,
    window: Window,
    limit: int,
) -> ApiCall[list[AgentPlaybook]]:
    """One capped page of agent playbooks, newest created_at first (then id descending);
    `playbook_status` is pending/approved/rejected; no status means CURRENT only."""
    body = _compact(
        agent_version=agent_version,
        status_filter=None if status is None else [_status_filter(status)],
        playbook_status_filter=playbook_status,
        limit=limit,
        **_playbook_window(window),
    )
    return ApiCall("POST", "/api/get_agent_playbooks", _parse_agent_playbooks, json=body)


def _check_ids(ids: Sequence[object], what: str) -> list[Any]:
    if isinstance(ids, str):
        raise TypeError(f"{what} must be a list of ids, not one string")
    if not 1 <= len(ids) <= MAX_IDS_PER_DELETE:
        raise ValueError(f"{what} must hold 1 to {MAX_IDS_PER_DELETE} ids, got {len(ids)}")
    return list(ids)


def delete_profiles(profile_ids: Sequence[str]) -> ApiCall[BulkDeleteResult]:
    """Delete profiles by id (DELETE /api/delete_profiles_by_ids, JSON body)."""
    body = {"profile_ids": _check_ids(profile_ids, "profile_ids")}
    return ApiCall("DELETE", "/api/delete_profiles_by_ids", _model(BulkDeleteResult), json=body)


def delete_user_playbooks(user_playbook_ids: Sequence[int]) -> ApiCall[BulkDeleteResult]:
    """Delete user playbooks by id (DELETE /api/delete_user_playbooks_by_ids, JSON body)."""
    body = {"user_playbook_ids": _check_ids(user_playbook_ids, "user_playbook_ids")}
    return ApiCall(
        "DELETE", "/api/delete_user_playbooks_by_ids", _model(BulkDeleteResult), json=body
    )


PROFILE_IMPORT_FIELDS = (
    "profile_id",
    "user_id",
    "content",
    "last_modified_timestamp",
    "generated_from_request_id",
    "profile_time_to_live",
    "expiration_timestamp",
    "custom_features",
    "source",
    "status",
    "extractor_names",
    "tags",
    "source_interaction_ids",
    "source_span",
    "notes",
    "reader_angle",
)
"""Profile fields add_user_profile stores as given (the embedding is recomputed)."""


def add_user_profiles(rows: Sequence[Mapping[str, Any]]) -> ApiCall[AddRowsResult]:
    """Write profile rows as given: same id, status and content (POST /api/add_user_profile).

    The server's import path (INSERT OR REPLACE by profile_id), used to restore backups.
    """
    if not rows:
        raise ValueError("add_user_profiles needs at least one row")
    payload = [{k: r[k] for k in PROFILE_IMPORT_FIELDS if r.get(k) is not None} for r in rows]
    return ApiCall(
        "POST", "/api/add_user_profile", _model(AddRowsResult), json={"user_profiles": payload}
    )


PLAYBOOK_IMPORT_FIELDS = (
    "user_id",
    "agent_version",
    "request_id",
    "playbook_name",
    "content",
    "trigger",
    "rationale",
    "source",
    "source_interaction_ids",
    "source_span",
    "tags",
    "notes",
    "reader_angle",
    "created_at",
)
"""User playbook fields add_user_playbook stores (ids are assigned anew, status CURRENT;
created_at as given)."""


def add_user_playbooks(rows: Sequence[Mapping[str, Any]]) -> ApiCall[AddRowsResult]:
    """Write user playbooks as new CURRENT rows (POST /api/add_user_playbook); the server
    assigns new ids, so this re-creates content, not identity."""
    if not rows:
        raise ValueError("add_user_playbooks needs at least one row")
    payload = [{k: r[k] for k in PLAYBOOK_IMPORT_FIELDS if r.get(k) is not None} for r in rows]
    return ApiCall(
        "POST", "/api/add_user_playbook", _model(AddRowsResult), json={"user_playbooks": payload}
    )


def get_config() -> ApiCall[dict[str, Any]]:
    """The full organisation config. It can hold credentials: never log or publish it."""
    return ApiCall("GET", "/api/get_config", _parse_config)


def set_config(config: Mapping[str, Any]) -> ApiCall[ConfigWriteResult]:
    """Replace the whole config; it must be complete, storage_config included."""
    if "storage_config" not in config:
        raise ValueError(
            "set_config needs the full config including storage_config (start from "
            "get_config()); use update_config for a top-level partial change"
        )
    return ApiCall("POST", "/api/set_config", _model(ConfigWriteResult), json=dict(config))


def update_config(partial: Mapping[str, Any]) -> ApiCall[ConfigWriteResult]:
    """Top-level shallow merge: nested objects are replaced wholesale."""
    return ApiCall("POST", "/api/update_config", _model(ConfigWriteResult), json=dict(partial))


def health() -> ApiCall[Health]:
    """Readiness: 200 healthy, 503 unhealthy (both answered as Health)."""
    return ApiCall("GET", "/health", _model(Health, envelope=False), accept=frozenset({200, 503}))


def publish_interaction(
    user_id: str,
    session_id: str,
    source: str,
    agent_version: str,
    interactions: Sequence[Interaction | Mapping[str, str]],
    wait_for_response: bool,
    force_extraction: bool | None,
) -> ApiCall[PublishResult]:
    """Publish turns of a session; `wait_for_response` makes learning synchronous."""
    turns = [Interaction.model_validate(turn).model_dump() for turn in interactions]
    body = _compact(
        user_id=user_id,
        session_id=session_id,
        source=source,
        agent_version=agent_version,
        interaction_data_list=turns,
        force_extraction=force_extraction,
    )
    params = {"wait_for_response": "true"} if wait_for_response else {}
    return ApiCall(
        "POST",
        "/api/publish_interaction",
        _model(PublishResult),
        json=body,
        params=params,
        long_running=wait_for_response,
    )
