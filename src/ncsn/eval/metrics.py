"""Sample-quality metrics on feature vectors: FID, KID, Inception Score, nearest neighbours.

- FID (Heusel et al. 2017): ||mu1 - mu2||^2 + tr(S1 + S2 - 2 (S1 S2)^(1/2)), computed through
  the symmetric PSD matrix S1^(1/2) S2 S1^(1/2), which has the same eigenvalues as S1 S2.
- KID (Binkowski et al. 2018): unbiased MMD^2 with the kernel k(x, y) = (x.y / d + 1)^3,
  averaged over random subsets (std over subsets reported beside it).
- Inception Score (Salimans et al. 2016): exp(E_x KL(p(y|x) || p(y))), mean and std over splits.
"""

from __future__ import annotations

import numpy as np
import torch


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean and unbiased covariance (float64) of features (N, D), N >= 2."""
    feats = np.asarray(features, dtype=np.float64)
    if feats.ndim != 2 or feats.shape[0] < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {feats.shape}")
    return feats.mean(axis=0), np.cov(feats, rowvar=False)


def _psd_eigh(matrix: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Eigendecomposition of a symmetric PSD matrix; eigenvalues below the numerical-rank
    tolerance max|eig| * D * machine eps (roundoff, possibly negative) are set to 0."""
    vals, vecs = np.linalg.eigh((matrix + matrix.T) / 2)
    tol = np.abs(vals).max(initial=0.0) * len(vals) * np.finfo(np.float64).eps
    return np.where(vals > tol, vals, 0.0), vecs


def _psd_sqrt(matrix: np.ndarray) -> np.ndarray:
    vals, vecs = _psd_eigh(matrix)
    return (vecs * np.sqrt(vals)) @ vecs.T


def frechet_distance(mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray,
                     sigma2: np.ndarray) -> float:
    """Frechet (2-Wasserstein) distance between N(mu1, sigma1) and N(mu2, sigma2).

    tr (S1 S2)^(1/2) = sum of sqrt(eig(S1^(1/2) S2 S1^(1/2))): real and stable even when the
    covariances are singular (fewer samples than dimensions).
    """
    mu1, mu2 = np.asarray(mu1, np.float64), np.asarray(mu2, np.float64)
    sigma1, sigma2 = np.asarray(sigma1, np.float64), np.asarray(sigma2, np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != mu1.shape * 2:
        raise ValueError(f"mismatched statistics: mu {mu1.shape} vs {mu2.shape}, "
                         f"sigma {sigma1.shape} vs {sigma2.shape}")
    root1 = _psd_sqrt(sigma1)
    tr_covmean = np.sqrt(_psd_eigh(root1 @ sigma2 @ root1)[0]).sum()
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


def frechet_distance_from_features(features: np.ndarray, mu2: np.ndarray,
                                   sigma2: np.ndarray) -> float:
    """FID between the Gaussian fitted to ``features`` (N, D) and N(mu2, sigma2).

    With fewer samples than dimensions (N - 1 < D) the D x D eigenproblems are replaced by
    one N x N: for S1 = A^T A (A = centred features / sqrt(N - 1)), S1 S2 has the same nonzero
    eigenvalues as the symmetric PSD A S2 A^T. Same value, far cheaper for small sample sets.
    """
    feats = np.asarray(features, np.float64)
    n, d = feats.shape
    if n - 1 >= d:
        return frechet_distance(*feature_statistics(feats), mu2, sigma2)
    if n < 2:
        raise ValueError(f"need features of shape (N >= 2, D), got {feats.shape}")
    mu1 = feats.mean(axis=0)
    a = (feats - mu1) / np.sqrt(n - 1)
    sigma2 = np.asarray(sigma2, np.float64)
    if sigma2.shape != (d, d) or np.shape(mu2) != (d,):
        raise ValueError(f"mismatched statistics: features {feats.shape}, mu {np.shape(mu2)}, "
                         f"sigma {sigma2.shape}")
    tr_covmean = np.sqrt(_psd_eigh(a @ sigma2 @ a.T)[0]).sum()
    diff = mu1 - np.asarray(mu2, np.float64)
    return float(diff @ diff + np.sum(a * a) + np.trace(sigma2) - 2.0 * tr_covmean)


def _poly_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    return (x @ y.T / x.shape[1] + 1.0) ** 3


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD^2 with the cubic polynomial kernel (diagonal terms excluded)."""
    m, n = len(x), len(y)
    kxx, kyy, kxy = _poly_kernel(x, x), _poly_kernel(y, y), _poly_kernel(x, y)
    return float((kxx.sum() - np.trace(kxx)) / (m * (m - 1))
                 + (kyy.sum() - np.trace(kyy)) / (n * (n - 1)) - 2.0 * kxy.mean())


def kernel_inception_distance(feats1: np.ndarray, feats2: np.ndarray, *, num_subsets: int = 100,
                              subset_size: int = 1000, seed: int = 0) -> tuple[float, float]:
    """KID: mean and std of unbiased MMD^2 over ``num_subsets`` random subsets of each set
    (size min(subset_size, N1, N2), drawn without replacement within a subset)."""
    f1, f2 = np.asarray(feats1, np.float64), np.asarray(feats2, np.float64)
    m = min(subset_size, len(f1), len(f2))
    if m < 2:
        raise ValueError("KID needs at least 2 feature vectors in each set")
    rng = np.random.default_rng(seed)
    vals = np.array([mmd2_unbiased(f1[rng.choice(len(f1), m, replace=False)],
                                   f2[rng.choice(len(f2), m, replace=False)])
                     for _ in range(num_subsets)])
    return float(vals.mean()), float(vals.std())


def inception_score(logits: np.ndarray, splits: int = 10) -> tuple[float, float]:
    """Inception Score from class logits (N, K): mean and std over ``splits`` equal parts."""
    logits_t = torch.as_tensor(np.asarray(logits), dtype=torch.float64)
    if logits_t.ndim != 2 or len(logits_t) < splits:
        raise ValueError(f"need logits (N >= splits={splits}, K), got {tuple(logits_t.shape)}")
    scores = []
    for part in torch.tensor_split(logits_t, splits):
        logp = torch.log_softmax(part, dim=1)
        logp_y = torch.logsumexp(logp, dim=0) - np.log(len(part))
        kl = (logp.exp() * (logp - logp_y)).sum(dim=1).mean()
        scores.append(float(kl.exp()))
    return float(np.mean(scores)), float(np.std(scores))


def nearest_neighbours(queries: torch.Tensor, keys: torch.Tensor, k: int = 5,
                       chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """For each query (flattened), the indices and L2 distances of its ``k`` nearest keys."""
    q = queries.reshape(len(queries), -1).double()
    keys2 = keys.reshape(len(keys), -1).double()
    k = min(k, len(keys2))
    best_d = torch.full((len(q), 0), 0.0, dtype=torch.float64)
    best_i = torch.zeros((len(q), 0), dtype=torch.long)
    for start in range(0, len(keys2), chunk):
        d = torch.cdist(q, keys2[start:start + chunk])
        cand_d = torch.cat([best_d, d], 1)
        cand_i = torch.cat([best_i, torch.arange(start, start + d.shape[1]).expand(len(q), -1)], 1)
        best_d, pos = cand_d.topk(min(k, cand_d.shape[1]), dim=1, largest=False)
        best_i = cand_i.gather(1, pos)
    return best_i, best_d.float()
