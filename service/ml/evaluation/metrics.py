"""Metric functions used by the evaluation: retrieval, Fréchet distance, probes, audio patterns."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F


def precision_at_k(
    latents: np.ndarray,
    labels: list,
    k: int = 10,
    queries: np.ndarray | None = None,
    query_labels: list | None = None,
) -> float:
    """Mean fraction of the k cosine-nearest neighbours sharing the query's label.

    Without ``queries`` every latent queries the others (itself excluded). ``queries`` must not
    be rows of ``latents`` (each would find itself first): for a subset of the index, average
    ``neighbour_precision`` over that subset instead.
    """
    if queries is None:
        return float(neighbour_precision(latents, labels, k).mean())
    similarity = unit(queries) @ unit(latents).T
    return float(_label_hits(similarity, labels, query_labels, k).mean())


def neighbour_precision(latents: np.ndarray, labels: list, k: int = 10) -> np.ndarray:
    """Per latent, the fraction of its k cosine-nearest *other* latents that share its label."""
    rows = unit(latents)
    similarity = rows @ rows.T
    np.fill_diagonal(similarity, -np.inf)
    return _label_hits(similarity, labels, labels, k)


def _label_hits(similarity: np.ndarray, index_labels: list, query_labels: list, k: int) -> np.ndarray:
    top = np.argsort(-similarity, axis=1)[:, :k]
    hits = np.asarray(index_labels, dtype=object)[top] == np.asarray(query_labels, dtype=object)[:, None]
    return hits.mean(axis=1)


def unit(x: np.ndarray) -> np.ndarray:
    """Rows (or the last axis) scaled to length 1."""
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Row-wise cosine similarity of two equally shaped (or broadcastable) sets of vectors."""
    return np.sum(unit(a) * unit(b), axis=-1)


def frechet_distance(a: np.ndarray, b: np.ndarray) -> float:
    """Fréchet distance between Gaussians fitted to two sets of vectors (FID's formula)."""
    mu_a, mu_b = a.mean(0), b.mean(0)
    cov_a, cov_b = np.cov(a, rowvar=False), np.cov(b, rowvar=False)
    root_a = _psd_sqrt(cov_a)
    cross = np.linalg.eigvalsh(root_a @ cov_b @ root_a)
    trace_sqrt = np.sqrt(np.clip(cross, 0.0, None)).sum()
    return float(np.sum((mu_a - mu_b) ** 2) + np.trace(cov_a) + np.trace(cov_b) - 2.0 * trace_sqrt)


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    values, vectors = np.linalg.eigh(matrix)
    return (vectors * np.sqrt(np.clip(values, 0.0, None))) @ vectors.T


def mean_pairwise_distance(latents: np.ndarray) -> float:
    if len(latents) < 2:
        return float("nan")
    distances = np.linalg.norm(latents[:, None] - latents[None, :], axis=-1)
    return float(distances[np.triu_indices(len(latents), 1)].mean())


class LinearProbe:
    """Multinomial logistic regression on standardised latents (full-batch L-BFGS, L2 penalty)."""

    def __init__(self, latents: np.ndarray, labels: list, l2: float = 1e-2) -> None:
        self.classes = sorted(set(labels))
        x = torch.from_numpy(latents).float()
        self.mean, self.std = x.mean(0), x.std(0) + 1e-6
        y = torch.tensor([self.classes.index(label) for label in labels])
        self.linear = torch.nn.Linear(x.shape[1], len(self.classes))
        optimiser = torch.optim.LBFGS(self.linear.parameters(), max_iter=200, line_search_fn="strong_wolfe")
        inputs = (x - self.mean) / self.std

        def closure():
            optimiser.zero_grad()
            loss = F.cross_entropy(self.linear(inputs), y) + l2 * self.linear.weight.pow(2).sum()
            loss.backward()
            return loss

        optimiser.step(closure)

    @torch.no_grad()
    def predict(self, latents: np.ndarray) -> list:
        x = (torch.from_numpy(latents).float() - self.mean) / self.std
        return [self.classes[i] for i in self.linear(x).argmax(-1).tolist()]

    def accuracy(self, latents: np.ndarray, labels: list) -> float:
        return float(np.mean([p == t for p, t in zip(self.predict(latents), labels, strict=True)]))


def chroma(audio: np.ndarray, sample_rate: int, n_fft: int = 2048, hop: int = 512) -> np.ndarray:
    """(12, frames) pitch-class energy, each frame normalised to unit sum."""
    spectrum = np.abs(
        torch.stft(torch.from_numpy(audio), n_fft, hop, window=torch.hann_window(n_fft), return_complex=True).numpy()
    )
    freqs = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    usable = (freqs > 60.0) & (freqs < 4000.0)
    pitch_class = np.round(12 * np.log2(freqs[usable] / 440.0)).astype(int) % 12
    out = np.zeros((12, spectrum.shape[1]))
    np.add.at(out, pitch_class, spectrum[usable] ** 2)
    return out / np.maximum(out.sum(0, keepdims=True), 1e-9)


def onset_envelope(log_mel: np.ndarray) -> np.ndarray:
    """Spectral flux: summed positive change of log-mel between frames."""
    return np.maximum(np.diff(log_mel, axis=-1), 0.0).sum(axis=0)


def correlation(a: np.ndarray, b: np.ndarray) -> float:
    a, b = a.ravel() - a.mean(), b.ravel() - b.mean()
    return float(a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))
