"""Regenerate the committed ``factorylens.rca.v1`` stubs from ``proto/`` with grpcio-tools.

The stubs are committed so that installing factorylens needs no code generator; a test regenerates
them and fails if they differ. Run ``python -m factorylens.rca_service.api._generate`` after editing
the .proto. grpcio-tools writes absolute imports named after the proto path; they are rewritten to
relative ones so the stubs live inside our package.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE / "proto"
PROTO = "factorylens/rca/v1/rca.proto"
OUTPUT = HERE / "v1"
FILES = ("rca_pb2.py", "rca_pb2.pyi", "rca_pb2_grpc.py")


def generate() -> dict[str, str]:
    """The stub files' contents, freshly generated."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    with tempfile.TemporaryDirectory() as out:
        code = protoc.main(
            [
                "grpc_tools.protoc",
                f"-I{PROTO_ROOT}",
                f"-I{include}",
                f"--python_out={out}",
                f"--pyi_out={out}",
                f"--grpc_python_out={out}",
                str(PROTO_ROOT / PROTO),
            ]
        )
        if code != 0:
            raise RuntimeError(f"protoc failed with exit code {code}")
        generated = Path(out) / "factorylens" / "rca" / "v1"
        files = {}
        for name in FILES:
            text = (generated / name).read_text()
            files[name] = text.replace("from factorylens.rca.v1 import rca_pb2", "from . import rca_pb2")
        return files


def main() -> int:
    for name, text in generate().items():
        (OUTPUT / name).write_text(text)
        print(f"wrote {OUTPUT / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
