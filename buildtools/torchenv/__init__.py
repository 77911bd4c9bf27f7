"""torch / CUDA alignment: the compatibility matrix, wheel indexes, pin bumps and CUDA-variant wheels.

Modules, each one concern:

- ``matrix``  -- the torch <-> Python <-> CUDA <-> ROCm data (``torch_matrix.json``) and version helpers;
- ``index``   -- platform/channel -> PyTorch wheel index URLs, and the ``auto`` choice from driver facts;
- ``driver``  -- NVIDIA driver (NVML, nvidia-smi) and ROCm detection;
- ``probe``   -- facts about a target interpreter (torch, installed distributions) and nvcc;
- ``check``   -- does the installed torch fit nvcc, the driver and the matrix (pure);
- ``bump``    -- edit torch/torchvision/torchaudio pins across requirement files (pure planner + writer);
- ``wheels``  -- keep only the ``<pkg>-cuXX`` variant matching torch's CUDA major (planner + runner).

Nothing here imports torch: its version is read from installed files.
"""
__all__: list[str] = []
