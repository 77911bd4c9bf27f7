"""Settings: every override a user can force, and ``[tool.buildtools]`` in pyproject.toml.

:data:`OVERRIDES` is the one table of overrides: each row names its flag, its environment
variable, its ``[tool.buildtools]`` key where it has one, how its value is parsed and its help.
The argparse flags (:func:`add_flags`), :meth:`Overrides.from_sources`, the variables the build
fingerprint watches (:data:`OVERRIDE_ENV_VARS`) and the help texts are all made from it, and a
test checks the README's override table against it. Precedence is always flag > environment >
pyproject.toml > the plan.

``[tool.buildtools]``: every key is optional; the defaults below are this project's measured
numbers. Keys are kebab-case in TOML (``ram-per-cxx-job-gib``). Unknown keys are reported as
warnings rather than errors so that other buildtools commands can add their own settings to the
same table.
"""
from buildtools.settings.overrides import *  # noqa: F401,F403
from buildtools.settings.overrides import __all__ as _overrides_all
from buildtools.settings.project import *  # noqa: F401,F403
from buildtools.settings.project import __all__ as _project_all

__all__ = [*_overrides_all, *_project_all]
