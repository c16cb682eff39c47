"""The gallery in pipeline order (sphinx-gallery sorts by this key; unlisted scripts go last)."""

from __future__ import annotations

ORDER = (
    "plot_gap_filling.py", "plot_ndsi_composites.py", "plot_ecc_alignment.py", "plot_flow.py",
    "plot_patch_splits.py", "plot_forecast_skill.py", "plot_segmentation.py", "plot_review_page.py",
    "plot_batch_summary.py",
)


class PipelineOrder:
    """Sort key: the position of an example's file name in :data:`ORDER`."""

    def __init__(self, src_dir: str) -> None:
        self.src_dir = src_dir

    def __repr__(self) -> str:  # sphinx compares config values by repr between builds
        return f"<PipelineOrder {ORDER}>"

    def __call__(self, filename: str) -> tuple[int, str]:
        return (ORDER.index(filename) if filename in ORDER else len(ORDER), filename)
