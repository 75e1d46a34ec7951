"""Regenerate the committed protobuf stubs from ``proto/`` with grpcio-tools: our
``factorylens.rca.v1`` API (messages and gRPC stubs) and the vendored Prometheus remote-write
messages (``prometheus.WriteRequest``, used by ``rca_service.remote_write``).

The stubs are committed so that installing factorylens needs no code generator; a test regenerates
them and fails if they differ. Run ``python -m factorylens.rca_service.api._generate`` after editing
a .proto. grpcio-tools writes absolute imports named after the proto path; they are rewritten to
relative ones so the stubs live inside our package.
"""

from __future__ import annotations

import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
PROTO_ROOT = HERE / "proto"


@dataclass(frozen=True)
class StubSet:
    """The .proto files of one package and where their generated stubs are committed."""

    protos: tuple[str, ...]  # paths under PROTO_ROOT
    package: str  # the proto path's folder, as grpcio-tools mirrors it in its output
    output: Path
    files: tuple[str, ...]
    grpc: bool
    imports: tuple[tuple[str, str], ...]  # (absolute import grpcio-tools writes, the relative one)


STUB_SETS = (
    StubSet(
        ("factorylens/rca/v1/rca.proto",),
        "factorylens/rca/v1",
        HERE / "v1",
        ("rca_pb2.py", "rca_pb2.pyi", "rca_pb2_grpc.py"),
        True,
        (("from factorylens.rca.v1 import rca_pb2", "from . import rca_pb2"),),
    ),
    StubSet(
        ("prometheus/prompb/types.proto", "prometheus/prompb/remote.proto"),
        "prometheus/prompb",
        HERE / "prompb",
        ("types_pb2.py", "types_pb2.pyi", "remote_pb2.py", "remote_pb2.pyi"),
        False,
        (("from prometheus.prompb import types_pb2", "from . import types_pb2"),),
    ),
)
# the rca.v1 stubs' folder, kept for callers that predate the Prometheus stubs
OUTPUT = STUB_SETS[0].output


def generate() -> dict[Path, str]:
    """Every committed stub file's path and its freshly generated contents."""
    import grpc_tools
    from grpc_tools import protoc

    include = str(Path(grpc_tools.__file__).parent / "_proto")
    files: dict[Path, str] = {}
    for stubs in STUB_SETS:
        with tempfile.TemporaryDirectory() as out:
            plugins = [f"--grpc_python_out={out}"] if stubs.grpc else []
            code = protoc.main(
                [
                    "grpc_tools.protoc",
                    f"-I{PROTO_ROOT}",
                    f"-I{include}",
                    f"--python_out={out}",
                    f"--pyi_out={out}",
                    *plugins,
                    *(str(PROTO_ROOT / proto) for proto in stubs.protos),
                ]
            )
            if code != 0:
                raise RuntimeError(f"protoc failed with exit code {code}")
            generated = Path(out) / stubs.package
            for name in stubs.files:
                text = (generated / name).read_text()
                for absolute, relative in stubs.imports:
                    text = text.replace(absolute, relative)
                files[stubs.output / name] = text
    return files


def main() -> int:
    for path, text in generate().items():
        path.write_text(text)
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
