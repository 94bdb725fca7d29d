"""The one table of tensor dtypes: safetensors names, sizes, numpy types, torch names, user names.

Every other module looks dtypes up here, so a format is added (or its rounding described) once.
numpy types for bfloat16 and float8 come from ``ml_dtypes``; torch is named by attribute, never
imported, so the merge path stays torch-free. Byte order is little-endian throughout, as the
safetensors format prescribes.
"""

from __future__ import annotations

from dataclasses import dataclass

import ml_dtypes
import numpy as np

__all__ = ["DType", "DTYPES", "OUTPUT_DTYPES", "FLOAT_DTYPES", "by_safetensors", "by_output_name", "by_torch_name"]


@dataclass(frozen=True)
class DType:
    """One tensor format.

    Attributes:
        safetensors: the name in safetensors headers (``BF16``).
        itemsize: bytes per element.
        numpy: the numpy dtype the engine computes with (little-endian).
        torch: the ``torch`` attribute name (``bfloat16``), or None when torch has no such type.
        output_name: the name users give ``--dtype`` (``bfloat16``), for formats chatvector writes.
        significand_bits: bits of precision incl. the implicit one (floats), for rounding checks.
        finite_max: the largest finite value (floats), to tell an overflow before the cast.
    """

    safetensors: str
    itemsize: int
    numpy: np.dtype
    torch: str | None
    output_name: str | None = None
    significand_bits: int | None = None
    finite_max: float | None = None

    @property
    def is_float(self) -> bool:
        return self.significand_bits is not None


def _float(name: str, size: int, kind: type, torch: str | None, bits: int, output: str | None = None) -> DType:
    info = ml_dtypes.finfo(kind) if kind.__module__.startswith("ml_dtypes") else np.finfo(kind)
    return DType(name, size, np.dtype(kind).newbyteorder("<"), torch, output, bits, float(info.max))


def _int(name: str, size: int, kind: type, torch: str | None) -> DType:
    return DType(name, size, np.dtype(kind).newbyteorder("<") if size > 1 else np.dtype(kind), torch)


DTYPES: dict[str, DType] = {
    d.safetensors: d
    for d in (
        _float("F64", 8, np.float64, "float64", 53),
        _float("F32", 4, np.float32, "float32", 24, "float32"),
        _float("F16", 2, np.float16, "float16", 11, "float16"),
        _float("BF16", 2, ml_dtypes.bfloat16, "bfloat16", 8, "bfloat16"),
        _float("F8_E4M3", 1, ml_dtypes.float8_e4m3fn, "float8_e4m3fn", 4),
        _float("F8_E5M2", 1, ml_dtypes.float8_e5m2, "float8_e5m2", 3),
        _int("I64", 8, np.int64, "int64"),
        _int("I32", 4, np.int32, "int32"),
        _int("I16", 2, np.int16, "int16"),
        _int("I8", 1, np.int8, "int8"),
        _int("U64", 8, np.uint64, "uint64"),
        _int("U32", 4, np.uint32, "uint32"),
        _int("U16", 2, np.uint16, "uint16"),
        _int("U8", 1, np.uint8, "uint8"),
        _int("BOOL", 1, np.bool_, "bool"),
    )
}
FLOAT_DTYPES = frozenset(name for name, d in DTYPES.items() if d.is_float and not name.startswith("F8"))
OUTPUT_DTYPES: dict[str, DType] = {d.output_name: d for d in DTYPES.values() if d.output_name}


def by_safetensors(name: str) -> DType:
    """The dtype of a safetensors header name (``KeyError`` for unknown ones)."""
    return DTYPES[name]


def by_output_name(name: str) -> DType:
    """The dtype of a ``--dtype`` value (``float32``, ``bfloat16``, ``float16``)."""
    return OUTPUT_DTYPES[name]


def by_torch_name(name: str) -> DType | None:
    """The dtype of ``str(tensor.dtype)`` (``torch.bfloat16``), or None when chatvector has none."""
    short = name.removeprefix("torch.")
    return next((d for d in DTYPES.values() if d.torch == short), None)
