"""The demo: a tiny bilingual model family trained on the CPU, merged and evaluated (docs/demo.md).

Kept free of imports so that the command line can read the defaults without loading torch.
"""

__all__ = ["DEFAULT_RATIOS"]

DEFAULT_RATIOS = (0.5, 0.75, 1.0, 1.25, 1.5, 1.75, 2.0)
