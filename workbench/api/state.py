"""What every request of one API application shares, and the API keys it checks."""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

from fastapi import Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from workbench.api.jobs import JobRunner
from workbench.api.keys import ApiKeys
from workbench.api.problems import ApiProblem
from workbench.core import Workbench
from workbench.settings import WorkbenchSettings


@dataclass
class ApiState:
    """What every request of one application shares."""

    wb: Workbench
    keys: ApiKeys
    jobs: JobRunner
    pack_lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def settings(self) -> WorkbenchSettings:
        return self.wb.settings

    def loaded_pack(self) -> None:
        """Load the pack once (two first searches at once would each load it)."""
        if self.wb.loaded_pack is None:
            with self.pack_lock:
                if self.wb.loaded_pack is None:
                    self.wb.pack.load()


def state_of(request: Request) -> ApiState:
    return request.app.state.api  # type: ignore[no-any-return]


# ---- keys ----------------------------------------------------------------------------
HEADER_KEY = APIKeyHeader(
    name="X-API-Key", auto_error=False, description="a key of `workbench api-key create`"
)
BEARER_KEY = HTTPBearer(auto_error=False, description="the same key as `Authorization: Bearer KEY`")
_NO_KEY = (
    "send a key in an X-API-Key header (or as Authorization: Bearer KEY); "
    "`workbench api-key create NAME` makes one"
)


def require_key(
    request: Request,
    header: str | None = None,
    bearer: HTTPAuthorizationCredentials | None = None,
) -> int:
    key = header or (bearer.credentials if bearer is not None else None)
    challenge = {"WWW-Authenticate": 'Bearer realm="workbench"'}
    if not key:
        raise ApiProblem(401, "API key required", _NO_KEY, challenge)
    key_id = state_of(request).keys.check(key)
    if key_id is None:
        raise ApiProblem(
            401,
            "API key not accepted",
            "this key is unknown or revoked; `workbench api-key list` shows the active keys",
            challenge,
        )
    request.state.key_id = key_id
    return key_id


__all__ = ["BEARER_KEY", "HEADER_KEY", "ApiState", "require_key", "state_of"]
