"""The per-scan side: which pixels to reconstruct, refinement, results, skymaps, and a local executor."""

from .result import MultiResolutionMap, SkymapSummary, skymap, wilks_delta_llh
from .scan import Progress, ScanError, SkyScan

__all__ = ["MultiResolutionMap", "Progress", "ScanError", "SkyScan", "SkymapSummary", "skymap", "wilks_delta_llh"]
