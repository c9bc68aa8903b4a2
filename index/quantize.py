"""Weight quantization: float32 weights -> uint8 impacts with one global scale.

Why one global scale: scores stay comparable across terms and documents with a single multiply
at the end, and uint8 cuts postings to a quarter of float32. Impacts are clipped to [1, 255],
so a tiny positive weight still keeps its posting (quantization never drops a term).
"""

from __future__ import annotations

import numpy as np

MAX_IMPACT = 255


def quantize(weights: np.ndarray) -> tuple[np.ndarray, float]:
    """Return (impacts uint8, scale) with scale = max weight / 255 and impact = round(w / scale).

    Worst-case error is scale / 2 for weights >= scale / 2; smaller weights round up to 1.
    """
    w = np.asarray(weights, dtype=np.float64)
    if w.size == 0:
        return np.zeros(0, dtype=np.uint8), 1.0
    if not np.all(np.isfinite(w)) or w.min() <= 0:
        raise ValueError("weights must be finite and > 0 to be quantized")
    scale = float(w.max()) / MAX_IMPACT
    impacts = np.clip(np.rint(w / scale), 1, MAX_IMPACT).astype(np.uint8)
    return impacts, scale


def dequantize(impacts: np.ndarray, scale: float) -> np.ndarray:
    """Impacts back to float32 weights (impact * scale)."""
    return np.asarray(impacts, dtype=np.float32) * np.float32(scale)
