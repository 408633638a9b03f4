"""Compile the ``.proto`` files beside this module into ``*_pb2.py`` and ``*_pb2.pyi``.

Run from the repository root after changing a ``.proto`` file (needs ``grpcio-tools``,
which the project does not install: ``pip install grpcio-tools``)::

    python -m exesdb.grpc.protos.regenerate

The generated modules are rewritten to add their files to the private pool of
:mod:`exesdb.grpc.protos._pool` instead of protobuf's default pool.
"""

from __future__ import annotations

import pathlib
import re
import sys

HERE = pathlib.Path(__file__).resolve().parent
ROOT = HERE.parents[2]


def main() -> int:
    """Compile every ``.proto`` here; return protoc's exit status."""
    from grpc_tools import protoc  # type: ignore[import-untyped]

    protos = sorted(str(p.relative_to(ROOT)) for p in HERE.glob("*.proto"))
    status: int = protoc.main(["protoc", "-I", str(ROOT), "-I", protoc_include(protoc),
                               f"--python_out={ROOT}", f"--pyi_out={ROOT}", *protos])
    if status:
        return status
    for module in HERE.glob("*_pb2.py"):
        text = module.read_text()
        text = text.replace("DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile(",
                            "DESCRIPTOR = POOL.AddSerializedFile(")
        text = re.sub(r"^_sym_db = _symbol_database.Default\(\)$",
                      "_sym_db = _symbol_database.Default()\n"
                      "from exesdb.grpc.protos._pool import POOL",
                      text, flags=re.MULTILINE)
        module.write_text(text)
    return 0


def protoc_include(protoc: object) -> str:
    """The folder of the well-known ``google/protobuf/*.proto`` files grpc-tools ships."""
    return str(pathlib.Path(protoc.__file__).parent / "_proto")  # type: ignore[attr-defined]


if __name__ == "__main__":
    sys.exit(main())
