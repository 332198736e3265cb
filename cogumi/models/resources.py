"""Hardware detection and memory planning: will a model fit, at what precision and batch size.

Estimates are deliberately simple, documented formulas (weights + KV cache + runtime
overhead for inference; 4-bit weights + LoRA states + checkpointed activations +
logits for QLoRA training), so a user can check them by hand.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

import psutil

from cogumi.errors import DeviceError
from cogumi.models.registry import ModelSpec

GB = 1024**3
#: bytes per parameter of each weight format (NF4 includes double-quantised scales)
BYTES_PER_PARAM = {"float32": 4.0, "bfloat16": 2.0, "float16": 2.0, "int8": 1.0,
                   "q5_k_m": 5.69 / 8, "q4_k_m": 4.85 / 8, "nf4": 4.127 / 8}
#: the process itself: CUDA context, or (CPU) Python with torch, transformers, peft, trl, bitsandbytes
#: and ray.train imported (0.64 GB RSS measured here)
RUNTIME_OVERHEAD_GB = {"cuda": 1.0, "mps": 0.5, "cpu": 0.7}
HEADROOM = 0.90  # plan for at most 90 % of the free memory


@dataclass
class Accelerator:
    """One device with its memory."""

    kind: str  # cuda | mps
    index: int
    name: str
    total_gb: float
    free_gb: float


@dataclass
class NodeResources:
    """What one machine (or Ray node) has."""

    node: str
    cpus: float
    ram_total_gb: float
    ram_free_gb: float
    accelerators: list[Accelerator] = field(default_factory=list)

    @property
    def best_device(self) -> str:
        """``cuda``, ``mps`` or ``cpu``."""
        return self.accelerators[0].kind if self.accelerators else "cpu"

    @property
    def device_free_gb(self) -> float:
        """Free memory on the best device (largest accelerator, else RAM)."""
        if self.accelerators:
            return max(a.free_gb for a in self.accelerators)
        return self.ram_free_gb

    def as_dict(self) -> dict:
        """Plain dict (for manifests and JSON output)."""
        return asdict(self) | {"best_device": self.best_device}


def detect_local() -> NodeResources:
    """Resources of this process's machine: CPUs, RAM, CUDA GPUs, Apple MPS."""
    vm = psutil.virtual_memory()
    node = NodeResources(node=os.uname().nodename, cpus=float(os.cpu_count() or 1),
                         ram_total_gb=vm.total / GB, ram_free_gb=vm.available / GB)
    try:
        import torch
    except ImportError:
        return node
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            free, total = torch.cuda.mem_get_info(i)
            node.accelerators.append(Accelerator("cuda", i, torch.cuda.get_device_name(i),
                                                 total / GB, free / GB))
    elif getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        node.accelerators.append(Accelerator("mps", 0, "Apple MPS", vm.total / GB, vm.available / GB))
    return node


def detect_ray_nodes() -> list[NodeResources]:
    """Resources of every alive node of the connected Ray cluster (empty if Ray is not up).

    Ray reports totals, not free memory, for remote nodes: free = total there.
    """
    try:
        import ray
    except ImportError:
        return []
    if not ray.is_initialized():
        return []
    out = []
    for n in ray.nodes():
        if not n.get("Alive"):
            continue
        res = n.get("Resources", {})
        ram = res.get("memory", 0) / GB
        gpus = int(res.get("GPU", 0))
        accs = [Accelerator("cuda", i, n.get("NodeManagerHostname", "gpu"), 0.0, 0.0) for i in range(gpus)]
        out.append(NodeResources(node=n.get("NodeManagerAddress", "?"), cpus=res.get("CPU", 0),
                                 ram_total_gb=ram, ram_free_gb=ram, accelerators=accs))
    return out


def resolve_device(requested: str) -> str:
    """Turn ``auto``/``cpu``/``cuda``/``mps`` into a device that exists here.

    Raises:
        DeviceError: a specific accelerator was asked for and is not present.
    """
    import torch

    if requested == "auto":
        if torch.cuda.is_available():
            return "cuda"
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return "mps"
        return "cpu"
    if requested == "cuda" and not torch.cuda.is_available():
        raise DeviceError("CUDA was requested but no CUDA device is available (torch.cuda.is_available() "
                          f"is False; torch {torch.__version__})", "model device setting",
                          "set device: auto or cpu, or run on a machine with an NVIDIA GPU and a CUDA build of torch")
    if requested == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise DeviceError("MPS was requested but Apple Metal is not available here", "model device setting",
                          "set device: auto or cpu")
    return requested


# ---------------------------------------------------------------- estimates


def inference_gb(spec: ModelSpec, weights: str = "bfloat16", context: int = 4096, device: str = "cuda") -> float:
    """Memory to serve ``spec``: weights + fp16 KV cache for ``context`` tokens + runtime overhead."""
    weights_gb = spec.params_b * 1e9 * BYTES_PER_PARAM[weights] / GB
    return weights_gb + spec.kv_cache_bytes(context) / GB + RUNTIME_OVERHEAD_GB[device]


def qlora_train_gb(spec: ModelSpec, r: int = 64, seq_len: int = 2048, batch: int = 4,
                   paged_8bit_adam: bool = True, device: str = "cuda") -> float:
    """Memory for QLoRA SFT with gradient checkpointing.

    NF4 base weights; LoRA weights + grads + AdamW states (2 x fp32, or 2 x 8-bit when
    8-bit AdamW); checkpointed layer inputs; one layer's full activations; fp32 logits and
    their gradient (large for 128k-token vocabularies). On an accelerator activations and
    LoRA weights are bf16; on CPU training runs in fp32 and loading holds the full-precision
    weights twice (the checkpoint's tensors and the model's) before NF4 quantisation, which
    sets the CPU peak (SmolLM2-135M, local.yaml: estimate 2.0 GB, measured peak RSS 2.3 GB).
    """
    act = 4 if device == "cpu" else 2
    tokens = batch * seq_len
    base = spec.params_b * 1e9 * BYTES_PER_PARAM["nf4"]
    load = 2 * spec.params_b * 1e9 * BYTES_PER_PARAM["float32"] if device == "cpu" else 0.0
    lora = spec.lora_params(r) * (act + act + (2 if paged_8bit_adam else 8))
    checkpoints = spec.layers * tokens * spec.hidden * act
    one_layer = tokens * (4 * spec.hidden + 3 * spec.intermediate) * act
    logits = tokens * spec.vocab * 4 * 2
    return (base + load + lora + checkpoints + one_layer + logits) / GB + RUNTIME_OVERHEAD_GB[device]


@dataclass
class MemoryEstimate:
    """Estimated memory of one model on one device for the settings in use (GB; estimates, not measurements).

    Every command that prints memory (``cogumi doctor``, ``cogumi models``) prints these, so
    the same config gives the same numbers everywhere.
    """

    model: str
    device: str
    context: int
    r: int
    seq_len: int
    batch: int
    fp16_gb: float
    nf4_gb: float
    qlora_gb: float

    @property
    def settings(self) -> str:
        """The inputs, for the output's column heads and notes."""
        return f"QLoRA batch {self.batch}, seq {self.seq_len}, LoRA r {self.r}; serving context {self.context}"


def estimate(spec: ModelSpec, device: str, *, r: int, seq_len: int, batch: int, context: int) -> MemoryEstimate:
    """The one memory estimate: serving in bf16/fp16 and NF4 weights, and QLoRA SFT, on ``device``."""
    return MemoryEstimate(spec.name, device, context, r, seq_len, batch,
                          round(inference_gb(spec, "bfloat16", context, device), 2),
                          round(inference_gb(spec, "nf4", context, device), 2),
                          round(qlora_train_gb(spec, r, seq_len, batch, device=device), 2))


def estimate_for(spec: ModelSpec, node: NodeResources, train: Any, context: int) -> MemoryEstimate:
    """:func:`estimate` with the settings of a ``train`` config section, on ``node``'s best device."""
    return estimate(spec, node.best_device, r=train.lora.r, seq_len=train.max_seq_length, batch=train.batch_size,
                    context=context)


@dataclass
class FitReport:
    """Whether a model fits one node, for serving and for QLoRA training."""

    model: str
    device: str
    available_gb: float
    inference_weights: str | None
    inference_gb: float | None
    train_batch_size: int | None
    train_gb: float | None

    @property
    def fits_inference(self) -> bool:
        return self.inference_weights is not None

    @property
    def fits_training(self) -> bool:
        return self.train_batch_size is not None


def plan(spec: ModelSpec, node: NodeResources, context: int = 4096, r: int = 64,
         seq_len: int = 2048) -> FitReport:
    """Best precision for inference and largest QLoRA batch (1..16) that fit ``node``."""
    device = node.best_device
    budget = node.device_free_gb * HEADROOM
    order = ["bfloat16", "int8", "nf4"] if device != "cpu" else ["bfloat16", "q5_k_m", "q4_k_m"]
    weights = next((w for w in order if inference_gb(spec, w, context, device) <= budget), None)
    batch = None
    for b in (16, 8, 4, 2, 1):
        if qlora_train_gb(spec, r, seq_len, b, device=device) <= budget:
            batch = b
            break
    return FitReport(spec.name, device, round(budget, 2), weights,
                     round(inference_gb(spec, weights, context, device), 2) if weights else None,
                     batch, round(qlora_train_gb(spec, r, seq_len, batch, device=device), 2) if batch else None)
