"""kernloop's build orchestrator: detect facts -> plan -> render presets -> run cmake.

Kept import-light: the pip backend imports this package, and the presets
generator must not pay for torch or heavy modules.
"""
__all__ = ["__version__"]

__version__ = "0.1.0"
