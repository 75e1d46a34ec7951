"""Run rotel, the embedded default collector: the ``rotel-agent`` binary of the ``rotel`` PyPI package, set up from
an env file of ``ROTEL_*`` variables (by default the packaged ``otel-config/rotel.env``).

rotel runs Python processors in an embedded interpreter, the system's ``libpython3.X`` (the X of the wheel, which
pip picked for this venv's Python). That interpreter does not know this venv, so the launcher puts the venv's
site-packages (and the folder holding ``factorylens``, which an editable install reaches through a ``.pth`` file the
embedded interpreter never reads) on ``PYTHONPATH``.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import importlib.util
import os
import shlex
import sys
import sysconfig
from collections.abc import Mapping, Sequence
from pathlib import Path

import factorylens

PACKAGED_ENV_FILE = Path(__file__).with_name("rotel.env")  # a link to otel-config/rotel.env; a copy in a wheel
PROCESSOR_KEYS = (
    "ROTEL_OTLP_WITH_METRICS_PROCESSOR",
    "ROTEL_OTLP_WITH_TRACE_PROCESSOR",
    "ROTEL_OTLP_WITH_LOGS_PROCESSOR",
)
_PREFIX = "ROTEL_"


class RotelUnavailable(RuntimeError):
    """rotel cannot run here; the message says what to install."""


def find_agent() -> Path:
    """The ``rotel-agent`` binary shipped inside the ``rotel`` package."""
    try:
        import rotel
    except ImportError:
        raise RotelUnavailable("rotel is not installed: pip install 'factorylens[collector]'") from None
    agent = Path(rotel.__file__).parent / "rotel-agent"
    if not agent.is_file():
        raise RotelUnavailable(f"the rotel package has no agent binary at {agent}: reinstall rotel")
    return agent


def libpython_name() -> str:
    """The shared library rotel's wheel links against: the one of this interpreter's version."""
    return f"python{sys.version_info.major}.{sys.version_info.minor}"


def check_libpython() -> str:
    """The loadable ``libpython3.X`` soname, found as the dynamic loader finds it (not the copy this interpreter may
    have loaded itself); :class:`RotelUnavailable` saying what to install when it is missing."""
    name = libpython_name()
    found = ctypes.util.find_library(name)
    try:
        if found is None:
            raise OSError(f"lib{name}.so not found by the dynamic loader")
        ctypes.CDLL(found)
    except OSError as exc:
        raise RotelUnavailable(
            f"rotel-agent needs the shared library lib{name} ({exc}): apt-get install lib{name}"
        ) from None
    return found


def python_path() -> list[str]:
    """Where the embedded interpreter finds factorylens and its dependencies."""
    paths = [str(Path(factorylens.__file__).parent.parent)]
    for key in ("purelib", "platlib"):
        path = sysconfig.get_paths()[key]
        if path not in paths:
            paths.append(path)
    return paths


def read_env_file(path: Path) -> dict[str, str]:
    """``KEY=VALUE`` lines (``#`` comments, blank lines and optional quotes allowed); processor files given
    relative are resolved against the file's own folder, so the file works from any working directory."""
    settings: dict[str, str] = {}
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        key, sep, value = line.partition("=")
        key, value = key.strip().removeprefix("export "), value.strip()
        if not sep or not key.startswith(_PREFIX):
            raise ValueError(f"{path}:{number}: expected ROTEL_NAME=value, got {raw!r}")
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        if key in PROCESSOR_KEYS:
            value = ",".join(_processor_file(path, p.strip()) for p in value.split(",") if p.strip())
        settings[key] = value
    return settings


def _processor_file(env_file: Path, entry: str) -> str:
    """A processor named as a module (``factorylens.processors.rotel``: its file, wherever factorylens is
    installed, a wheel included) or as a file relative to the env file."""
    if "/" not in entry and not entry.endswith(".py"):
        spec = importlib.util.find_spec(entry)
        if spec is None or not spec.origin:
            raise ValueError(f"{env_file}: processor module {entry!r} cannot be found")
        return spec.origin
    return str(env_file.resolve().parent / entry)


def _duration(seconds: float) -> str:
    return f"{round(seconds * 1000)}ms"


def rotel_command(
    grpc_endpoint: str | None,
    http_endpoint: str | None,
    exporter_endpoint: str | None,
    *,
    metrics_processors: Sequence[str | Path] = (),
    retry_initial_backoff_s: float | None = None,
    retry_max_backoff_s: float | None = None,
    retry_max_elapsed_s: float | None = None,
    batch_timeout_ms: int | None = None,
    settings: Mapping[str, str] | None = None,
    extra_env: Mapping[str, str] | None = None,
    agent: Path | None = None,
) -> tuple[list[str], dict[str, str]]:
    """``(argv, env)`` that run rotel in the foreground: OTLP in on ``grpc_endpoint``/``http_endpoint``
    (``host:port``), OTLP/gRPC out to ``exporter_endpoint`` (``http://host:port``), gzip. ``settings`` (an env
    file's ``ROTEL_*``) come first, the arguments that are not None override them, ``extra_env`` overrides all.
    ``env`` is this process's environment without its ``ROTEL_*`` variables, plus those and ``PYTHONPATH``."""
    rotel: dict[str, str] = {"ROTEL_EXPORTER": "otlp", "ROTEL_OTLP_EXPORTER_COMPRESSION": "gzip"}
    rotel.update(settings or {})
    chosen = {
        "ROTEL_OTLP_GRPC_ENDPOINT": grpc_endpoint,
        "ROTEL_OTLP_HTTP_ENDPOINT": http_endpoint,
        "ROTEL_OTLP_EXPORTER_ENDPOINT": exporter_endpoint,
        "ROTEL_OTLP_EXPORTER_RETRY_INITIAL_BACKOFF": None
        if retry_initial_backoff_s is None
        else _duration(retry_initial_backoff_s),
        "ROTEL_OTLP_EXPORTER_RETRY_MAX_BACKOFF": None
        if retry_max_backoff_s is None
        else _duration(retry_max_backoff_s),
        "ROTEL_OTLP_EXPORTER_RETRY_MAX_ELAPSED_TIME": None
        if retry_max_elapsed_s is None
        else _duration(retry_max_elapsed_s),
        "ROTEL_BATCH_TIMEOUT": None if batch_timeout_ms is None else f"{batch_timeout_ms}ms",
    }
    rotel.update({k: v for k, v in chosen.items() if v is not None})
    if metrics_processors:
        rotel["ROTEL_OTLP_WITH_METRICS_PROCESSOR"] = ",".join(str(Path(p).resolve()) for p in metrics_processors)
    rotel.update(extra_env or {})
    env = {k: v for k, v in os.environ.items() if not k.startswith(_PREFIX)}
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = os.pathsep.join(python_path() + ([inherited] if inherited else []))
    env.update(rotel)
    return [str(agent or find_agent()), "start"], env


def missing_processors(env: Mapping[str, str]) -> list[str]:
    """Processor files named in ``env`` that do not exist."""
    return [p for key in PROCESSOR_KEYS for p in env.get(key, "").split(",") if p and not Path(p).is_file()]


def shell_command(argv: Sequence[str], env: Mapping[str, str]) -> str:
    """The command as a shell line: the variables it sets (``PYTHONPATH``, ``ROTEL_*``), then argv."""
    shown = [f"{k}={shlex.quote(v)}" for k, v in sorted(env.items()) if k.startswith(_PREFIX) or k == "PYTHONPATH"]
    return " \\\n  ".join([*shown, shlex.join(argv)])


# ---------------------------------------------------------------------------- CLI

_EPILOG = """\
settings, later ones winning: the env file, ROTEL_* variables already in the environment, these options.

examples:
  factorylens collector                                   # otel-config/rotel.env: 127.0.0.1:14317 -> 127.0.0.1:4317
  factorylens collector --exporter-endpoint http://rca.example:4317 --no-processors
  factorylens collector --print-command                   # what would run, as a shell command
"""


def add_collector_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "collector",
        help="run rotel, the embedded OTLP collector, in front of the RCA service",
        description="Run rotel (the rotel-agent binary of the rotel package) in the foreground: OTLP in, OTLP/gRPC\n"
        "with gzip out to the RCA service, retrying with backoff from an in-memory buffer (lost if rotel\n"
        "restarts; otel-config/README.md shows a collector that keeps it on disk). Python processors run in\n"
        "the system's libpython3.X with this venv on PYTHONPATH.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument(
        "--env-file",
        type=Path,
        default=PACKAGED_ENV_FILE,
        metavar="FILE",
        help="ROTEL_* settings (default: the packaged otel-config/rotel.env)",
    )
    p.add_argument("--grpc-endpoint", metavar="HOST:PORT", help="OTLP/gRPC listen address")
    p.add_argument("--http-endpoint", metavar="HOST:PORT", help="OTLP/HTTP listen address")
    p.add_argument("--exporter-endpoint", metavar="URL", help="the RCA service, e.g. http://127.0.0.1:4317")
    p.add_argument("--no-processors", action="store_true", help="run no Python processors in the collector")
    p.add_argument("--rotel-agent", type=Path, metavar="PATH", help="another rotel-agent binary")
    p.add_argument("--print-command", action="store_true", help="print the command and its variables; run nothing")
    p.set_defaults(func=_run_collector)


def _run_collector(args: argparse.Namespace) -> int:
    try:
        settings = read_env_file(args.env_file)
    except (OSError, ValueError) as exc:
        print(f"error: cannot read the env file: {exc}", file=sys.stderr)
        return 2
    settings.update({k: v for k, v in os.environ.items() if k.startswith(_PREFIX)})
    if args.no_processors:
        for key in PROCESSOR_KEYS:
            settings.pop(key, None)
    try:
        argv, env = rotel_command(
            args.grpc_endpoint, args.http_endpoint, args.exporter_endpoint, settings=settings, agent=args.rotel_agent
        )
    except RotelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.print_command:
        print(shell_command(argv, env))
        return 0
    if missing := missing_processors(env):
        print(
            f"error: processor file(s) not found: {', '.join(missing)} (or run with --no-processors)", file=sys.stderr
        )
        return 2
    try:
        check_libpython()
    except RotelUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    os.execve(argv[0], argv, env)  # rotel replaces this process: signals and exit status are its own
