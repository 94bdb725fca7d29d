"""Heatmaps of where a chat vector lives (norms per layer and module, or cosine with another delta)."""

from __future__ import annotations

from pathlib import Path

from chatvector.analysis.vector_stats import DeltaStats
from chatvector.extras import require

__all__ = ["heatmap"]


def heatmap(stats: DeltaStats, path: Path, title: str, cosine: bool) -> None:
    """Write a PNG heatmap: cosine similarity per (layer, module) when ``cosine``, else L2 norms."""
    require("plotting", "matplotlib")
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    groups = sorted({g for g, _ in stats.by_cell})
    modules = sorted({m for _, m in stats.by_cell})
    grid = np.full((len(groups), len(modules)), np.nan)
    for (group, module), sums in stats.by_cell.items():
        grid[groups.index(group), modules.index(module)] = sums.cosine if cosine else sums.norm_a
    figure, axis = plt.subplots(figsize=(1.2 + 0.7 * len(modules), 1.2 + 0.3 * len(groups)), dpi=110)
    image = axis.imshow(
        grid,
        aspect="auto",
        cmap="coolwarm" if cosine else "viridis",
        vmin=-1 if cosine else None,
        vmax=1 if cosine else None,
    )
    axis.set_xticks(range(len(modules)), modules, rotation=45, ha="right", fontsize=7)
    axis.set_yticks(range(len(groups)), groups, fontsize=7)
    axis.set_title(title, fontsize=9)
    figure.colorbar(image, ax=axis, label="cosine similarity" if cosine else "L2 norm")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
