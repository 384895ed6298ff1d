"""Watching training: the metrics log, the loss-curve PNG and the progress display, in one import.

Each lives in its own module (``metrics``, ``plots``, ``progress``); this module gathers the names the
trainer uses. Sample grids are :func:`unstatic.grids.image_grid`, shared with pipelines and the CLI.
"""

from unstatic.training.metrics import DebiasedEma, MetricsLog, read_metrics
from unstatic.training.plots import plot_loss_curve
from unstatic.training.progress import Progress

__all__ = ["DebiasedEma", "MetricsLog", "Progress", "plot_loss_curve", "read_metrics"]
