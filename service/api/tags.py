"""/v1/tags: the vocabulary a prompt may use (any role)."""

from __future__ import annotations

from typing import Annotated

from litestar import Controller, get
from litestar.params import QueryParameter

from service.api.deps import SessionDep
from service.domain.catalogue import tags as vocabularies
from service.domain.catalogue.tags import TagVocabulary


class TagsController(Controller):
    path = "/v1/tags"
    tags = ["generations"]

    @get(summary="The tags a prompt may use, per slot, with synonyms, the tempo range and examples")
    async def vocabulary(
        self,
        db_session: SessionDep,
        model: Annotated[str | None, QueryParameter(min_length=1, description="Model alias (default model)")] = None,
    ) -> TagVocabulary:
        return await vocabularies.vocabulary(db_session, model)
