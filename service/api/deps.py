"""Short names for what handlers receive (dependencies are marked explicitly, as Litestar 3 requires)."""

from __future__ import annotations

import uuid

from litestar.di import NamedDependency
from litestar.params import FromPath
from sqlalchemy.ext.asyncio import AsyncSession

from service.domain.access.api_keys import Caller
from service.domain.ports import JobQueue

CallerDep = NamedDependency[Caller]
SessionDep = NamedDependency[AsyncSession]
JobsDep = NamedDependency[JobQueue]
GenerationId = FromPath[uuid.UUID]
