import numpy as np
import pytest

from service.ml.evaluation import metrics

# Two tight pairs ("a" near x, "b" near y) and a lone "a" nearest to the "b" pair.
LATENTS = np.array([[1.0, 0.0], [0.99, 0.1], [0.0, 1.0], [0.1, 0.99], [0.3, 0.95]])
LABELS = ["a", "a", "b", "b", "a"]


def test_neighbour_precision_never_counts_a_latent_as_its_own_neighbour():
    hits = metrics.neighbour_precision(LATENTS, LABELS, k=1)
    assert hits.tolist() == [1.0, 1.0, 1.0, 1.0, 0.0]


def test_precision_at_k_over_the_index_is_the_mean_neighbour_precision():
    assert metrics.precision_at_k(LATENTS, LABELS, k=2) == pytest.approx(
        metrics.neighbour_precision(LATENTS, LABELS, k=2).mean()
    )


def test_precision_at_k_with_outside_queries_searches_the_whole_index():
    queries = np.array([[0.32, 0.95], [0.0, 1.0]])  # nearest: the lone "a", then an exact "b"
    assert metrics.precision_at_k(LATENTS, LABELS, k=1, queries=queries, query_labels=["a", "a"]) == 0.5
