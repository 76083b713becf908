"""Generation engine: batched, streaming, key/value-cached sampling of NotaGen pieces.

- `Engine.stream` yields GenerationEvent(piece, text, result): the prompt text, then one event per
  generated patch (text may be ""), then one with the PieceResult. What a piece is and how its
  text and context grow: `piece.py`; the cache: `cache.py`.
- The patch-level decoder keeps one cache row per piece in the batch (capacity patch_length); the
  char-level decoder one row per piece (capacity patch_size + 1), reset for every patch. On CPU,
  batches run the char-level decoder on oneDNN-packed weight copies (`Engine(pack="none")` turns it
  off, "all" packs the patch level too).
- Bar-checked generation (`bar_retries`): a rejected bar line is forgotten by cutting the piece's
  cache row back (`KVCache.rewind`) and re-running the last kept patch for its feature.
- Guidance (`settings.guidance` != 1): each piece has a twin cache row whose context lacks the
  prompt's style lines (`Piece.free_context`); the twins go through every step with their pieces
  and the char logits are mixed, free + g * (prompted - free). Which cache rows belong to which
  piece, and continuous batching (a finished piece's row given to the next waiting piece, or
  dropped when none is left): `rows.py` (`Rows`), shared with the baselines' engine.
- `stream` reads as: allocate (caches, features), then per patch: fill free rows, compact, prefill
  the stale rows, the char round, and each piece's patch (rewind a rejected line, advance the rest).
- `engine_for(model)` picks the engine by `model.config.model_type` from `ENGINES`, where an engine
  registers its model types (`notagen.baselines` registers `FlatEngine` for the flat baselines:
  the module that defines a model's class registers its engine, so this module imports neither).
- Sampling (top-k -> top-p -> temperature, `notagen.sampling`) runs on the device in float64; each
  piece draws from its own random stream (seeded from `seed` and its index), so a piece's music with
  a given seed does not depend on batch size or on the other pieces.
- `reference_generate` is the published loop's structure (no caches: the whole context through the
  patch-level decoder for every patch, the patch so far through the char-level decoder for every
  char; one piece): the uncached reference for tests and the benchmark baseline.
"""
from __future__ import annotations

from typing import Callable, Iterable, Iterator

import torch

from ..patchilizer import Patchilizer
from ..sampling import fresh_seed, piece_seed, restrict_rows, sample_rows
from .cache import KVCache, _Block, stack_blocks
from .piece import REBUILT, REWOUND, GenerationEvent, GenerationSettings, Piece, PieceResult
from .prompt import Prompt
from .rows import Rows, results_in_order, stream_setup

# ---------------------------------------------------------------------------------------------
# The engine
# ---------------------------------------------------------------------------------------------
class Engine:
    """Generates pieces from a NotaGenLMHeadModel: `stream(...)` yields text as it is written."""

    def __init__(self, model, patchilizer: Patchilizer | None = None, pack: str = "auto"):
        """pack: oneDNN-packed weight copies for batches on CPU ("auto": the char-level decoder,
        "all": both decoders, "none"); see `_Linear`."""
        self.pack = pack
        self._blocks: dict = {}
        self.model = model.eval()
        self.config = model.config
        self.patchilizer = patchilizer or Patchilizer(self.config.patch_size)
        self.patch_embedding = model.patch_level_decoder.patch_embedding
        self.patch_stack = model.patch_level_decoder.base  # GPT2Model
        self.char_stack = model.char_level_decoder.base.transformer  # GPT2Model
        self.lm_head = model.char_level_decoder.base.lm_head
        self.device = self.patch_embedding.weight.device

    # -- helpers ---------------------------------------------------------------------------------
    def _stack_blocks(self, stack, rows: int) -> list[_Block]:
        # bf16 on CPU: packed products always pay (unpacked ones are slower than float32)
        bf16 = self.patch_embedding.weight.dtype == torch.bfloat16
        wanted = {"auto": (self.char_stack,) if not bf16 else (self.char_stack, self.patch_stack),
                  "all": (self.char_stack, self.patch_stack)}.get(self.pack, ())
        packed = (rows > 1 or bf16) and self.device.type == "cpu" and any(stack is s for s in wanted)
        key = (id(stack), packed)
        if key not in self._blocks:
            self._blocks[key] = stack_blocks(stack, packed)
        return self._blocks[key]

    def _embed_patches(self, patches: list[list[int]]) -> torch.Tensor:
        ids = torch.tensor(patches, dtype=torch.long, device=self.device)  # [N, P]
        return self.patch_embedding(ids[None])[0]  # [N, hidden]

    def _prefill_patches(self, cache: KVCache, rows: list[int], contexts: list[list[list[int]]]) -> torch.Tensor:
        """Patch-level prefill of whole contexts -> last feature per row [R, hidden]."""
        lengths = [len(c) for c in contexts]
        T = max(lengths)
        padded = [c + [c[-1]] * (T - len(c)) for c in contexts]
        ids = torch.tensor(padded, dtype=torch.long, device=self.device)  # [R, T, P]
        return cache.prefill(rows, self.patch_embedding(ids), lengths)

    def _char_round(self, cache: KVCache, features: torch.Tensor, rows: Rows,
                    settings: GenerationSettings) -> list[list[int]]:
        """Every piece writes its next patch: features [rows.cache_rows, hidden] -> new char ids per
        piece. With guidance both cache rows of a piece (`rows.of`) read the same chars and their
        logits are mixed."""
        wte = self.char_stack.wte.weight
        pieces, twins = rows.pieces, rows.twins
        def guide(logits: torch.Tensor) -> torch.Tensor:  # [twins * A, 128] (pieces, then twins) -> [A, 128]
            if twins == 1:
                return logits
            prompted, free = logits.chunk(2)
            return free + settings.guidance * (prompted - free)

        prefixes = [p.prefix() for p in pieces] * twins
        lengths = [1 + len(prefix) for prefix in prefixes]
        x = features.new_zeros(len(prefixes), max(lengths), features.shape[-1])  # [twins * B, T, hidden]
        x[:, 0] = features
        for b, prefix in enumerate(prefixes):
            if prefix:
                x[b, 1:1 + len(prefix)] = wte[torch.tensor(prefix, device=self.device)]
        cache.reset()
        logits = guide(self.lm_head(cache.prefill(list(range(len(prefixes))), x, lengths)))  # [B, 128]
        new: list[list[int]] = [[] for _ in pieces]
        active = list(range(len(pieces)))
        while True:
            logits = restrict_rows(logits, [pieces[b].allowed(new[b]) for b in active])
            ids = sample_rows(logits, [rows.generators[b] for b in active], settings.top_k, settings.top_p,
                              settings.temperature, settings.greedy)
            still = []
            for b, char in zip(active, ids):
                forced = pieces[b].forced(new[b])
                new[b].append(char if forced is None else forced)
                if not pieces[b].patch_done(new[b]):
                    still.append(b)
            if not still:
                return new
            chars = torch.tensor([new[b][-1] for b in still] * twins, device=self.device)
            active, cache_rows = still, rows.of(still)
            logits = guide(self.lm_head(cache.advance(wte[chars], rows=cache_rows if len(cache_rows) < cache.rows else None)))

    def _char_cache(self, rows: int, slots: int) -> KVCache:
        """The char-level cache of `rows` cache rows (packed or not as for `slots`, the stream's first size)."""
        return KVCache(self.char_stack, rows, self.config.patch_size + 1, self._stack_blocks(self.char_stack, slots))

    # -- the generator ---------------------------------------------------------------------------
    @torch.inference_mode()
    def stream(self, prompts: Iterable[Prompt], settings: GenerationSettings | None = None,
               indices: Iterable[int] | None = None, watch: Callable[[Piece], None] | None = None
               ) -> Iterator[GenerationEvent]:
        """Generate one piece per prompt; yields GenerationEvent(piece, text, result) as text appears.

        The first event of a piece carries its prompt text; the last one its PieceResult. `watch`
        is called with each piece after each of its patches, before its event (the demo reads the
        draft line and its retries there). `indices`
        numbers the pieces (default 0, 1, ...): a piece's random stream follows its number, so a
        process given every other number writes those pieces of a one-process run (on CPU up to the
        rounding of packed against unpacked float32 products, which depend on the live rows)."""
        settings, seed, queue = stream_setup(prompts, settings, indices)
        slots = min(settings.batch_size, len(queue))
        if not slots:
            return
        rows = Rows(slots, twins=1 if settings.guidance == 1 else 2)  # with guidance: a twin row per piece
        patch_cache = KVCache(self.patch_stack, rows.cache_rows, self.config.patch_length,
                              self._stack_blocks(self.patch_stack, rows.cache_rows))
        char_cache = self._char_cache(rows.cache_rows, rows.cache_rows)
        features = torch.zeros(rows.cache_rows, self.config.hidden_size, dtype=self.patch_embedding.weight.dtype,
                               device=self.device)  # [cache rows, hidden]: each row's last feature
        new_piece = lambda index, prompt: Piece(index, prompt, self.patchilizer, self.config.patch_length, settings)  # noqa: E731
        while True:
            yield from rows.fill(queue, seed, new_piece)
            live = rows.live()
            if not live:
                return
            if len(live) < len(rows):  # no one waits for the free rows: drop them
                kept = rows.keep(live)
                patch_cache.keep(kept)
                features = features[kept]
                char_cache = self._char_cache(rows.cache_rows, rows.twins * slots)
            if stale := rows.take_stale():
                cache_rows = rows.of(stale)
                features[cache_rows] = self._prefill_patches(patch_cache, cache_rows, rows.contexts(stale))

            new = self._char_round(char_cache, features, rows, settings)

            advance = []
            for row, piece in enumerate(rows.pieces):
                text, outcome = piece.add_patch(new[row])
                if watch is not None:
                    watch(piece)
                yield GenerationEvent(piece.index, text)
                if piece.done:
                    yield GenerationEvent(piece.index, "", piece.result())
                    rows.pieces[row] = None
                elif outcome == REBUILT:
                    rows.stale.append(row)
                else:
                    if outcome == REWOUND:  # the line was rejected: forget its patches, re-run the last kept one
                        rows.rewind(patch_cache, row)
                    advance.append(row)
            if advance:
                cache_rows = rows.of(advance)
                hidden = patch_cache.advance(self._embed_patches(rows.last_patches(advance)),
                                             rows=None if len(cache_rows) == patch_cache.rows else cache_rows)
                features[cache_rows] = hidden

    def generate(self, prompts: Iterable[Prompt], settings: GenerationSettings | None = None
                 ) -> list[PieceResult]:
        """All pieces, in prompt order."""
        return results_in_order(self.stream(prompts, settings))


ENGINES: dict[str, Callable] = {"notagen": Engine}  # model_type -> the engine class that generates with it


def engine_for(model):
    """The engine that generates with `model`: `Engine` for NotaGen, `FlatEngine` for the baselines
    (`notagen.baselines` registers it in `ENGINES`; a baseline model's class comes from there)."""
    model_type = getattr(model.config, "model_type", "notagen")
    if model_type not in ENGINES:
        raise ValueError(f"no generation engine for model type {model_type!r} (known: {', '.join(ENGINES)})")
    return ENGINES[model_type](model)


# ---------------------------------------------------------------------------------------------
# The published loop's structure: no caches, one piece (reference and benchmark baseline)
# ---------------------------------------------------------------------------------------------
@torch.inference_mode()
def reference_generate(model, prompt: Prompt, settings: GenerationSettings | None = None
                       ) -> Iterator[GenerationEvent]:
    """Every patch re-runs the whole context through the patch-level decoder, every char re-runs
    the patch so far through the char-level decoder, as the published loop does."""
    settings = settings or GenerationSettings()
    model.eval()
    config = model.config
    patchilizer = Patchilizer(config.patch_size)
    device = model.patch_level_decoder.patch_embedding.weight.device
    seed = settings.seed if settings.seed is not None else fresh_seed()
    generator = torch.Generator().manual_seed(piece_seed(seed, 0))
    piece = Piece(0, prompt, patchilizer, config.patch_length, settings)
    yield GenerationEvent(0, piece.text)
    char_model = model.char_level_decoder.base
    while not piece.done:
        context = torch.tensor([piece.context], dtype=torch.long, device=device)  # [1, N, P]
        feature = model.patch_level_decoder(context).last_hidden_state[:, -1:]  # [1, 1, hidden]
        new: list[int] = []
        while True:
            chars = torch.tensor([piece.prefix() + new], dtype=torch.long, device=device)
            inputs = torch.cat([feature, char_model.transformer.wte(chars)], dim=1)
            logits = char_model(inputs_embeds=inputs).logits[:, -1]  # [1, 128]
            logits = restrict_rows(logits, [piece.allowed(new)])
            char = sample_rows(logits, [generator], settings.top_k, settings.top_p, settings.temperature,
                               settings.greedy)[0]
            forced = piece.forced(new)
            new.append(char if forced is None else forced)
            if piece.patch_done(new):
                break
        text, _ = piece.add_patch(new)
        yield GenerationEvent(0, text)
    yield GenerationEvent(0, "", piece.result())
