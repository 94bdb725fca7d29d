"""Fetch llama.cpp's own HF-to-GGUF converter, reproducibly, for the parity tests and the bench.

    python bench/llamacpp_converter.py [--version V] [--dest DIR]

chatvector does not ship llama.cpp's ``convert_hf_to_gguf.py``; the llama-cpp-python sdist
carries it (``vendor/llama.cpp``). This downloads that sdist for the version the lock pins
(``constraints.txt``: ``llama-cpp-python==V``; ``--version`` overrides) with
``pip download --no-deps --no-binary :all:``, extracts only the converter, the ``conversion``
package it imports and its own ``gguf-py`` (plus llama.cpp's LICENSE) into
``DIR/llama.cpp-V`` (default ``~/.cache/chatvector/llamacpp-converter``), and prints the path
of ``convert_hf_to_gguf.py``. A complete earlier extraction of the same version is reused.

Tests find the converter through ``CHATVECTOR_LLAMACPP_CONVERTER`` (that path); run it with the
environment's python (it needs torch, transformers and numpy, which the test extra has).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WANTED = ("convert_hf_to_gguf.py", "conversion/", "gguf-py/", "LICENSE")
MARKER = ".chatvector-complete.json"


def locked_version(constraints: Path) -> str:
    """The llama-cpp-python version ``constraints.txt`` pins."""
    match = re.search(r"^llama-cpp-python==([^\s#]+)", constraints.read_text(), flags=re.MULTILINE)
    if match is None:
        raise SystemExit(f"{constraints}: no llama-cpp-python==VERSION line; pass --version")
    return match.group(1)


def download(version: str, into: Path) -> Path:
    """The sdist of llama-cpp-python ``version``, downloaded by pip into ``into``."""
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:"]
    command += [f"llama-cpp-python=={version}", "-d", str(into), "-q"]
    subprocess.run(command, check=True)
    found = sorted(into.glob(f"llama_cpp_python-{version}.tar.gz"))
    if not found:
        raise SystemExit(f"pip saved no llama_cpp_python-{version}.tar.gz in {into}")
    return found[0]


def extract(sdist: Path, version: str, target: Path) -> None:
    """The converter's files of ``sdist`` into ``target`` (written beside it, then renamed)."""
    prefix = f"llama_cpp_python-{version}/vendor/llama.cpp/"
    staging = Path(tempfile.mkdtemp(prefix=".extract-", dir=target.parent))
    try:
        with tarfile.open(sdist) as archive:
            members = []
            for member in archive.getmembers():
                inside = member.name.removeprefix(prefix)
                if member.name.startswith(prefix) and inside.startswith(WANTED):
                    member.name = inside
                    members.append(member)
            if not any(m.name == "convert_hf_to_gguf.py" for m in members):
                raise SystemExit(f"{sdist} holds no {prefix}convert_hf_to_gguf.py")
            archive.extractall(staging, members=members, filter="data")
        digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
        (staging / MARKER).write_text(json.dumps({"sdist": sdist.name, "sha256": digest}) + "\n")
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--version", default=None, help="llama-cpp-python version (default: the lock's)")
    parser.add_argument("--dest", type=Path, default=Path.home() / ".cache" / "chatvector" / "llamacpp-converter")
    args = parser.parse_args(argv)
    version = args.version or locked_version(ROOT / "constraints.txt")
    target = args.dest / f"llama.cpp-{version}"
    if not (target / MARKER).is_file():
        args.dest.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=args.dest) as scratch:
            extract(download(version, Path(scratch)), version, target)
    print(target / "convert_hf_to_gguf.py")
    return 0


if __name__ == "__main__":
    sys.exit(main())
