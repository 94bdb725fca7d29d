"""What one in-place update's arithmetic costs per element, against the memory-streaming floor.

    .venv/bin/python bench/inplace_passes.py                 # 200 M elements, 2 rounds
    .venv/bin/python bench/inplace_passes.py --elements 50000000 --rounds 3

An in-place update with its inputs in memory (:mod:`chatvector.merge.resident`) reads, per element,
the target (bfloat16, 2 bytes) and the float32 difference chat − base (4 bytes), and writes the
float32 parameter (4 bytes). This times, in thread CPU nanoseconds per element on arrays far larger
than the caches, ways to do that in numpy (one thread; ratio 0.7):

- ``floor``: widen the target and add the difference into the parameter, nothing else: the
  memory traffic alone, not a correct merge (no scaling, check or rounding);
- ``engine``: the engine's order: widen the target into a 1 M-element accumulator, scale and add
  in 128 K blocks, check and round to bfloat16 per block (ml_dtypes), widen the chunk into the
  parameter;
- ``blocked``: the same passes, all on each 128 K block in turn (cache blocking, the widening too);
- ``blocked-int``: as ``blocked``, but the rounding to bfloat16 and the widening done at once with
  integer operations on the float32 bits (round to nearest even: ``(u + 0x7FFF + ((u >> 16) & 1))
  & 0xFFFF0000``), written straight into the parameter; valid for finite values within bfloat16's
  range, which the check establishes first; its bits are compared with ml_dtypes' cast, widened,
  over a stride of all float32 bit patterns;
- ``blocked-torch``: as ``blocked``, but rounding and widening with torch's vectorised ``copy_`` in
  32 K pieces (below torch's parallel grain).

Only numbers are printed; the 2-core machine is shared, so run it a few times.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

import ml_dtypes
import numpy as np

BF16 = np.dtype(ml_dtypes.bfloat16)
BLOCK = 1 << 17
CHUNK = 1 << 20
PIECE = 1 << 15
RATIO = np.float32(0.7)


def exact_int_rounding(stride: int = 7) -> tuple[int, int]:
    """(patterns checked, mismatches) of the integer rounding against ml_dtypes over every
    ``stride``-th float32 bit pattern that is finite and within bfloat16's range."""
    limit = float(ml_dtypes.finfo(ml_dtypes.bfloat16).max)
    checked = mismatches = 0
    for high in range(0, 1 << 32, 1 << 24):
        bits = np.arange(high, high + (1 << 24), stride, dtype=np.uint64).astype(np.uint32)
        values = bits.view(np.float32)
        keep = np.isfinite(values) & (np.abs(values) <= limit)
        bits, values = bits[keep], values[keep]
        reference = values.astype(BF16).astype(np.float32).view(np.uint32)
        rounded = (bits + np.uint32(0x7FFF) + ((bits >> 16) & 1)) & np.uint32(0xFFFF0000)
        checked += bits.size
        mismatches += int((rounded != reference).sum())
    return checked, mismatches


def variants(target: np.ndarray, difference: np.ndarray, parameter: np.ndarray) -> dict[str, Callable[[], None]]:
    import torch

    acc = np.empty(CHUNK, dtype=np.float32)
    scratch = np.empty(CHUNK, dtype=np.float32)
    out = np.empty(CHUNK, dtype=BF16)
    bits = np.empty(CHUNK, dtype=np.uint32)
    acc_t, parameter_t = torch.from_numpy(acc), torch.from_numpy(parameter)
    out_t = torch.empty(CHUNK, dtype=torch.bfloat16)
    total = target.size

    def spans(step: int) -> list[tuple[int, int]]:
        return [(s, min(total, s + step)) for s in range(0, total, step)]

    def floor() -> None:
        for s, e in spans(BLOCK):
            block = acc[: e - s]
            np.copyto(block, target[s:e], casting="unsafe")
            np.add(block, difference[s:e], out=parameter[s:e])

    def engine() -> None:
        for s, e in spans(CHUNK):
            n = e - s
            np.copyto(acc[:n], target[s:e], casting="unsafe")
            for b in range(0, n, BLOCK):
                c = min(n, b + BLOCK)
                np.multiply(difference[s + b : s + c], RATIO, out=scratch[: c - b])
                np.add(acc[b:c], scratch[: c - b], out=acc[b:c])
            for b in range(0, n, BLOCK):
                c = min(n, b + BLOCK)
                acc[b:c].min(), acc[b:c].max()
                np.copyto(out[b:c], acc[b:c], casting="unsafe")
            np.copyto(parameter[s:e], out[:n], casting="unsafe")

    def blocked(finish: str) -> Callable[[], None]:
        def run() -> None:
            for s, e in spans(BLOCK):
                n = e - s
                block = acc[:n]
                np.copyto(block, target[s:e], casting="unsafe")
                np.multiply(difference[s:e], RATIO, out=scratch[:n])
                np.add(block, scratch[:n], out=block)
                block.min(), block.max()
                if finish == "ml_dtypes":
                    np.copyto(out[:n], block, casting="unsafe")
                    np.copyto(parameter[s:e], out[:n], casting="unsafe")
                elif finish == "int":
                    u, t = block.view(np.uint32), bits[:n]
                    np.right_shift(u, 16, out=t)
                    np.bitwise_and(t, 1, out=t)
                    np.add(t, 0x7FFF, out=t)
                    np.add(t, u, out=t)
                    np.bitwise_and(t, 0xFFFF0000, out=parameter[s:e].view(np.uint32))
                else:
                    for p in range(0, n, PIECE):
                        q = min(n, p + PIECE)
                        out_t[p:q].copy_(acc_t[p:q])
                        parameter_t[s + p : s + q].copy_(out_t[p:q])

        return run

    return {
        "floor": floor,
        "engine": engine,
        "blocked": blocked("ml_dtypes"),
        "blocked-int": blocked("int"),
        "blocked-torch": blocked("torch"),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--elements", type=int, default=200_000_000)
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    difference = (rng.standard_normal(args.elements, dtype=np.float32) * np.float32(0.01)).astype(np.float32)
    target = rng.standard_normal(args.elements, dtype=np.float32).astype(BF16)
    parameter = np.zeros(args.elements, dtype=np.float32)  # pages touched once, before any timing
    runs = variants(target, difference, parameter)
    runs["floor"]()  # warm-up
    for round_ in range(args.rounds):
        for name, run in runs.items():
            started = time.thread_time()
            run()
            ns = (time.thread_time() - started) / args.elements * 1e9
            print(f"round {round_ + 1}: {name:14s} {ns:.2f} ns/element")
    checked, mismatches = exact_int_rounding()
    print(f"integer rounding vs ml_dtypes: {checked} float32 patterns, {mismatches} mismatches")


if __name__ == "__main__":
    main()
