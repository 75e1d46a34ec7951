"""Log lines to templates: a small Drain (He et al., ICWS 2017), bounded, with stable ids.

Our own rather than ``drain3``: its last release (2022) pins jsonpickle 1.5.1 and cachetools 4.2.1
exactly, saves its state with jsonpickle (objects rebuilt from text), numbers its clusters in the
order they appear (another id after a restart or on a replica) and bounds only the number of
clusters, by evicting one (which comes back under a new id).

A line is cut to ``MAX_LINE_CHARS``, its variables masked (UUIDs, IPv4 addresses, hex ids,
numbers become ``<*>``) and cut to ``MAX_TOKENS`` whitespace tokens. The parse tree has a fixed
depth: the token count, then the first ``PREFIX_TOKENS`` tokens (one holding a digit goes down the
``<*>`` branch, as in the paper), flattened here into one dict of leaves. In its leaf, the template
sharing the most positions with the line takes it when that share reaches ``similarity``; the
positions that differ become ``<*>``. Otherwise the line starts a template, or, once the miner holds
``max_templates`` (or the caller has no room left), counts as :data:`OTHER_ID`.

A template's id is a hash of the text it started with: it stays as the template generalizes, so its
count series lives on, and the line that starts it gets the same id in every process.
"""

from __future__ import annotations

import hashlib
import operator
import re
from dataclasses import dataclass

WILDCARD = "<*>"
OTHER_ID = "other"
OTHER_TEXT = "(other lines: this resource's template limit was reached)"
MAX_LINE_CHARS = 512  # the masking's cost per line
MAX_TOKENS = 64
MAX_TEXT_CHARS = 256  # a template's text as a series' description and in explanations
PREFIX_TOKENS = 2  # the tree's depth below the token count (Drain's depth 4, less root and length)
_VARIABLE = re.compile(
    r"(?=[0-9a-fA-F])(?:"  # every variable starts so: the engine skips other characters quickly
    r"[0-9a-fA-F]{8}(?:-[0-9a-fA-F]{4}){3}-[0-9a-fA-F]{12}"  # UUID (GPU-…, request ids)
    r"|\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?"  # IPv4, with its port
    r"|0[xX][0-9a-fA-F]+"  # hex literal
    r"|\b(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}\b"  # long hex ids (trace ids, hashes)
    r"|(?<![\w.])\d+(?:\.\d+)*"  # numbers, not the digits of a name (gpu3, v1.2 stay)
    r")"
)
_DIGIT = re.compile(r"\d")


@dataclass
class Template:
    id: str
    tokens: list[str]

    @property
    def text(self) -> str:
        return " ".join(self.tokens)[:MAX_TEXT_CHARS]


OTHER = Template(OTHER_ID, [OTHER_TEXT])


def tokens_of(line: str) -> list[str]:
    """The masked tokens Drain compares."""
    return _VARIABLE.sub(WILDCARD, line[:MAX_LINE_CHARS]).split()[:MAX_TOKENS]


def template_id(tokens: list[str]) -> str:
    return hashlib.blake2b(" ".join(tokens).encode(), digest_size=6).hexdigest()


class TemplateMiner:
    """The templates of one source's log lines (at most ``max_templates``)."""

    def __init__(self, max_templates: int = 100, similarity: float = 0.5) -> None:
        if max_templates < 1 or not 0 < similarity <= 1:
            raise ValueError("max_templates must be positive and similarity in (0, 1]")
        self.max_templates = max_templates
        self.similarity = similarity
        self._leaves: dict[tuple[int, tuple[str, ...]], list[Template]] = {}
        self._by_id: dict[str, Template] = {}

    def __len__(self) -> int:
        return len(self._by_id)

    def get(self, template_id: str) -> Template | None:
        return self._by_id.get(template_id)

    def match(self, line: str, *, may_add: bool = True) -> Template:
        """The line's template, updated to cover it; a new one when none is alike (and there is room)."""
        tokens = tokens_of(line)
        leaf = self._leaves.setdefault(_leaf_key(tokens), [])
        best, best_share = None, -1.0
        for template in leaf:
            if template.tokens == tokens:  # the usual case: a line like the last, once masked
                return template
            share = _shared(template.tokens, tokens)
            if share > best_share:
                best, best_share = template, share
        if best is not None and best_share >= self.similarity:
            if best_share < 1:
                best.tokens = [t if t == s else WILDCARD for t, s in zip(best.tokens, tokens, strict=True)]
            return best
        made = Template(template_id(tokens), tokens)
        if not may_add or len(self._by_id) >= self.max_templates or made.id in self._by_id:
            if not leaf:
                del self._leaves[_leaf_key(tokens)]
            return self._by_id.get(made.id, OTHER)
        leaf.append(made)
        self._by_id[made.id] = made
        return made

    def state(self) -> list[tuple[str, list[str]]]:
        return [(t.id, list(t.tokens)) for t in self._by_id.values()]

    def restore(self, state: list[tuple[str, list[str]]]) -> None:
        self._leaves.clear()
        self._by_id.clear()
        for tid, tokens in state[: self.max_templates]:
            template = self._by_id[tid] = Template(tid, list(tokens))
            self._leaves.setdefault(_leaf_key(template.tokens), []).append(template)


def _leaf_key(tokens: list[str]) -> tuple[int, tuple[str, ...]]:
    return len(tokens), tuple(WILDCARD if _DIGIT.search(t) else t for t in tokens[:PREFIX_TOKENS])


def _shared(template: list[str], tokens: list[str]) -> float:
    """Share of positions holding the same token (Drain's simSeq; a wildcard matches only itself)."""
    if not tokens:
        return 1.0
    return sum(map(operator.eq, template, tokens)) / len(tokens)
