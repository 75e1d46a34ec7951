"""The documentation stays true to the repository.

README.md stays short; every link in README.md and docs/*.md resolves to a file (and heading) inside
the repository; every `factorylens …` command they show exists, with its options; every `make …`
target they name is in the Makefile. Each check is a function over markdown text, so the tests at
the bottom also prove that each one fails on a broken document.
"""

from __future__ import annotations

import functools
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
README_MAX_LINES = 220


def doc_files() -> list[Path]:
    return [README, *sorted((ROOT / "docs").glob("*.md"))]


# ---------------------------------------------------------------------------- markdown parsing

FENCE = re.compile(r"^(?P<fence>```|~~~)[^\n]*\n(?P<body>.*?)^(?P=fence)[ \t]*$", re.M | re.S)
CODE_SPAN = re.compile(r"(?<!`)`([^`]+)`(?!`)")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^()\s<>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^[ \t]*\[[^\]]+\]:[ \t]*<?(\S+?)>?(?:[ \t]+\"[^\"]*\")?[ \t]*$", re.M)
HTML_LINK = re.compile(r"""\b(?:href|src)=["']([^"']+)["']""")
HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$", re.M)
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# a relative path that climbs: `../x`, `../../x`, anywhere in the text, links or not
CLIMBING_PATH = re.compile(r"(?<![\w.~/-])((?:\.\./)+[^\s`'\")\]]*)")
# a path into the repository's own folders, as code: `bench/nab.py`, `deploy/README.md`
TOP_FOLDERS = (
    "factorylens",
    "receivers",
    "instrumentation",
    "processors",
    "rca_service",
    "dashboards",
    "otel-config",
    "deploy",
    "bench",
    "tests",
    "docs",
)
_TOP = "|".join(map(re.escape, TOP_FOLDERS))
REPO_PATH = re.compile(rf"(?<![\w./$<>-])((?:{_TOP})/[\w./-]*)")


def split_code(text: str) -> tuple[list[str], str]:
    """``(code, prose)``: the lines of fenced blocks (shell continuations joined) and inline code
    spans, and the text with all code removed."""
    code: list[str] = []

    def take_block(match: re.Match) -> str:
        code.extend(match.group("body").replace("\\\n", " ").splitlines())
        return "\n"

    prose = FENCE.sub(take_block, text)

    def take_span(match: re.Match) -> str:
        code.append(" ".join(match.group(1).split()))
        return " "

    prose = CODE_SPAN.sub(take_span, prose)
    return code, prose


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: formatting dropped, lower case, punctuation out, spaces to -."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = text.replace("`", "").replace("*", "").lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(text: str) -> set[str]:
    prose = FENCE.sub("\n", text)
    seen: dict[str, int] = {}
    result: set[str] = set()
    for match in HEADING.finditer(prose):
        base = slug(match.group(2))
        n = seen.get(base, 0)
        seen[base] = n + 1
        result.add(base if n == 0 else f"{base}-{n}")
    return result


def links(text: str) -> list[str]:
    _, prose = split_code(text)
    return LINK.findall(prose) + REFERENCE_LINK.findall(prose) + HTML_LINK.findall(prose)


# ---------------------------------------------------------------------------- the checks


def link_problems(text: str, doc: Path, root: Path = ROOT) -> list[str]:
    """Every link is a relative path to an existing file inside ``root`` (and, with ``#x``, to a
    heading of that markdown file); no text names a relative path that leaves ``root``."""
    problems: list[str] = []
    for target in links(text):
        where = f"{doc.name}: link {target!r}"
        if SCHEME.match(target) or target.startswith("//"):
            problems.append(f"{where} points outside the repository")
            continue
        if target.startswith("/"):
            problems.append(f"{where} is absolute; use a path relative to the file")
            continue
        path_part, _, anchor = target.partition("#")
        path = (doc.parent / path_part).resolve() if path_part else doc.resolve()
        if not path.is_relative_to(root.resolve()):
            problems.append(f"{where} points outside the repository")
        elif not path.exists():
            problems.append(f"{where}: no such file")
        elif anchor and path.suffix == ".md" and anchor not in anchors(path.read_text()):
            problems.append(f"{where}: no heading #{anchor} in {path.relative_to(root.resolve())}")
    for climbing in CLIMBING_PATH.findall(text):
        if not (doc.parent / climbing).resolve().is_relative_to(root.resolve()):
            problems.append(f"{doc.name}: path {climbing!r} points outside the repository")
    return problems


def repo_path_problems(text: str, doc: Path, root: Path = ROOT) -> list[str]:
    """Paths into the repository's folders shown as code (`bench/nab.py`) exist."""
    code, _ = split_code(text)
    problems = []
    for snippet in code:
        for path in REPO_PATH.findall(snippet):
            path = path.split("::")[0].rstrip(".,;:")
            if not (root / path).exists():
                problems.append(f"{doc.name}: `{path}` does not exist")
    return problems


COMMAND = re.compile(r"(?:^|(?<=[\s(=/]))factorylens((?:[ \t]+[^\s#`]+)*)")
SUBCOMMAND = re.compile(r"^[a-z][a-z0-9-]*(?:\|[a-z][a-z0-9-]*)*$")
OPTION = re.compile(r"^(--[a-z][a-z0-9-]*)")


def commands(text: str) -> list[tuple[tuple[str, ...], tuple[str, ...]]]:
    """``(words, options)`` of every `factorylens …` command shown as code, e.g.
    ``(("rca", "series|incidents"), ("--limit",))``; words are the non-option words in order."""
    code, _ = split_code(text)
    found = []
    for snippet in code:
        for match in COMMAND.finditer(snippet.split(" # ")[0]):
            tokens = match.group(1).split()
            if not tokens or not SUBCOMMAND.match(tokens[0]):
                continue  # `factorylens` alone, or a package name such as factorylens[torch]
            words = tuple(t for t in tokens if not t.startswith("-"))
            options = tuple(m.group(1) for t in tokens if (m := OPTION.match(t.lstrip("[("))))
            found.append((words, options))
    return found


@functools.cache
def cli_help(path: tuple[str, ...]) -> tuple[int, str]:
    """``factorylens <path> --help`` with this interpreter (works in any venv)."""
    out = subprocess.run(
        [sys.executable, "-m", "factorylens", *path, "--help"], cwd=ROOT, capture_output=True, text=True, timeout=120
    )
    return out.returncode, out.stdout + out.stderr


def has_subcommands(help_text: str) -> bool:
    usage = help_text.split("\n\n")[0]
    return bool(re.search(r"(COMMAND|\{[\w,-]+\}) \.\.\.", usage))


def command_paths(words: tuple[str, ...]) -> list[tuple[str, ...]]:
    """The subcommand paths a command's words name: the first word, then one more level for
    each alternative (`series|incidents`) where the first has subcommands."""
    first = tuple(words[0].split("|"))
    paths: list[tuple[str, ...]] = []
    for top in first:
        rc, text = cli_help((top,))
        if rc == 0 and has_subcommands(text) and len(words) > 1 and SUBCOMMAND.match(words[1]):
            paths += [(top, sub) for sub in words[1].split("|")]
        else:
            paths.append((top,))
    return paths


def command_problems(text: str, doc: Path) -> list[str]:
    problems = []
    for words, options in commands(text):
        for path in command_paths(words):
            rc, help_text = cli_help(path)
            shown = "factorylens " + " ".join(path)
            if rc != 0:
                problems.append(f"{doc.name}: `{shown}` is not a command (--help exits {rc})")
                continue
            for option in options:
                if not re.search(re.escape(option) + r"(?![\w-])", help_text):
                    problems.append(f"{doc.name}: `{shown}` has no option {option}")
    return problems


MAKE = re.compile(r"(?:^|(?<=[\s(]))make((?:[ \t]+[^\s#;&|`]+)*)")


def make_targets_named(text: str) -> list[str]:
    code, _ = split_code(text)
    targets = []
    for snippet in code:
        for match in MAKE.finditer(snippet.split(" # ")[0]):
            targets += [t for t in match.group(1).split() if "=" not in t and not t.startswith("-")]
    return targets


def makefile_targets(makefile: Path = ROOT / "Makefile") -> set[str]:
    targets: set[str] = set()
    for line in makefile.read_text().splitlines():
        match = re.match(r"^([A-Za-z0-9_.-]+(?:[ \t]+[A-Za-z0-9_.-]+)*)[ \t]*::?(?!=)", line)
        if match:
            targets.update(t for t in match.group(1).split() if not t.startswith("."))
    return targets


def make_problems(text: str, doc: Path, makefile: Path = ROOT / "Makefile") -> list[str]:
    known = makefile_targets(makefile)
    return [f"{doc.name}: `make {t}` is not a Makefile target" for t in make_targets_named(text) if t not in known]


# ---------------------------------------------------------------------------- the repository's docs


def test_readme_is_short():
    lines = len(README.read_text().splitlines())
    assert lines <= README_MAX_LINES, f"README.md has {lines} lines (at most {README_MAX_LINES}): move detail to docs/"


def test_links_resolve_inside_the_repository():
    problems, count = [], 0
    for doc in doc_files():
        text = doc.read_text()
        count += len(links(text))
        problems += link_problems(text, doc)
    assert count >= 20, "found almost no links: is the link parser broken?"
    assert not problems, "\n".join(problems)


def test_repository_paths_shown_as_code_exist():
    problems = [p for doc in doc_files() for p in repo_path_problems(doc.read_text(), doc)]
    assert not problems, "\n".join(problems)


def test_every_docs_page_is_linked_from_the_readme_and_the_docs_index():
    pages = {p.name for p in (ROOT / "docs").glob("*.md")} - {"README.md"}
    assert pages, "docs/ has no pages"
    from_readme = {Path(t.partition("#")[0]).name for t in links(README.read_text()) if t.startswith("docs/")}
    from_index = {Path(t.partition("#")[0]).name for t in links((ROOT / "docs" / "README.md").read_text())}
    assert pages <= from_readme, f"README.md does not link {sorted(pages - from_readme)}"
    assert pages <= from_index, f"docs/README.md does not link {sorted(pages - from_index)}"


@pytest.mark.slow
def test_every_factorylens_command_shown_exists():
    found = {words for doc in doc_files() for words, _ in commands(doc.read_text())}
    assert {("gpu",), ("metrics",)} <= {w[:1] for w in found} and any(w[:2] == ("rca", "serve") for w in found)
    problems = [p for doc in doc_files() for p in command_problems(doc.read_text(), doc)]
    assert not problems, "\n".join(problems)


def test_every_make_target_named_exists():
    named = {t for doc in doc_files() for t in make_targets_named(doc.read_text())}
    assert {"demo", "test"} <= named, "the README must show `make demo` and `make test`"
    problems = [p for doc in doc_files() for p in make_problems(doc.read_text(), doc)]
    assert not problems, "\n".join(problems)


# ---------------------------------------------------------------------------- the checks can fail

DOC = ROOT / "docs" / "example.md"  # where the broken examples below pretend to live


@pytest.mark.parametrize(
    "markdown",
    [
        "See [the agent](node-agent-typo.md).",
        "See [the agent](node-agent.md#no-such-heading).",
        "See [shared data](../../shared/data/nab).",
        "Data is in `../../shared/data/rca`.",
        "See [the spec](https://opentelemetry.io/docs/specs/semconv/).",
        "See [the file](/etc/passwd).",
        "[ref]: ../../outside.md",
    ],
)
def test_link_check_catches(markdown):
    assert link_problems(markdown, DOC)


def test_link_check_accepts_good_links():
    assert not link_problems(
        "[agent](node-agent.md#deployment-a-bare-gpu-node-systemd-kubernetes), "
        "[deploy](../deploy/README.md), [top](../README.md), `../bench/nab.py`",
        DOC,
    )


def test_repo_path_check_catches_a_missing_file():
    assert repo_path_problems("Run `bench/no_such_bench.py`.", DOC)
    assert not repo_path_problems("Run `bench/nab.py` and `tests/rca/test_server.py::test_x`.", DOC)


@pytest.mark.parametrize(
    "markdown",
    [
        "`factorylens no-such-command`",
        "```sh\nfactorylens rca no-such-subcommand --json\n```",
        "`factorylens rca series|no-such-subcommand`",
        "```sh\nfactorylens gpu --backend sim \\\n  --no-such-option\n```",
        "`factorylens rca replay FILE [--no-such-option X]`",
    ],
)
def test_command_check_catches(markdown):
    assert command_problems(markdown, DOC)


def test_command_check_accepts_real_commands():
    assert not command_problems(
        "`factorylens rca series|incidents` and\n```sh\nOTEL_X=1 factorylens gpu "
        "--backend sim  # a comment with --no-such-option\n```",
        DOC,
    )
    assert commands("`pip install 'factorylens[torch]'`, `import factorylens.instrumentation`") == []


def test_make_check_catches_a_missing_target(tmp_path):
    makefile = tmp_path / "Makefile"
    makefile.write_text(".PHONY: demo\ndemo: $(STAMP)\n\techo\nVAR ?= x\n")
    assert make_problems("```sh\nmake demo DEMO_ARGS=\nmake no-such-target\n```", DOC, makefile) == [
        "example.md: `make no-such-target` is not a Makefile target"
    ]
