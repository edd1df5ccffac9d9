"""The OpenAPI document states what the API accepts: the ranges and vocabularies its validation enforces, and
which routes need no key (built without a database)."""

from __future__ import annotations

import warnings

import pytest

from service.db.schema.models import LATENT_DIM
from service.domain.discovery import search, song_path
from service.domain.generation import variants
from service.domain.generation.generations import MAX_SEED


@pytest.fixture(scope="module")
def document() -> dict:
    from service.app import create_app

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return create_app("postgresql://unused/openapi").openapi_schema.to_schema()


def bounds(schema: dict) -> tuple:
    return schema.get("minimum"), schema.get("maximum")


@pytest.mark.parametrize(
    ("struct", "field", "expected"),
    [
        ("StyleTransferCreate", "strength", (0.0, 1.0)),
        ("StyleTransferCreate", "neighbor_rank", (1, search.MAX_LIMIT)),
        ("StyleTransferCreate", "near_duplicate_similarity", (-1.0, 1.0)),
        ("StyleTransferCreate", "seed", (0, MAX_SEED)),  # a bound of 0 is kept
        ("VariantsCreate", "n_per_source", (1, variants.MAX_PER_SOURCE)),
        ("VariantsCreate", "variance", (0.0, 1.0)),
        ("SearchRequest", "limit", (1, search.MAX_LIMIT)),
        ("SearchRequest", "score_threshold", (-1.0, 1.0)),
        ("SearchRequest", "diversity", (0.0, 1.0)),
        ("SearchRequest", "group_size", (1, search.MAX_GROUP_SIZE)),
    ],
)
def test_body_fields_carry_the_ranges_the_domain_checks(document, struct, field, expected):
    assert bounds(document["components"]["schemas"][struct]["properties"][field]) == expected


def test_a_query_vector_holds_one_latent(document):
    vector = document["components"]["schemas"]["SearchRequest"]["properties"]["vector"]
    assert (vector["minItems"], vector["maxItems"]) == (LATENT_DIM, LATENT_DIM)


def parameter(document: dict, path: str, name: str) -> dict:
    return next(p for p in document["paths"][path]["get"]["parameters"] if p["name"] == name)["schema"]


def test_query_parameters_carry_their_vocabularies_and_ranges(document):
    assert parameter(document, "/v1/generations", "status")["enum"] == [
        "pending",
        "running",
        "succeeded",
        "failed",
        "cancelled",
    ]
    assert parameter(document, "/v1/generations", "kind")["enum"] == [
        "text2music",
        "variant",
        "style_transfer",
        "import",
    ]
    assert bounds(parameter(document, "/v1/path", "steps")) == (song_path.MIN_PATH_STEPS, song_path.MAX_PATH_STEPS)


def test_public_routes_need_no_key_and_the_others_do(document):
    assert document["security"] == [{"apiKey": []}]
    for path in ("/health", "/ready"):
        assert document["paths"][path]["get"]["security"] == [{}], path  # an empty requirement: anyone
    assert "security" not in document["paths"]["/v1/generations"]["get"]  # the document's: a bearer key
