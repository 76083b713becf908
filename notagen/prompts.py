"""The period / composer / instrumentation combinations a checkpoint knows (its `prompts.txt`).

A fine-tuned NotaGen model is conditioned on three prompt lines; only the combinations it saw in
fine-tuning make sense. The published demo's `prompts.txt` lists them one a line as
`period_composer_instrumentation`; `period|composer|instrumentation` is read too (a composer name
may hold an underscore only in that form). `PromptCatalog` answers the demo's cascading choices
(periods -> composers of a period -> instrumentations of both), checks a chosen triple on the
server, and draws a random valid one. Order is the file's order.
"""
from __future__ import annotations

import random
from pathlib import Path

Triple = tuple[str, str, str]


class PromptCatalogError(ValueError):
    """A prompts file that cannot be read, or a triple the catalog does not hold."""


def _unique(values) -> list[str]:
    return list(dict.fromkeys(values))


class PromptCatalog:
    def __init__(self, triples, source: str = ""):
        self.triples: list[Triple] = _unique(tuple(t) for t in triples)
        self.source = source
        if not self.triples:
            raise PromptCatalogError(f"no period_composer_instrumentation line in {source or 'the prompt list'}")

    @classmethod
    def from_text(cls, text: str, source: str = "") -> "PromptCatalog":
        triples, bad = [], []
        for number, line in enumerate(text.splitlines(), start=1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            parts = [p.strip() for p in (line.split("|") if "|" in line else line.split("_"))]
            if len(parts) == 3 and all(parts):
                triples.append(tuple(parts))
            else:
                bad.append(number)
        if bad:
            raise PromptCatalogError(f"{source or 'prompt list'}: line(s) {', '.join(map(str, bad[:5]))} are not "
                                     f"period_composer_instrumentation")
        return cls(triples, source)

    @classmethod
    def from_file(cls, path: str | Path) -> "PromptCatalog":
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise PromptCatalogError(f"prompt list not found: {path}") from None
        except UnicodeDecodeError as error:
            raise PromptCatalogError(f"prompt list {path} is not UTF-8 text: {error}") from None
        return cls.from_text(text, str(path))

    def __len__(self) -> int:
        return len(self.triples)

    def __contains__(self, triple) -> bool:
        return tuple(triple) in set(self.triples)

    def periods(self) -> list[str]:
        return _unique(t[0] for t in self.triples)

    def composers(self, period: str) -> list[str]:
        return _unique(t[1] for t in self.triples if t[0] == period)

    def instrumentations(self, period: str, composer: str) -> list[str]:
        return _unique(t[2] for t in self.triples if t[:2] == (period, composer))

    def check(self, period: str, composer: str, instrumentation: str) -> Triple:
        """The triple if the catalog holds it, else an error that says what is known instead."""
        triple = (str(period or "").strip(), str(composer or "").strip(), str(instrumentation or "").strip())
        if triple in self:
            return triple
        if triple[0] not in self.periods():
            known = f"known periods: {', '.join(self.periods())}"
        elif triple[1] not in self.composers(triple[0]):
            known = f"composers of the {triple[0]} period: {', '.join(self.composers(triple[0]))}"
        else:
            known = f"instrumentations for {triple[1]}: {', '.join(self.instrumentations(*triple[:2]))}"
        raise PromptCatalogError(f"{'|'.join(triple)!r} is not a combination this model knows ({known})")

    def random(self, rng: random.Random | None = None) -> Triple:
        return (rng or random).choice(self.triples)
