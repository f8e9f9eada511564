"""The fused kernels ahead-of-time compiled (AOTInductor), for small CPU batches
(``LOSSWEEP_COMPILE=auto``, the default).

Why: at 256 x 26 (CXR-LT's batch) a loss is bound by per-call overhead, not arithmetic. The eager
kernels make ~40 dispatcher calls (~3 us each), and the ``torch.compile``d fused kernel pays ~60 us
of dynamo guards per call; the same fused formula exported and compiled by AOTInductor into a
shared library is called for ~4 us plus its one loop (~55 us at 256 x 26 for RAL, AVX-512).
Measured with ``python -m benchmarks.losses --sizes 256x26`` (shared 2-core CPU, 1 or 2 threads):
forward + backward ASL ~2.3x and RAL ~2.4x BCE, against ~3.0-3.4x and ~4.0-4.3x eager.

Cost: each variant (loss x dtype x mask or not x polynomial lengths) compiles once per machine
(~10-25 s on a busy 2-core CPU) into a ``.pt2`` package under the inductor cache directory
(``TORCHINDUCTOR_CACHE_DIR``, default ``<tmp>/torchinductor_<user>``), in ``lossweep_aot/``; later
processes load it (~1 s). The package name holds a hash of the kernel sources, the torch version and
the CPU's instruction set, so an edited formula, another torch or another CPU never loads a stale
library. The length is a symbolic dimension (any batch size >= 2); hyperparameters are inputs, so no
trial recompiles. Any failure (no C++ compiler, an export error) warns once and the loss goes on with
its eager kernel.
"""

from __future__ import annotations

import getpass
import hashlib
import inspect
import logging
import os
import platform
import tempfile
import threading
import warnings
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn

from . import _compiled

PACKAGE_DIR_NAME = "lossweep_aot"


def _drop_cuda_home_notice(record: logging.LogRecord) -> bool:
    # Loading a CPU package imports torch.utils.cpp_extension, which warns "No CUDA runtime is found"
    # on every CPU-only machine with a CUDA build of torch: noise in every worker's log, not a problem.
    return "No CUDA runtime is found" not in record.getMessage()


logging.getLogger("torch.utils.cpp_extension").addFilter(_drop_cuda_home_notice)


def package_dir() -> Path:
    """Where packages are kept: the inductor cache directory's ``lossweep_aot`` folder (see the module docstring)."""
    base = os.environ.get("TORCHINDUCTOR_CACHE_DIR") or os.path.join(tempfile.gettempdir(), f"torchinductor_{_user()}")
    return Path(base) / PACKAGE_DIR_NAME


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):  # no entry in the password database (some containers)
        return str(os.getuid()) if hasattr(os, "getuid") else "user"


class _Exported(nn.Module):
    """The fused function as a module (what ``torch.export`` takes); ``with_mask`` fixes the mask's presence."""

    def __init__(self, function: Callable, with_mask: bool) -> None:
        super().__init__()
        self.function = function
        self.with_mask = with_mask

    def forward(self, x: Tensor, y: Tensor, *rest: Tensor) -> tuple[Tensor, Tensor]:
        if self.with_mask:
            return self.function(x, y, rest[0], *rest[1:])
        return self.function(x, y, None, *rest)


class PackagedKernel:
    """One fused function's AOTInductor libraries, one per variant, built or loaded on first use.

    ``__call__(x, y, mask, *hyperparameters)`` (contiguous 1-D CPU tensors) returns
    ``(summed loss, gradient)``, or ``None`` where the variant could not be built: the caller then
    runs its eager kernel.
    """

    def __init__(self, function: Callable, packed: bool = False) -> None:
        self.function = function
        # A pack's kernel takes 4-D inputs, (groups, batch, classes, heads), and per-head parameters
        # shaped (P, groups, 1, 1, heads); all four sizes are symbolic (see ``_pack_example``).
        self.packed = packed
        self.failed: str | None = None  # why building failed; no variant is tried again
        self._runners: dict[tuple, Callable[[list[Tensor]], list[Tensor]]] = {}
        self._lock = threading.Lock()

    def __call__(self, x: Tensor, y: Tensor, mask: Tensor | None, *params: Tensor) -> tuple[Tensor, Tensor] | None:
        if self.failed is not None:
            return None
        key = (x.dtype, mask is not None, tuple(p.shape[0] for p in params))
        run = self._runners.get(key)
        if run is None:
            run = self._build(key, x, y, mask, params)
            if run is None:
                return None
        inputs = [x, y, *params] if mask is None else [x, y, mask, *params]
        total, grad = run(inputs)
        return total, grad

    def _build(self, key: tuple, x: Tensor, y: Tensor, mask: Tensor | None, params: tuple[Tensor, ...]):
        with self._lock:
            if key in self._runners:
                return self._runners[key]
            try:
                path = self._package(key, x, y, mask, params)
                model = torch._inductor.aoti_load_package(str(path))
                # The loader's flat ``run``: the public ``model(...)`` re-parses its input/output tree
                # specs (JSON) on every call, ~17 us, as much as the kernel at 256 x 26.
                run = model.loader.run
            except Exception as error:  # noqa: BLE001 - any failure of export or the compiler means "use eager"
                first_line = str(error).strip().splitlines()[0] if str(error).strip() else ""
                self.failed = f"{type(error).__name__}: {first_line}"
                warnings.warn(
                    f"runners.losses: the ahead-of-time compiled {self.function.__name__} kernel is unavailable "
                    f"({self.failed}); using the eager kernels for small batches for the rest of this process "
                    f"(set {_compiled.ENV_VAR}=0 to skip the attempt)",
                    RuntimeWarning,
                    stacklevel=4,
                )
                return None
            self._runners[key] = run
            return run

    def _package(self, key: tuple, x: Tensor, y: Tensor, mask: Tensor | None, params: tuple[Tensor, ...]) -> Path:
        """The variant's ``.pt2`` file, compiled now unless an earlier process left it."""
        dtype, with_mask, lengths = key
        variant = (
            f"{str(dtype).removeprefix('torch.')}-{'mask' if with_mask else 'nomask'}-{'x'.join(map(str, lengths))}"
            + ("-pack" if self.packed else "")
        )
        path = package_dir() / f"{self.function.__name__}-{variant}-{self._source_hash()}.pt2"
        if path.exists():
            return path
        path.parent.mkdir(parents=True, exist_ok=True)
        if self.packed:
            x, y, mask, params = _pack_example(x, y, mask, params)
            g, n, c, t = (torch.export.Dim(name, min=1) for name in ("groups", "n", "classes", "heads"))
            data_shapes = ({0: g, 1: n, 2: c, 3: t}, {0: g, 1: n, 2: c})
            mask_shapes = [{0: g, 1: n, 2: c}] if mask is not None else []
            param_shapes: list[dict | None] = [{1: g, 4: t} for _ in params]
        else:
            n = torch.export.Dim("n", min=2)
            data_shapes = ({0: n}, {0: n})
            mask_shapes = [{0: n}] if mask is not None else []
            param_shapes = [None] * len(params)
        rest = tuple(params) if mask is None else (mask, *params)
        rest_shapes = tuple(mask_shapes + param_shapes)
        with torch.no_grad():  # the arguments are (x, y, rest): ``forward``'s varargs are one tuple to export
            program = torch.export.export(
                _Exported(self.function, with_mask),
                (x, y, *rest),
                dynamic_shapes=(*data_shapes, rest_shapes) if rest else data_shapes,
            )
            # Written under a private name and renamed: processes compiling the same variant at once
            # never load a half-written file.
            partial = path.with_name(f"{path.stem}.{os.getpid()}.{threading.get_ident()}.partial.pt2")
            with torch._inductor.config.patch(_threading(self.packed)):
                torch._inductor.aoti_compile_and_package(program, package_path=str(partial))
        os.replace(partial, path)
        return path

    def _source_hash(self) -> str:
        """A hash of everything the library depends on: the kernel's module, ``_compiled``, this module (the
        export's example and threading), torch's version and the CPU's instruction set (libraries are built
        for the native one; a cache directory shared by several machines must not hand an AVX-512 library
        to an AVX2 CPU). The same in every process."""
        digest = hashlib.sha256(
            f"{torch.__version__} {platform.machine()} {torch.backends.cpu.get_cpu_capability()}".encode()
        )
        # The files' own digests, sorted: a set of paths iterates in a per-process order (string hash
        # randomisation), and an unsorted digest gave every other process another name, and a rebuild.
        files = {inspect.getsourcefile(self.function), _compiled.__file__, __file__}
        for file_digest in sorted(hashlib.sha256(Path(f).read_bytes()).hexdigest() for f in files if f):
            digest.update(file_digest.encode())
        return digest.hexdigest()[:16]


# Loops of a pack kernel are planned for this many threads and run on however many the process has.
PACK_PLANNED_THREADS = 16


def _threading(packed: bool) -> dict[str, object]:
    """Inductor's threading settings for a library (see the module docstring).

    By default inductor bakes the building process's thread count into the library whenever it
    differs from the machine's core count (a worker of a 2-worker run builds it with one thread, and
    every later process loaded a one-thread library), and it parallelises only the outer loops its
    example needs for that count (a pack's groups: usually one). A pack kernel is therefore built
    with the thread count left to the runtime (``torch.set_num_threads``) and its loops planned for
    :data:`PACK_PLANNED_THREADS`, which parallelises the batch x classes loop too. A single loss's
    kernel (small batches, called once per step) keeps inductor's defaults.
    """
    return {"cpp.dynamic_threads": True, "cpp.threads": PACK_PLANNED_THREADS} if packed else {}


# The example a pack kernel is exported from: inductor plans its loops (how to split them over the
# threads, whether to parallelise at all) from the example's sizes, so it must look like a real
# pack -- one built from a 2 x 2 x 2 x 2 example ran on one thread at every size -- and it must not
# depend on the first call's sizes, so that every process builds the same library.
PACK_EXAMPLE_SHAPE = (2, 256, 26, 64)  # groups, batch, classes, heads


def _pack_example(x: Tensor, y: Tensor, mask: Tensor | None, params: tuple[Tensor, ...]):
    """Example inputs for exporting a pack kernel: :data:`PACK_EXAMPLE_SHAPE`, whatever the first call's sizes.

    Every size is at least 2 as well: ``torch.export`` specialises a dimension whose example size is
    0 or 1, and a pack's first call often has one group (no replicates) or one head.
    """
    g, n, c, t = PACK_EXAMPLE_SHAPE
    example_x = x.new_zeros(g, n, c, t)
    example_y = x.new_zeros(g, n, c, 1)
    example_mask = None if mask is None else x.new_ones(g, n, c, 1)
    example_params = tuple(x.new_zeros(p.shape[0], g, 1, 1, t) for p in params)
    return example_x, example_y, example_mask, example_params
