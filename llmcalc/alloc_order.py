"""The order in which the reference stack allocates and frees its tensors, generated from the
workload and fed to the caching-allocator model (llmcalc.allocator) to predict its reserve.

Transcribed from PyTorch memory traces of transformers 5.17 on torch 2.11 (benchmarks/
allocator_trace.py; the stored traces are the reference to diff against). Covered so far:
- inference (prefill, then greedy decode on a DynamicCache) with SDPA attention of the Llama,
  Qwen2, Mistral and Gemma 2 families in 16 bits, of Llama and Qwen2 in fp32 with grouped-query
  heads (SDPA's math path), and of GPT-2 in 16 or 32 bits;
- (both selected by the layers' structure, _transcribed_layers: Qwen3, SmolLM3, Granite, OLMo 2/3 and Gemma 3 too)
- training of the same Llama, Qwen2, Mistral and Gemma 2 layers in 16 bits with fused AdamW,
  with or without gradient checkpointing: three steps of forward, loss, backward (the recompute,
  autograd's frees, the weight gradients and the kernels' own buffers), AdamW's states and
  zero_grad;
in both while a sliding window binds nothing (fewer tokens than the window).
Everything of more than 1 MiB is emitted; smaller tensors live in the allocator's small pool and
barely move the reserve (docs/allocator.md). On the H100 every stored 16-bit Llama/Qwen2/Gemma 2
inference trace and all ten training traces match the generated order event for event; the
covered traces' reserves (up to 24% of peak allocated) come out within 0.2 points of it but for
three small runs (up to 2.3 points), and the 16 rows measured after the orders were written (held
out) have device totals within 0.8%.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from llmcalc.cards import ModelCard
from llmcalc.diskcache import cached_peaks
from llmcalc.precision import PRECISIONS
from llmcalc.workload import Workload, math_sdpa

if TYPE_CHECKING:
    from llmcalc.allocator import CachingAllocator

# llmcalc.allocator.SMALL_SIZE (tests/test_allocator.py keeps them equal): the allocator module
# itself loads only when an order is replayed, which a cached replay (replayed_peaks) never does.
SMALL_SIZE = 1 << 20

CUBLAS_WORKSPACE = 32 << 20  # allocated by a thread's first matmul (Hopper): before the model, and in
#                              the first backward by autograd's thread
TRAIN_STEPS = 3  # the profiler's steps: AdamW's states appear in the first, the reserve settles by the third
H100_REDUCE_BLOCKS = 132 * 4  # 132 SMs x 4 resident 512-thread blocks: the split reduction's target grid


def covers(card: ModelCard, w: Workload) -> bool:
    """Whether an allocation order is transcribed for this workload."""
    return covers_training(card, w) if w.mode == "train" else _covers_inference(card, w)


def simulate(card: ModelCard, w: Workload) -> CachingAllocator:
    """The allocator model after replaying the workload's allocation order (covers() must hold)."""
    return simulate_training(card, w) if w.mode == "train" else simulate_inference(card, w)


def replayed_peaks(card: ModelCard, w: Workload) -> tuple[int, int]:
    """(peak allocated, peak reserved) of simulate(card, w), cached (diskcache.cached_peaks) under
    the card, the workload and the two modules that define the replay."""
    here = Path(__file__).resolve()

    def replay() -> tuple[int, int]:
        sim = simulate(card, w)
        return sim.peak_allocated, sim.peak_reserved

    allocated, reserved = cached_peaks((card, w), (here, here.with_name("allocator.py")), replay)
    return allocated, reserved


def _covers_inference(card: ModelCard, w: Workload) -> bool:
    if not (w.mode == "infer" and w.attention == "sdpa" and not w.autocast and w.kv_dtype in (None, w.dtype)
            and w.allocator == "default" and w.dtype in ("bf16", "fp16", "fp32")):
        return False
    if card.family == "gpt2":
        return True
    return (_transcribed_layers(card) and _window_binds_nothing(card, w.seq + w.gen)
            and (w.dtype != "fp32" or (math_sdpa(card, w)  # fp32: grouped-query heads, SDPA's math path
                                       and card.norm == "rmsnorm")))


def _transcribed_layers(card: ModelCard) -> bool:
    """Decoder layers both orders know, by their structure, whatever the family is called: Llama's
    (two RMSNorms; Llama, Qwen2, Mistral and the families built the same way) or Gemma 2's (four
    fp32 norms), with separate q/k/v, a gated MLP with a one-kernel activation, no experts, no
    convolution, RoPE in the compute dtype. Per-head or full q/k norms (Qwen3, OLMo 2), post-norms
    with fp32 weights (OLMo 2/3), layers without RoPE (SmolLM3) and Granite's scalar multipliers
    keep that structure and are replayed as the Llama layer, without their own elementwise tensors:
    with Gemma 3's training rows (covers_training) the 14 H200 rows it newly covers went from a
    device total median |error| of 6.0%, max 16.5% (the measured reserve fraction) to 1.6%, max
    3.7% (docs/validation-corrections.md, 26).
    ERNIE's fp32 RoPE keeps fp32 copies of q and k the order does not hold (its inference rows,
    replayed: +1.4% -> +10.2%): not covered."""
    return (card.norm in ("rmsnorm", "rmsnorm_fp32") and card.norms_per_layer in (2, 4)
            and not card.fused_qkv and card.mlp == "gated" and not card.is_moe and not card.rope_fp32
            and not card.is_mla and not card.attention_sinks
            and not any(spec.mixer in ("conv", "linear") for spec in card.layer_specs)
            and card.activation in ("silu", "gelu", "gelu_pytorch_tanh"))


def _window_binds_nothing(card: ModelCard, tokens: int) -> bool:
    """Fewer tokens than a sliding window: transformers builds no mask (from `window` tokens on it
    does, and SDPA leaves the flash kernel) and the caches stay whole."""
    return not card.sliding_window or tokens < card.sliding_window


# Replaying runs at roughly 3 us per event; beyond this many (as events() counts them) the
# estimate keeps the median reserve fraction rather than take seconds: a 70B at batch 64 x 512
# new tokens counts 1.6 million and took 1.7 s.
MAX_EVENTS = 400_000


def _small_steps(card: ModelCard, w: Workload) -> bool:
    """Whether a decode step's tensors other than the cache (one row per sequence) all stay in the
    small pool, even the widest (MLP, fused qkv or fp32 norm rows): then a step is only its cache
    updates (and the math path's repeated keys and values) and its logits."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h = card.hidden_size
    return w.batch * w.beams * max(card.intermediate_size * a, 3 * h * a, h * 4, card.q_dim * a) <= SMALL_SIZE


def events(card: ModelCard, w: Workload) -> int:
    """About how many allocator events simulate() would replay. Inference: ~40 per layer per
    forward that carries row-sized tensors of 1 MiB or more, else the cache's (and the math
    path's) few. Training: ~250 per layer per step (forward, recompute, backward), and the
    optimizer's states and zero_grad."""
    if w.mode == "train":
        return TRAIN_STEPS * (card.num_layers * 250 + 2 * len(card.parameters()))
    per_step = 40 if not _small_steps(card, w) else (10 if math_sdpa(card, w) else 4)
    return card.num_layers * (40 + max(w.gen - 1, 0) * per_step)


class _Run:
    """Allocation handles by name, over one CachingAllocator. With `log` a list, every emitted
    event is appended to it as ("A" or "F", bytes, name): the sequence to diff against a trace."""

    def __init__(self, alloc: CachingAllocator, log: list[tuple[str, int, str]] | None = None) -> None:
        self.alloc = alloc
        self.live: dict[str, int | None] = {}
        self.sizes: dict[str, int] = {}
        self.log = log

    def a(self, name: str, nbytes: int) -> None:
        # the small pool's 2 MiB segments hold what is not emitted
        if name in self.live:
            raise AssertionError(f"{name} allocated twice")
        self.live[name] = self.alloc.malloc(int(nbytes)) if nbytes > SMALL_SIZE else None
        if self.log is not None and nbytes > SMALL_SIZE:
            self.sizes[name] = int(nbytes)
            self.log.append(("A", int(nbytes), name))

    def f(self, *names: str) -> None:
        for name in names:
            handle = self.live.pop(name)
            if handle is not None:
                self.alloc.free(handle)
                if self.log is not None:
                    self.log.append(("F", self.sizes.pop(name), name))

    def rename(self, old: str, new: str) -> None:
        self.live[new] = self.live.pop(old)
        if old in self.sizes:
            self.sizes[new] = self.sizes.pop(old)


def _load(run: _Run, card: ModelCard, a: int) -> None:
    """cuBLAS's workspace (the context probe's matmul), then every parameter tensor in module
    order; a tied lm_head is built, then replaced by the embedding."""
    run.a("workspace", CUBLAS_WORKSPACE)
    for param in card.parameters():
        run.a(param.name, param.numel * a)
    if card.tie_word_embeddings:
        run.a("lm_head (tied)", card.vocab_size * card.hidden_size * a)
        run.f("lm_head (tied)")


def _rope(run: _Run, name: str, n: int, a: int) -> None:
    """apply_rotary_pos_emb for one tensor of n elements: t*cos, -x2, cat (rotate_half), *sin, sum."""
    run.a(name + ".cos", n * a)
    run.a(name + ".neg", n // 2 * a)
    run.a(name + ".rot", n * a)
    run.f(name + ".neg")
    run.a(name + ".sin", n * a)
    run.f(name + ".rot")
    run.a(name + ".emb", n * a)
    run.f(name + ".cos", name + ".sin")


def _rmsnorm(run: _Run, out: str, n: int, a: int, saved: bool = False) -> None:
    """transformers' LlamaRMSNorm over n elements: x.to(fp32), pow, (mean), x32 * rsqrt, .to(dtype),
    weight * (in fp32 both casts are the tensor itself). With autograd recording (`saved`), x32 and
    y stay for the backward as `out`.x32 and `out`.y."""
    if a == 4 and not saved:
        run.a("pow", n * 4)
        run.f("pow")
        run.a("y32", n * 4)
        run.a(out, n * 4)
        run.f("y32")
        return
    run.a(out + ".x32", n * 4)
    run.a("pow", n * 4)
    run.f("pow")
    run.a("y32", n * 4)
    if not saved:
        run.f(out + ".x32")
    run.a(out + ".y", n * a)
    run.a(out, n * a)
    if saved:
        run.f("y32")
    else:
        run.f(out + ".y", "y32")


def _gemma_norm(run: _Run, out: str, n: int, a: int, saved: bool = False) -> None:
    """Gemma2RMSNorm over n elements in 16 bits: x.float(), pow, (mean), x32 * rsqrt (`out`.normed),
    * (1 + weight.float()), .type_as(x). With autograd recording (`saved`), x32 and the normalised
    tensor stay for the backward."""
    run.a(out + ".x32", n * 4)
    run.a("pow", n * 4)
    run.f("pow")
    run.a(out + ".normed", n * 4)
    if not saved:
        run.f(out + ".x32")
    run.a("scaled", n * 4)
    if not saved:
        run.f(out + ".normed")
    run.a(out, n * a)
    run.f("scaled")


def _rotary_tables(run: _Run, card: ModelCard, seq: int, a: int) -> None:
    """The rotary embedding's cos and sin for one forward (position_ids has one row): the fp32
    angles cat((freqs, freqs)), cos() * scaling and sin() * scaling, then both cast to the dtype
    (`cos`, `sin`, kept by the caller)."""
    n = seq * card.dim_head
    run.a("rot.emb", n * 4)
    for t in ("cos", "sin"):
        run.a("rot." + t, n * 4)
        run.a("rot.scaled." + t, n * 4)
        run.f("rot." + t)
    for t in ("cos", "sin"):
        if a == 4:  # .to(fp32) of an fp32 tensor is the tensor itself
            run.rename("rot.scaled." + t, t)
        else:
            run.a(t, n * a)
    run.f("rot.emb")
    if a != 4:
        run.f("rot.scaled.cos", "rot.scaled.sin")


def _gated_mlp(run: _Run, p: int, h: int, i: int, a: int) -> None:
    """down(silu(gate(n2)) * up(n2)) over p positions: leaves "down", frees n2."""
    run.a("gate", p * i * a)
    run.a("act", p * i * a)
    run.f("gate")
    run.a("up", p * i * a)
    run.a("prod", p * i * a)
    run.f("act", "up")
    run.a("down", p * h * a)
    run.f("prod", "n2")


def simulate_inference(card: ModelCard, w: Workload, log: list[tuple[str, int, str]] | None = None
                       ) -> CachingAllocator:
    """Replay the load, the prefill and every decode step of `w` through the allocator model."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h, i, q, kv = card.hidden_size, card.intermediate_size, card.q_dim, card.kv_dim
    seqs = w.batch * w.beams
    from llmcalc.allocator import CachingAllocator

    run = _Run(CachingAllocator(), log)
    _load(run, card, a)
    run.a("ids", seqs * w.seq * 8)
    gemma = card.norm == "rmsnorm_fp32" and card.norms_per_layer == 4

    def norm(x: str, out: str, p: int) -> None:
        (_gemma_norm if gemma else _rmsnorm)(run, out, p * h, a)

    def cache_cat(layer: int, context: int, width: int) -> None:
        """keys = torch.cat(keys, new): the grown cache, then the old one goes; then values. A
        sliding-window layer's cache (while shorter than the window) concatenates both first."""
        caches = (f"K{layer}", f"V{layer}")
        sliding = card.sliding_window and (not card.sliding_window_pattern
                                           or (layer + 1) % card.sliding_window_pattern)
        for c in caches:
            run.a(c + "'", seqs * context * width * a)
            if not sliding:
                run.f(c)
        if sliding:
            run.f(*caches)
        for c in caches:
            run.rename(c + "'", c)

    math = math_sdpa(card, w)
    heads = card.num_heads

    def math_attention(p: int, prefill: bool, context: int) -> None:
        """SDPA's math path with enable_gqa (fp32): q scaled, the causal mask built ([S, S] bools,
        then fp32), k and v repeated to every head and k scaled (q-sized in a prefill, cache-sized
        in a decode step), the scores, the probabilities and their isneginf mask, P V, and the
        output made contiguous for o_proj."""
        if prefill:
            n = w.seq
            scores = seqs * heads * n * n
            run.a("qs", p * q * 4)
            run.a("m1", n * n)
            run.a("m2", n * n)
            run.f("m1")
            run.a("mask", n * n * 4)
            run.f("m2")
            for e in ("e1", "e2", "e3", "e4"):
                run.a(e, p * q * 4)
            run.a("scores", scores * 4)
            run.f("e4", "e3")
            run.a("probs", scores * 4)
            run.a("isneginf", scores)
            run.f("isneginf", "scores")
            run.a("pv", p * q * 4)
            run.f("e1", "e2", "qs", "mask", "probs")
        else:
            repeated_kv(context)
            run.a("pv", p * q * 4)
        run.a("attn", p * q * 4)
        run.f("pv")

    def repeated_kv(context: int) -> None:
        """A decode step's repeated (and scaled) keys and values: one copy of the cache per head."""
        r = seqs * context * q * 4
        run.a("e1", r)
        run.a("e2", r)
        run.a("e3", r)
        run.f("e3", "e1", "e2")

    def logits(final: str | None = None) -> None:
        """lm_head on the last position only (logits_to_keep=1), soft-capped where the card does
        (/ cap, tanh, * cap), and the caller's .float(); the final hidden states (`final`) go
        before that, with the model's output."""
        n = seqs * card.vocab_size
        if card.final_logit_softcapping:
            run.a("raw", n * a)
            run.a("div", n * a)
            run.f("raw")
            run.a("tanh", n * a)
            run.f("div")
            run.a("logits", n * a)
            run.f("tanh")
        else:
            run.a("logits", n * a)
        if final:
            run.f(final)
        run.a("logits32", n * 4)
        run.f("logits32", "logits")

    def small_step(context: int) -> None:
        for layer in range(card.num_layers):
            cache_cat(layer, context, kv)
            if math:
                repeated_kv(context)
        logits()

    def layer_forward(layer: int, p: int, x: str, prefill: bool, context: int) -> str:
        norm(x, "n1", p)
        run.a("q", p * q * a)
        run.a("k", p * kv * a)
        run.a("v", p * kv * a)
        _rope(run, "q", p * q, a)
        _rope(run, "k", p * kv, a)
        run.f("q", "k")
        cache_k, cache_v = f"K{layer}", f"V{layer}"
        if prefill:  # DynamicCache stores copies of the first keys and values
            run.a(cache_k, p * kv * a)
            run.a(cache_v, p * kv * a)
        else:
            cache_cat(layer, context, kv)
        run.f("k.emb", "v")
        if math:
            math_attention(p, prefill, context)
        else:
            run.a("attn", p * q * a)
        run.a("o", p * h * a)
        run.f("attn", "q.emb", "n1")
        if gemma:  # norms after attention and after the MLP, each before its residual sum
            norm("o", "pn1", p)
            run.f("o")
            run.a("r1", p * h * a)
            run.f("pn1")
        else:
            run.a("r1", p * h * a)
            run.f("o")
        norm("r1", "n2", p)
        _gated_mlp(run, p, h, i, a)
        if gemma:
            norm("down", "pn2", p)
            run.f("down")
        out = f"h{layer}"
        run.a(out, p * h * a)
        run.f("pn2" if gemma else "down", "r1")
        if x != "embeds":
            run.f(x)
        return out

    def forward(p: int, prefill: bool, context: int) -> None:
        run.a("embeds", p * h * a)
        if gemma:  # embeddings * sqrt(hidden): a new tensor, the lookup's goes
            run.rename("embeds", "lookup")
            run.a("embeds", p * h * a)
            run.f("lookup")
        _rotary_tables(run, card, w.seq if prefill else 1, a)
        x = "embeds"
        for layer in range(card.num_layers):
            x = layer_forward(layer, p, x, prefill, context)
        norm(x, "final", p)
        run.f(x, "embeds", "cos", "sin")  # the model returns: only the final hidden states stay
        logits(final="final")

    def gpt2_forward(p: int, prefill: bool, context: int) -> None:
        """GPT2LMHeadModel: token + position embeddings, then per block ln_1, c_attn (fused qkv),
        the cache, SDPA, c_proj, residual, ln_2, c_fc, gelu_new's chain, c_proj, residual (multi-head:
        kv = h)."""
        run.a("embeds", p * h * a)
        run.a("x0", p * h * a)  # inputs_embeds + position_embeds: the first block's input
        x = "x0"
        for layer in range(card.num_layers):
            run.a("n1", p * h * a)
            run.a("qkv", p * 3 * h * a)
            if prefill:
                run.a(f"K{layer}", p * kv * a)
                run.a(f"V{layer}", p * kv * a)
            else:
                cache_cat(layer, context, kv)
            run.a("attn", p * h * a)
            run.a("o", p * h * a)
            run.f("attn", "qkv")
            run.a("r1", p * h * a)
            run.f("n1")
            run.a("n2", p * h * a)
            run.a("fc", p * i * a)
            # gelu_new: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), one tensor per op
            run.a("g0", p * i * a)
            run.a("g1", p * i * a)
            for k in range(2, 7):
                run.a(f"g{k}", p * i * a)
                run.f(f"g{k - 1}")
            run.a("g7", p * i * a)
            run.f("g0", "g6", "fc")
            run.a("down", p * h * a)
            run.f("g7")
            out = f"h{layer}"
            run.a(out, p * h * a)
            run.f("n2", "r1", "o", "down", x)  # the block's attention output is held to its end
            x = out
        run.a("final", p * h * a)
        logits()
        run.f("final", x, "embeds")

    step_forward = gpt2_forward if card.family == "gpt2" else forward
    small_steps = _small_steps(card, w)
    step_forward(seqs * w.seq, True, w.seq)
    for step in range(max(w.gen - 1, 0)):
        if small_steps:
            small_step(w.seq + step + 1)
        else:
            step_forward(seqs, False, w.seq + step + 1)
    return run.alloc


# --- training --------------------------------------------------------------------------------

def _reduce_buffer(outputs: int, rows: int) -> int:
    """The fp32 staging buffer of PyTorch's split reduction (ATen Reduce.cuh) when a weight's or a
    bias's gradient sums a [rows, outputs] tensor over its rows: 4 B x outputs x 512 threads per
    block-row, times the blocks each output is split over, enough to fill the GPU (132 SMs x 4
    blocks over outputs/128 block columns) but no more than one per 256 rows. Matches the traces'
    buffers exactly at widths 2,048, 3,072 and 4,096 over 2,048 to 16,384 rows; 0.7% large at 896
    wide over 32,768 rows."""
    ctas = min(-(-H100_REDUCE_BLOCKS // -(-outputs // 128)), -(-rows // 256))
    return 4 * outputs * 512 * ctas if ctas > 1 else 0


def _flash_backward_buffer(card: ModelCard, tokens: int) -> int:
    """SDPA's flash-attention backward workspace: dQ accumulated in fp32 (T x q_dim x 4 B), keys'
    and values' gradients at every query head when heads are grouped (T x q_dim x 2 x 2 B), the
    softmax row sums (T x heads x 4 B), and 256 B."""
    grouped = card.kv_dim < card.q_dim
    return tokens * card.q_dim * 4 * (2 if grouped else 1) + tokens * card.num_heads * 4 + 256


def covers_training(card: ModelCard, w: Workload) -> bool:
    """Whether the training allocation order is transcribed for this workload: full fine-tuning
    in 16 bits (no autocast) with fused or foreach AdamW, with or without gradient checkpointing, SDPA, the
    default allocator, and the layers the inference order knows. A sliding window that binds
    (Gemma 3's 512 tokens) adds its masks and another attention kernel, which the order does not
    hold, so the replayed allocated peak falls short (gemma-3-1b at 2 x 4096: 49.9 GiB against 53.4
    measured); the estimate takes only the replay's reserve, which came out as measured on both
    gemma-3-1b training rows (0.51 against 0.51 GiB; with checkpointing 8.74 against 8.78, where
    the measured fraction gave a device total -16.5% off): covered."""
    return (w.mode == "train" and w.dtype in ("bf16", "fp16") and not w.autocast
            and w.optimizer in ("adamw", "adamw-foreach")
            and w.attention == "sdpa" and w.allocator == "default" and _transcribed_layers(card))


def simulate_training(card: ModelCard, w: Workload, log: list[tuple[str, int, str]] | None = None
                      ) -> CachingAllocator:
    """Replay the load and TRAIN_STEPS steps (forward with the loss, backward, AdamW's step and
    zero_grad(set_to_none=True)) of `w` through the allocator model."""
    a = int(PRECISIONS[w.compute_dtype].bytes_per_element)
    h, i, q, kv, vocab = card.hidden_size, card.intermediate_size, card.q_dim, card.kv_dim, card.vocab_size
    t = w.batch * w.seq
    from llmcalc.allocator import CachingAllocator

    run = _Run(CachingAllocator(), log)
    _load(run, card, a)
    run.a("ids", t * 8)  # input_ids, also the labels
    layer_params = {(p.layer, p.name.split(".", 2)[2]): p for p in card.parameters() if p.layer is not None}

    def grad(layer: int, proj: str) -> None:
        """A weight's gradient, kept until zero_grad."""
        p = layer_params[(layer, proj)]
        run.a("g." + p.name, p.numel * a)

    gemma = card.norm == "rmsnorm_fp32" and card.norms_per_layer == 4  # Gemma 2: four fp32 norms a layer, scaled embeddings

    def norm(x: str, out: str, saved: bool) -> None:
        (_gemma_norm if gemma else _rmsnorm)(run, out, t * h, a, saved)

    def rsqrt_backward(name: str, g: str, out: str, final: bool, layer_input: str | None) -> None:
        """y = x32 * rsqrt(mean(x32^2) + eps), backward from y's fp32 gradient `g`: both factors'
        gradients, rsqrt(mean(x32^2))'s four fp32 tensors (x32 goes with them, and a checkpointed
        layer's input with its first norm), and x's gradient back in the dtype as `out`."""
        run.a("t1", t * h * 4)
        run.a("gx", t * h * 4)
        run.f("t1", g)
        for p in ("p1", "p2", "p3", "p4"):
            run.a(p, t * h * 4)
        if final:
            run.f("p3", "p2", "p1", name + ".x32", "p4")
        else:
            run.f("p3", "p2", name + ".x32", "p1", *([layer_input] if layer_input else []), "p4")
        run.a(out, t * h * a)
        run.f("gx")

    def norm_backward(name: str, g: str, final: bool = False, layer_input: str | None = None) -> None:
        """Llama's RMSNorm backward: weight * y: y's gradient, the weight's (g * y summed over
        tokens); .to(dtype): to fp32; then rsqrt_backward. x's gradient is summed into the
        residual stream's (in place) or, for the final norm, becomes it ("G")."""
        run.a("gy", t * h * a)
        run.a("gyw", t * h * a)
        recomputed = w.grad_checkpointing and not final  # the recompute's y goes before the sum
        if recomputed:
            run.f(name + ".y")
        run.a("red", _reduce_buffer(h, t))
        run.f("red", "gyw", g)
        if not recomputed:
            run.f(name + ".y")
        run.a("gy32", t * h * 4)
        run.f("gy")
        rsqrt_backward(name, "gy32", "G" if final else "gb", final, layer_input)
        if not final:
            run.f("gb")

    def gemma_norm_backward(name: str, out: str, final: bool = False, layer_input: str | None = None
                            ) -> None:
        """Gemma2RMSNorm's backward from "g32" (its output's gradient already cast to fp32 by
        type_as's backward): * (1 + w): the weight's gradient (g * normed summed over tokens) and
        normed's; then rsqrt_backward, x's gradient as `out`."""
        recomputed = w.grad_checkpointing and not final
        run.a("gn", t * h * 4)
        run.a("gw", t * h * 4)
        if recomputed:
            run.f(name + ".normed")
        run.a("red", _reduce_buffer(h, t))
        run.f("red", "gn", "g32")
        if not recomputed:
            run.f(name + ".normed")
        rsqrt_backward(name, "gw", out, final, layer_input)

    def to_fp32(g: str, free: bool = True) -> None:
        """type_as's backward: the gradient cast to fp32 as "g32"."""
        run.a("g32", t * h * 4)
        if free:
            run.f(g)

    def rope_backward(name: str, width: int, g: str) -> None:
        """apply_rotary_pos_emb's backward for one tensor; leaves `name`.pre, the gradient before it."""
        run.a("r1", t * width * a)
        run.a("r2", t * width // 2 * a)
        run.a(name + ".pre", t * width * a)
        run.f("r2")
        run.a("r4", t * width * a)
        run.f("r1", "r4")
        run.a("r5", t * width * a)
        run.f(g, "r5")

    def attention_forward(x: str, s: str, saved: bool) -> None:
        """Norm, q/k/v, rotary embeddings, SDPA, o_proj, the residual sum r1 and the second norm;
        the tensors a backward formula reads are named with the layer's prefix `s`."""
        norm(x, s + "n1", saved)
        run.a("q", t * q * a)
        run.a("k", t * kv * a)
        run.a(s + "v", t * kv * a)
        _rope(run, s + "q", q * t, a)
        _rope(run, s + "k", kv * t, a)
        run.f("q", "k")
        run.a(s + "attn", t * q * a)
        run.a(s + "lse", t * card.num_heads * 4)
        if not saved:
            run.f(s + "lse")
        run.a("o", t * h * a)
        if not saved:
            run.f(s + "attn", s + "q.emb", s + "k.emb", s + "v", s + "n1")
        if gemma:  # r1 = x + post_attention_layernorm(o)
            norm("o", s + "pn1", saved)
            run.f("o")
            run.a(s + "r1", t * h * a)
            run.f(s + "pn1")
        else:
            run.a(s + "r1", t * h * a)
            run.f("o")
        norm(s + "r1", s + "n2", saved)

    def layer_forward(layer: int, x: str) -> str:
        """A checkpointed layer's forward (no autograd recording): the inference layer without
        the cache; its input stays for the recompute."""
        attention_forward(x, "", saved=False)
        _gated_mlp(run, t, h, i, a)
        post_mlp("", saved=False)
        out = f"h{layer}"
        run.a(out, t * h * a)
        run.f("down" if not gemma else "pn2", "r1")
        return out

    def post_mlp(s: str, saved: bool) -> None:
        """Gemma's post_feedforward_layernorm of the MLP's output."""
        if gemma:
            norm("down", s + "pn2", saved)
            run.f("down")

    def projection_backward(layer: int, proj: str, gx: str) -> None:
        """A q/k/v projection's input and weight gradients (addmm, with a bias, makes the input's
        first)."""
        if card.qkv_bias:
            run.a(gx, t * h * a)
            grad(layer, proj)
        else:
            grad(layer, proj)
            run.a(gx, t * h * a)

    def bias_backward(width: int) -> None:
        """A bias's gradient: the gradient summed over tokens (the bias itself is small)."""
        if card.qkv_bias:
            run.a("red", _reduce_buffer(width, t))
            run.f("red")

    def saved_mlp(s: str) -> None:
        for name in ("gate", "act", "up", "prod"):
            run.a(s + name, t * i * a)

    def layer_forward_saved(layer: int, x: str) -> str:
        """A layer's forward with autograd recording (no checkpointing): what a backward formula
        reads stays, under the layer's prefix."""
        s = f"{layer}."
        attention_forward(x, s, saved=True)
        saved_mlp(s)
        run.a("down", t * h * a)
        post_mlp(s, saved=True)
        out = f"h{layer}"
        run.a(out, t * h * a)
        run.f("down" if not gemma else s + "pn2", s + "r1")
        if x != "embeds":  # the model's loop variable moves on; the embeddings stay referenced
            run.f(x)
        return out

    def layer_backward(layer: int, x: str) -> None:
        s = f"{layer}."
        if gemma:  # post_feedforward_layernorm's type_as needs nothing saved: it runs first
            to_fp32("G", free=False)
        if w.grad_checkpointing:
            # the recompute (autograd recording) stops once the last saved tensor exists (Llama:
            # the MLP's product, so no down projection; Gemma: the post-MLP norm's normalised
            # input); the residual sum r1 goes
            attention_forward(x, s, saved=True)
            saved_mlp(s)
            if gemma:
                run.a("down", t * h * a)
                run.a(s + "pn2.x32", t * h * 4)
                run.a("pow", t * h * 4)
                run.f("pow")
                run.a(s + "pn2.normed", t * h * 4)
                run.f("down")
            run.f(s + "r1")
        if gemma:
            gemma_norm_backward(s + "pn2", "gdown")
        # down_proj, the product, the activation, gate_proj and up_proj
        grad(layer, "down_proj")
        run.a("gprod", t * i * a)
        run.f(s + "prod")
        if gemma:
            run.f("gdown")
        run.a("gup", t * i * a)
        run.a("gact", t * i * a)
        run.f(s + "act", s + "up", "gprod")
        grad(layer, "up_proj")
        run.a("gn2a", t * h * a)
        run.f("gup")
        run.a("ggate", t * i * a)
        run.f(s + "gate", "gact")
        grad(layer, "gate_proj")
        run.a("gn2b", t * h * a)
        run.f(s + "n2", "ggate")
        run.a("gn2", t * h * a)
        run.f("gn2a", "gn2b")
        if gemma:  # pre_feedforward_layernorm, then post_attention_layernorm from the residual's G
            to_fp32("gn2")
            gemma_norm_backward(s + "n2", "gb")
            run.f("gb")
            to_fp32("G", free=False)
            gemma_norm_backward(s + "pn1", "go")
        else:
            norm_backward(s + "n2", "gn2")
        # o_proj, SDPA, the rotary embeddings, v/k/q projections (the rotated gradients are made
        # contiguous before their projections)
        grad(layer, "o_proj")
        run.a("gattn", t * q * a)
        if gemma:
            run.f("go")
        run.a("gq", t * q * a)
        run.a("gk", t * kv * a)
        run.a("gv", t * kv * a)
        run.a("ws", _flash_backward_buffer(card, t))
        run.f("ws", s + "attn", s + "lse", s + "v", s + "q.emb", s + "k.emb", "gattn")
        rope_backward("k", kv, "gk")
        rope_backward("q", q, "gq")
        projection_backward(layer, "v_proj", "gxv")
        bias_backward(kv)
        run.f("gv")
        run.a("kc", t * kv * a)
        run.f("k.pre")
        projection_backward(layer, "k_proj", "gxk")
        bias_backward(kv)
        run.f("kc")
        run.a("gsum", t * h * a)
        run.f("gxv", "gxk")
        run.a("qc", t * q * a)
        run.f("q.pre")
        projection_backward(layer, "q_proj", "gxq")
        if w.grad_checkpointing:  # a recomputed input goes as soon as its last formula ran
            run.f(s + "n1")
        bias_backward(q)
        run.f("qc", "gxq", *([] if w.grad_checkpointing else [s + "n1"]))
        layer_input = x if w.grad_checkpointing else None
        if gemma:
            to_fp32("gsum")
            gemma_norm_backward(s + "n1", "gb", layer_input=layer_input)
            run.f("gb")
        else:
            norm_backward(s + "n1", "gsum", layer_input=layer_input)

    params = card.parameters()
    cap = card.final_logit_softcapping
    for step in range(TRAIN_STEPS):
        run.a("embeds", t * h * a)
        if gemma:  # embeddings * sqrt(hidden): a new tensor, the lookup's goes
            run.rename("embeds", "lookup")
            run.a("embeds", t * h * a)
            run.f("lookup")
        _rotary_tables(run, card, w.seq, a)
        inputs = ["embeds"]
        forward = layer_forward if w.grad_checkpointing else layer_forward_saved
        for layer in range(card.num_layers):
            inputs.append(forward(layer, inputs[-1]))
        norm(inputs[-1], "final", saved=True)
        run.f(inputs.pop())
        if not w.grad_checkpointing:  # the checkpoints hold the embeddings; without, the model returns them
            run.f("embeds")
        # logits, soft-capped (cap * tanh(logits / cap): tanh's output stays for its backward),
        # .float() and log_softmax (cross-entropy keeps only the last)
        run.a("logits", t * vocab * a)
        if cap:
            run.a("div", t * vocab * a)
            run.f("logits")
            run.a("tanh", t * vocab * a)
            run.f("div")
            run.rename("tanh", "logits.tanh")
            run.a("logits", t * vocab * a)
        run.a("logits32", t * vocab * 4)
        run.a("logp", t * vocab * 4)
        run.f("logits32", "logits")
        # backward: the loss, lm_head (the autograd thread's first matmul reserves its own cuBLAS
        # workspace), the final norm, then every layer from the last
        run.a("g.logp", t * vocab * 4)
        run.a("g.logits32", t * vocab * 4)
        run.f("g.logp", "logp")
        run.a("g.logits", t * vocab * a)
        run.f("g.logits32")
        if cap:  # * cap, tanh's backward, / cap
            for g in ("g.mul", "g.tanh", "g.div"):
                run.rename("g.logits", g + ".in")
                run.a("g.logits", t * vocab * a)
                run.f(g + ".in")
                if g == "g.tanh":
                    run.f("logits.tanh")
        run.a("g.lm_head", vocab * h * a)
        if step == 0:
            run.a("cublas (autograd thread)", CUBLAS_WORKSPACE)
        run.a("g.final", t * h * a)
        run.f("g.logits", "final")
        if gemma:
            to_fp32("g.final")
            gemma_norm_backward("final", "G", final=True)
        else:
            norm_backward("final", "g.final", final=True)
        for layer in reversed(range(card.num_layers)):
            layer_backward(layer, inputs[layer])
        run.f("cos", "sin")
        # the embedding's gradient (dense; above 3,072 tokens with an fp32 accumulator), summed with
        # lm_head's when the two are tied; Gemma's scaling first multiplies G by sqrt(hidden)
        into_embedding = "G"
        if gemma:
            run.a("g.lookup", t * h * a)
            run.f("G")
            into_embedding = "g.lookup"
        run.a("g.embed_tokens", vocab * h * a)
        if t > 3072:  # embedding_dense_backward sorts the indices only above 3,072 of them
            run.a("embed.tmp", h * 4 * (t + t // 10))
            run.f("embed.tmp")
        run.f(into_embedding)
        if card.tie_word_embeddings:
            run.a("g.sum", vocab * h * a)
            run.f("g.lm_head", "g.embed_tokens")
            run.rename("g.sum", "g.embed_tokens")
        # fused AdamW: exp_avg and exp_avg_sq per parameter in the first step; then
        # zero_grad(set_to_none=True) frees every gradient in parameter order
        if step == 0:
            for p in params:
                run.a("m." + p.name, p.numel * a)
                run.a("v." + p.name, p.numel * a)
        if w.optimizer == "adamw-foreach":
            # torch's foreach AdamW: torch._foreach_sqrt(exp_avg_sqs) builds one tensor per
            # parameter, in parameter order, dropped with its list (last element first) at the
            # end of the step
            for p in params:
                run.a("sqrt." + p.name, p.numel * a)
            for p in reversed(params):
                run.f("sqrt." + p.name)
        for p in params:
            if "g." + p.name in run.live:
                run.f("g." + p.name)
    return run.alloc
