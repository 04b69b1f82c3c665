"""The one bootstrap of the selection statistics: percentile intervals of a statistic of resampled indices.

Every interval the verdict, the signal verdict, the field's statistics and the across-seeds comparison report
comes from :func:`index_bootstrap` (``scipy.stats.bootstrap`` over index arrays, percentile method):

- scenes resampled together for every checkpoint (paired: the rank correlations, the regrets): one stratum;
- scenes resampled within their scenario types (rliable's stratified bootstrap): one stratum per type;
- seeds resampled (across runs): the indices of the seeds' values.

Resampling indices rather than values keeps the pairing across checkpoints: one resample picks the same
scenes for every checkpoint. Torch-free.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np

BATCH_ELEMENTS = 1 << 17  # resampled indices per batch of resamples: a statistic's temporaries follow it, not n


def resample_batch(n: int) -> int:
    """Resamples computed together over ``n`` items: 64, fewer above 2,048 items (about :data:`BATCH_ELEMENTS`
    indices a batch), so the statistics' temporaries (e.g. ``[checkpoints, batch, n]`` gathers) stay bounded
    whatever the number of scenes."""
    return max(1, min(64, BATCH_ELEMENTS // max(1, n)))


def index_bootstrap(stat_fn: Callable[[np.ndarray], np.ndarray], n: int, n_stats: int, n_resamples: int,
                    seed: int, confidence: float, groups: Sequence[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of a vector statistic of resampled indices ``0..n-1``.

    Args:
        stat_fn: indices ``[B, n]`` (each row one resample) -> ``[n_stats, B]``; it must accept ``[n]`` too
            (-> ``[n_stats]``).
        n: how many items (scenes or seeds) are resampled.
        n_stats: length of the statistic.
        n_resamples, seed, confidence: of the bootstrap (``confidence`` in (0, 1)).
        groups: the stratum of each item; items are resampled within their stratum (None: one stratum). A
            stratum of one item cannot be resampled on its own: then every item is one stratum.

    Returns:
        ``(low, high)``, each float64 ``[n_stats]``; NaN with fewer than 2 items or 2 resamples. A statistic
        undefined in some resamples (NaN there, e.g. a rank correlation of a constant) takes its interval from
        the resamples where it is defined.
    """
    nan = np.full(n_stats, np.nan)
    if n < 2 or n_resamples < 2:
        return nan, nan.copy()
    if groups is None:
        samples: tuple[np.ndarray, ...] = (np.arange(n),)
    else:
        names = list(dict.fromkeys(groups))
        samples = tuple(np.array([i for i, g in enumerate(groups) if g == s], dtype=np.int64) for s in names)
        if any(len(s) < 2 for s in samples):
            samples = (np.arange(n),)

    def statistic(*idx: np.ndarray, axis: int = -1) -> np.ndarray:
        one = np.ndim(idx[0]) == 1
        out = stat_fn(np.concatenate([np.atleast_2d(i) for i in idx], axis=-1))
        return out[:, 0] if one else out

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from scipy.stats import bootstrap

        res = bootstrap(samples, statistic, vectorized=True, paired=False, n_resamples=n_resamples,
                        batch=resample_batch(n), method="percentile", confidence_level=confidence,
                        rng=np.random.default_rng(seed))
    lo = np.array(res.confidence_interval.low, dtype=np.float64).reshape(n_stats)
    hi = np.array(res.confidence_interval.high, dtype=np.float64).reshape(n_stats)
    dist = np.asarray(res.bootstrap_distribution, dtype=np.float64).reshape(n_stats, -1)
    bad = ~(np.isfinite(lo) & np.isfinite(hi)) & np.isfinite(dist).any(-1)
    if bad.any():
        a = (1 - confidence) / 2 * 100
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            lo[bad] = np.nanpercentile(dist[bad], a, axis=-1)
            hi[bad] = np.nanpercentile(dist[bad], 100 - a, axis=-1)
    return lo, hi
