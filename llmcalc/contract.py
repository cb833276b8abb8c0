"""The JSON contract (docs/json.md): each command's document built from the core's results.

Pure: no rich, no typer. `llmcalc.api`'s results return these from `to_dict()`, and the CLI's
`--json` prints exactly that, so the API and the CLI cannot drift apart.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING, Any

from llmcalc.memory import COMPONENTS

if TYPE_CHECKING:
    from llmcalc.capacity import CheckResult
    from llmcalc.cards import ModelCard
    from llmcalc.hardware import GpuSpec
    from llmcalc.memory import MemoryBreakdown
    from llmcalc.planning import Option
    from llmcalc.scale import ScaledEstimate
    from llmcalc.serving import ServeEstimate, Sizing
    from llmcalc.speed import Throughput
    from llmcalc.workload import Workload

JSON_SCHEMA_VERSION = 1


def dumps(doc: Any) -> str:
    import json  # lazily: the table output never needs it

    return json.dumps(doc, indent=2)


def fit(m: MemoryBreakdown | ScaledEstimate, gpu: GpuSpec) -> dict[str, Any]:
    return {
        "id": gpu.id,
        "name": gpu.name,
        "memory_bytes": gpu.memory_bytes,
        "fits": m.device_total_bytes <= gpu.memory_bytes,
        "free_bytes": gpu.memory_bytes - m.device_total_bytes,
    }


def throughput_dict(t: Throughput | None, m: MemoryBreakdown, gpu: GpuSpec) -> dict[str, Any] | None:
    """The `throughput` object; None for training."""
    if t is None:
        return None
    fits = m.device_total_bytes <= gpu.memory_bytes
    doc: dict[str, Any] = {
        "fits": fits,
        "bound": t.decode.bound,
        "prefill_bound": t.prefill.bound,
        "efficiency_source": t.efficiency_source,
    }
    if not fits:  # no numbers for a workload that cannot run there
        return doc
    return doc | {
        "prefill_ms": t.prefill.wall_s * 1e3,
        "prefill_kernel_ms": t.prefill.kernel_s * 1e3,
        "ttft_ms": t.ttft_s * 1e3,
        "decode_step_ms": t.decode.wall_s * 1e3,
        "decode_step_kernel_ms": t.decode.kernel_s * 1e3,
        "decode_context": t.decode_context,
        "decode_tokens_per_s": t.decode_tokens_per_s,
        "per_sequence_tokens_per_s": t.per_sequence_tokens_per_s,
        "mbu": t.mbu,
        "mfu": t.mfu,
        "decode_intensity_flop_per_byte": t.decode.intensity,
        "ridge_flop_per_byte": t.ridge,
        "decode_kernels": t.decode.kernels,
        "engine_ttft_ms": t.engine_ttft_s * 1e3,
        "engine_decode_step_ms": t.engine_decode_step_s * 1e3,
        "engine_decode_tokens_per_s": t.engine_decode_tokens_per_s,
    }


def memory_dict(m: MemoryBreakdown | ScaledEstimate) -> dict[str, Any]:
    """The `memory` object, one GPU or per GPU."""
    return {
        "components": {c: m.components[c] for c in COMPONENTS},
        "peak_allocated_bytes": m.peak_allocated_bytes,
        "device_total_bytes": m.device_total_bytes,
        "peak_phase": m.peak_phase,
        "phases": {p.name: p.total for p in m.phases},
    }


def estimate_doc(m: MemoryBreakdown, card: ModelCard, gpu: GpuSpec | None, t: Throughput | None = None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": JSON_SCHEMA_VERSION,
        "model": {"name": card.name, "params": m.params, "source": card.source},
        "workload": asdict(m.workload) | {"compute_dtype": m.workload.compute_dtype},
        "memory": memory_dict(m),
        "calibration": m.calibration,
        "warnings": list(m.warnings),
    }
    if gpu is not None:
        doc["gpu"] = fit(m, gpu)
        doc["throughput"] = throughput_dict(t, m, gpu)
    return doc


def scale_dict(r: ScaledEstimate) -> dict[str, Any]:
    from llmcalc.scale import DEEPSPEED_BUCKET_ELEMENTS

    s = r.scale
    return {"gpus": s.gpus, "data_parallel": s.dp, "tp": s.tp, "pp": s.pp, "zero_stage": s.stage,
            "engine": "fsdp" if s.fsdp else ("deepspeed" if s.zero else None), "grad_accum": s.grad_accum,
            "global_batch": r.global_batch, "offload": s.offload, "lora_rank": s.lora_rank,
            "lora_targets": list(s.lora_targets) if s.lora_rank else [], "trainable_params": r.trainable_params,
            "reduce_bucket_size": (s.reduce_bucket or DEEPSPEED_BUCKET_ELEMENTS) if s.zero else None}


def scaled_doc(r: ScaledEstimate, card: ModelCard, w: Workload, gpu: GpuSpec | None) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "schema_version": JSON_SCHEMA_VERSION,
        "model": {"name": card.name, "params": card.num_params, "source": card.source},
        "workload": asdict(w) | {"compute_dtype": w.compute_dtype},
        "per_gpu": True,
        "scale": scale_dict(r),
        "memory": memory_dict(r),
        "cpu_offload_bytes": r.cpu_bytes,
        "notes": list(r.notes),
    }
    if gpu is not None:
        doc["gpu"] = fit(r, gpu)
    return doc


def sweep_doc(rows: list[tuple[int, MemoryBreakdown, Throughput]], gpu: GpuSpec, card: ModelCard) -> dict[str, Any]:
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "model": {"name": card.name, "params": card.num_params},
        "gpu": {"id": gpu.id, "name": gpu.name, "memory_bytes": gpu.memory_bytes},
        "sweep": [{"batch": b, "device_total_bytes": m.device_total_bytes, "throughput": throughput_dict(t, m, gpu)}
                  for b, m, t in rows],
    }


def check_doc(results: list[CheckResult]) -> dict[str, Any]:
    return {
        "schema_version": JSON_SCHEMA_VERSION,
        "ok": all(r.ok for r in results),
        "deployments": [{
            "name": r.deployment.name, "model": r.deployment.model, "gpu": r.deployment.gpu, "ok": r.ok,
            "device_total_bytes": r.device_total_bytes, "budget_bytes": r.budget_bytes,
            "memory_bytes": r.memory_bytes, "headroom": r.deployment.headroom, "peak_phase": r.peak_phase,
            "tokens_per_s": r.tokens_per_s, "min_tokens_per_s": r.deployment.min_tokens_per_s,
            "reasons": list(r.reasons),
        } for r in results],
    }


def option_dict(o: Option) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "gpu": o.gpu.id, "name": o.gpu.name, "fits": o.fits, "min_devices": o.min_devices,
        "device_total_bytes": o.device_total_bytes, "devices": o.devices,
        "device_total_per_gpu_bytes": o.device_total_per_gpu, "max_batch": o.max_batch, "max_context": o.max_context,
        "meets_target": o.meets_target, "price_per_hour": o.price_per_hour,
        "cost_per_million_tokens": o.cost_per_million_tokens,
    }
    if o.speed is not None:
        doc |= {"batch": o.speed.seqs, "ttft_ms": o.speed.engine_ttft_s * 1e3,
                "decode_step_ms": o.speed.engine_decode_step_s * 1e3,
                "decode_tokens_per_s": o.speed.engine_decode_tokens_per_s,
                "per_sequence_tokens_per_s": o.speed.engine_decode_tokens_per_s / o.speed.seqs}
    if o.serving is not None:
        doc["serving"] = {"gpu_memory_utilization": o.serving.utilization, "block_size": o.serving.block_size,
                          "kv_budget_bytes": o.serving.kv_budget_bytes, "block_bytes": o.serving.block_bytes,
                          "blocks": o.serving.blocks, "max_sequences": o.serving.max_sequences}
    return doc


def plan_doc(options: list[Option], card: ModelCard, w: Workload, target: float | None) -> dict[str, Any]:
    return {"schema_version": JSON_SCHEMA_VERSION, "model": {"name": card.name, "params": card.num_params},
            "workload": {"dtype": w.dtype, "prompt": w.seq, "output": w.gen, "target_tokens_per_s": target},
            "speeds": "serving engine: GPU kernel time, launches hidden (docs/throughput.md)",
            "options": [option_dict(o) for o in options]}


def serve_dict(r: ServeEstimate) -> dict[str, Any]:
    return {"engine": r.engine, "engine_version": r.version, "budget_bytes": r.budget_bytes,
            "weights_bytes": r.weights_bytes, "non_torch_bytes": r.non_torch_bytes,
            "activation_peak_bytes": r.activation_peak_bytes, "cuda_graph_bytes": r.cuda_graph_bytes,
            "kv_available_bytes": r.kv_available_bytes, "kv_cache_bytes": r.kv_cache_bytes,
            "kv_cache_tokens": r.kv_cache_tokens, "kv_block_size": r.kv_block_size,
            "max_model_len": r.max_model_len, "max_num_seqs": r.max_num_seqs,
            "max_num_batched_tokens": r.max_num_batched_tokens, "max_concurrency": round(r.max_concurrency, 2),
            "data_parallel": r.data_parallel, "max_concurrency_all_replicas": round(r.max_concurrency * r.data_parallel, 2),
            "starts": r.starts, "error": r.error, "explain": r.explain}


def serve_doc(r: ServeEstimate, card: ModelCard, w: Workload, gpu: GpuSpec | None, warnings: list[str],
              sizing: Sizing | None = None) -> dict[str, Any]:
    doc = {"schema_version": JSON_SCHEMA_VERSION, "model": {"name": card.name, "params": card.num_params},
           "weights_dtype": w.dtype, "gpu": gpu.id if gpu else None, "per_rank": True,
           "warnings": list(warnings), "serve": serve_dict(r)}
    if sizing is not None:
        doc["sizing"] = {"concurrency": sizing.concurrency, "tp": sizing.tp, "memory_fraction": sizing.memory_fraction}
    return doc


def models_doc(cards: list[ModelCard]) -> list[dict[str, Any]]:
    return [{"name": c.name, "family": c.family, "params": c.num_params, "source": c.source} for c in cards]


def gpus_doc(gpus: list[GpuSpec]) -> list[dict[str, Any]]:
    return [{"id": g.id, "kind": g.kind, "name": g.name, "memory_bytes": g.memory_bytes,
             "bytes_per_s": g.bytes_per_s, "peak_flops": g.peak_flops, "unconfirmed": list(g.unconfirmed),
             "source": g.source} for g in gpus]
