"""The validated configuration of a run or a sweep template: one pydantic model per TOML table.

Every entry point (the command line, a Tune trial, a test) builds its run from a `Config`. Unknown
keys are errors (`extra="forbid"`); cross-field rules raise `KeyProblem` naming the dotted key, so
the loader can print `file: key: problem`. Each field's docstring is its documentation.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    PrivateAttr,
    ValidationError,
    ValidatorFunctionWrapHandler,
    field_serializer,
    field_validator,
    model_validator,
)

from arbiter.config.presets import MODEL_PRESETS
from arbiter.config.space import Axis, expand, parse_space
from arbiter.errors import KeyProblem

Precision = Literal["auto", "bf16", "fp16", "fp32"]

# Operations of the built-in modular-arithmetic task, as written in TOML.
OPERATIONS = ("add", "sub", "mul", "div", "x^2+y^2", "x^3+xy", "x^2+xy+y^2")
# Operations that divide by b need b invertible mod p for every b != 0: p must be prime.
PRIME_OPERATIONS = ("div",)
# Token files are uint16 (the nanoGPT convention).
MAX_TOKEN_VOCAB = 2**16
# The keys PBT may mutate: an exploited trial continues from another trial's checkpoint, so it
# can only change what that checkpoint's layout (parameter shapes, optimizer state, data cursor,
# Grokfast averages) does not depend on.
PBT_MUTABLE = (
    "training.learning_rate",
    "training.min_lr_ratio",
    "training.weight_decay",
    "training.betas",
    "training.eps",
    "training.momentum",
    "training.grad_clip",
    "training.orthograd",
    "training.loss",
    "training.loss_dtype",
    "training.grokfast_alpha",
    "training.grokfast_lamb",
    "model.dropout",
)


class Section(BaseModel):
    """Common settings: unknown keys are errors, floats are finite (TOML has inf and nan), and
    field docstrings become descriptions."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False, use_attribute_docstrings=True)


class ModelConfig(Section):
    """`[model]`: the decoder-only transformer ("theos" family), or the one-hot MLP."""

    name: str = "theos"
    """A label for the architecture, shown in reports."""
    preset: Literal[tuple(MODEL_PRESETS)] | None = None  # type: ignore[valid-type]
    """A reference codebase's network: power (Power et al. 2022), grokfast (Lee et al. 2024) or
    nanda (Nanda et al. 2023). It gives every key that shapes that network
    (`arbiter/config/presets.py`, docs/grokking.md); a key set beside it (in any file of the
    `extends` chain, by --set, or by a sweep axis) wins."""
    arch: Literal["transformer", "mlp"] = "transformer"
    """transformer: the decoder-only "theos" transformer. mlp: a multilayer perceptron on the
    operands a and b, each one-hot over the p residues, concatenated, with a logit per residue,
    as in Prieto et al. 2025's StableMax experiments: `n_layers` hidden layers of width `dim`
    with the `mlp` activation (relu, its default, or gelu), biases if `mlp_bias`, then the
    output layer; modular task only (it predicts one answer per sequence), without dropout or
    gradient checkpointing. The transformer's own keys (n_heads, mlp_dim, norm, positions,
    tie_embeddings, flash_attention, rope_theta) do not apply to it."""
    dim: int = Field(128, gt=0)
    """Width of the residual stream (d_model); of each hidden layer for arch = "mlp"."""
    n_layers: int = Field(2, gt=0)
    """Number of transformer blocks: deep-and-narrow models have many layers and a small dim.
    Hidden layers for arch = "mlp"."""
    n_heads: int = Field(4, gt=0)
    """Attention heads; the head size dim / n_heads must be an even integer (rotary embeddings)."""
    vocab_size: int | None = Field(None, gt=1)
    """Vocabulary size. Derived for the modular task (modulus + 2, or + 1 without the
    operation token) and may be omitted there."""
    mlp: Literal["swiglu", "gelu", "relu"] = "swiglu"
    """MLP type: SwiGLU (three matrices), GELU or ReLU (two matrices; ReLU as Nanda et al.)."""
    mlp_dim: int = Field(0, ge=0)
    """MLP hidden width; 0: 4*dim for gelu and relu, 8*dim/3 rounded up to a multiple of 64 for
    swiglu."""
    norm: Literal["rmsnorm", "layernorm", "none"] = "rmsnorm"
    """RMSNorm (or LayerNorm, with its bias) at each attention and MLP (where: `block`) and
    before the output layer, or none at all (the original grokking transformer of Nanda et al.
    2023 has none)."""
    block: Literal["pre_norm", "norm_stream", "post_norm"] = "pre_norm"
    """pre_norm: x + attn(norm1(x)), then x + mlp(norm2(x)). norm_stream: the first norm
    normalises the residual stream itself, x = norm1(x), then x + attn(x) and x + mlp(norm2(x)),
    as the blocks of Grokfast's code (Lee et al. 2024) do. post_norm: x = norm1(x + attn(x)),
    then norm2(x + mlp(x)), and no norm before the output layer (the original Transformer's,
    and Power et al. 2022's code)."""
    positions: Literal["rope", "learned", "sinusoidal"] = "rope"
    """Rotary position embeddings, or a learned position table added to the token embedding
    (as the original grokking transformers), or the fixed sin/cos table of Vaswani et al. added
    likewise (Power et al. 2022's)."""
    tie_embeddings: bool = False
    """Share the token embedding with the output projection."""
    flash_attention: bool = False
    """Use flash-attn when it is installed and usable (CUDA, fp16/bf16); otherwise PyTorch SDPA."""
    dropout: float = Field(0.0, ge=0.0, lt=1.0)
    """Dropout on attention and residual branches; grokking studies use 0."""
    norm_eps: float = Field(1e-5, gt=0.0)
    """Epsilon of the norm layers."""
    rope_theta: float = Field(10000.0, gt=0.0)
    """Base of the rotary position embedding frequencies (positions = "rope")."""
    mlp_bias: bool = False
    """Biases in the MLP's two (SwiGLU: three) linear layers, decayed only with
    training.decay_all; they start at zero unless init = "torch". Nanda et al.'s grokking model
    has them."""
    attn_bias: bool = False
    """Biases in attention's q, k, v and output projections (nn.MultiheadAttention has them, as
    Grokfast's model); they start at zero (with init = "torch_linear", as nn.Linear's). The
    output layer never has one."""
    init: Literal["gpt2", "nanda", "torch", "torch_linear"] = "gpt2"
    """Initial weights. gpt2: every matrix N(0, 0.02^2), the attention and MLP output
    projections 1/sqrt(2 n_layers) smaller (so the residual stream's variance does not grow with
    depth). nanda: every matrix with std 1/sqrt(dim), the output layer 1/sqrt(vocab_size), as
    in Nanda et al. 2023's code. torch: PyTorch's own defaults (embeddings N(0, 1), linear
    weights and biases uniform in +-1/sqrt(fan_in), attention as nn.MultiheadAttention: q, k, v
    Xavier-uniform, its biases zero), as in code that leaves them alone, such as Grokfast's.
    torch_linear: the same, but q, k and v as nn.Linear layers keep nn.Linear's own (uniform in
    +-1/sqrt(dim)), as Power et al.'s per-head projections. MLP biases start at zero except
    with torch and torch_linear."""
    init_scale: float = Field(1.0, gt=0.0)
    """Multiplies every weight matrix (embeddings included, norm gains and biases not) after
    `init`. Omnigrok (Liu et al., 2023) ties the grokking delay to the initial weight norm: a
    larger scale lengthens the memorization plateau, a smaller one shortens it."""

    # The keys the preset filled in: a run's settings leave them out (`Config.run_settings`),
    # so that a trial whose sweep axis names another preset takes all of that preset's keys.
    _preset_keys: tuple[str, ...] = PrivateAttr(())

    @model_validator(mode="wrap")
    @classmethod
    def _preset(cls, data: Any, handler: ValidatorFunctionWrapHandler) -> ModelConfig:
        preset = data.get("preset") if isinstance(data, dict) else None
        if not isinstance(preset, str) or preset not in MODEL_PRESETS:
            return handler(data)  # an unknown preset fails as any value outside its Literal
        filled = {k: v for k, v in MODEL_PRESETS[preset].items() if k not in data}
        model = handler({**data, **filled})
        model._preset_keys = tuple(filled)
        return model

    @model_validator(mode="after")
    def _mlp_activation(self) -> ModelConfig:
        # SwiGLU, the transformer's default, is no activation of the one-hot MLP: unless told
        # otherwise it takes ReLU, as the papers' MLPs have (a SwiGLU asked for is refused).
        if self.arch == "mlp" and "mlp" not in self.model_fields_set:
            self.mlp = "relu"
        return self

    def hidden_dim(self) -> int:
        """The MLP's hidden width, resolving `mlp_dim = 0` to the customary default."""
        if self.mlp_dim:
            return self.mlp_dim
        if self.mlp != "swiglu":
            return 4 * self.dim
        # SwiGLU has three matrices instead of two, so 2/3 of 4*dim keeps the GELU MLP's
        # parameter count; a multiple of 64 keeps the matmuls friendly to tensor cores.
        return math.ceil(8 * self.dim / 3 / 64) * 64


class TrainingConfig(Section):
    """`[training]`: optimisation, precision and schedule."""

    batch_size: Annotated[int, Field(gt=0)] | Literal["full"] = 512
    """Sequences per micro-batch (per optimizer step, before gradient accumulation), or "full":
    the whole training set every step (full-batch training, as Nanda et al., 2023), modular task
    only, without gradient accumulation. A loaded config holds the resolved number."""
    gradient_accumulation: int = Field(1, gt=0)
    """Micro-batches per optimizer step: effective batch = batch_size x gradient_accumulation."""
    seq_len: int | None = Field(None, gt=0)
    """Tokens per sequence. Derived for the modular task (4: a op b =, or 3: a b =) and may
    be omitted there."""
    learning_rate: float = Field(1e-3, gt=0.0)
    """Peak learning rate, reached after warmup."""
    lr_schedule: Literal["cosine", "constant"] = "cosine"
    """After warmup: cosine decay to min_lr_ratio x learning_rate, or constant."""
    min_lr_ratio: float = Field(0.1, ge=0.0, le=1.0)
    """Final learning rate of the cosine schedule, as a fraction of learning_rate."""
    optimizer: Literal["adamw", "adam", "sgd"] = "adamw"
    """adamw: Adam with decoupled weight decay; adam: Adam with weight decay as an L2 term added
    to the gradient (coupled), as Grokfast's experiments used; sgd: SGD with `momentum`."""
    weight_decay: float = Field(1.0, ge=0.0)
    """Weight decay on matrices: decoupled for adamw, an L2 term in the gradient for adam and sgd.
    Grokking needs it large (0.1 to 1 with adamw)."""
    decay_embeddings: bool = False
    """Also decay the embeddings: the token table and, with model.positions = "learned", the
    position table (norm gains and biases: only with decay_all)."""
    decay_all: bool = False
    """Decay every parameter, biases and norm gains included (as torch.optim's own
    `weight_decay` over `model.parameters()` does, in Grokfast's and Nanda et al.'s code)."""
    betas: tuple[float, float] = (0.9, 0.98)
    """Adam and AdamW betas."""
    eps: float = Field(1e-8, gt=0.0)
    """Adam and AdamW epsilon, added to the root of the second moment. Prieto et al. (2025) use
    1e-25 so that the update of a tiny gradient is not damped to nothing."""
    momentum: float = Field(0.0, ge=0.0, lt=1.0)
    """SGD momentum (optimizer = "sgd"; adam and adamw ignore it)."""
    orthograd: bool = False
    """Keep only the part of each gradient orthogonal to its weight tensor, rescaled to the
    gradient's norm (the ⊥Grad of Prieto et al., 2025): a step can no longer just scale up the
    weights, which is how a memorizing model drives its loss towards softmax collapse."""
    loss: Literal["softmax", "stablemax"] = "softmax"
    """Cross-entropy over softmax, or over StableMax (Prieto et al., 2025), whose probabilities
    grow linearly with the logits for positive logits, so a confident prediction keeps a loss and
    a gradient instead of rounding to exactly zero ("softmax collapse")."""
    loss_dtype: Literal["fp32", "fp64"] = "fp32"
    """Precision of the loss: logits are always up-cast before the log-softmax; fp64 as Nanda et
    al.'s code does, so a confident softmax does not round to exactly zero loss and gradient (in
    fp32 it does once the right class leads every other by at least ~17, in fp64 by ~37; more
    with many close competitors)."""
    grad_clip: float = Field(1.0, ge=0.0)
    """Clip the global gradient norm (after unscaling) to this value; 0 disables clipping."""
    steps: int = Field(10_000, gt=0)
    """Optimizer steps of the whole run."""
    warmup_steps: int = Field(10, ge=0)
    """Linear warmup steps at the start of the run."""
    seed: int = Field(0, ge=0)
    """Seed for weights, data split and batch order: the same seed gives the same run."""
    precision: Precision = "auto"
    """auto: bf16 where the GPU supports it, else fp16 with a GradScaler, else fp32 (CPU)."""
    gradient_checkpointing: bool = False
    """Recompute each block's activations in the backward pass: less memory, ~30% more compute."""
    compile: bool = False
    """Compile the model with torch.compile."""
    eval_interval: int = Field(100, gt=0)
    """Optimizer steps between validation passes."""
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto: CUDA when present, else CPU."""
    grokfast: bool = False
    """Grokfast (Lee et al., 2024): add an amplified moving average of past gradients to each
    gradient before the optimizer step, which shortens the memorization plateau."""
    grokfast_alpha: float = Field(0.98, ge=0.0, lt=1.0)
    """Grokfast's EMA momentum: the closer to 1, the slower the amplified gradient component."""
    grokfast_lamb: float = Field(2.0, ge=0.0)
    """Grokfast's amplification: the gradient becomes g + lamb * EMA(g)."""

    # The training-set size that batch_size = "full" resolved to (Config sets it), else None.
    # A batch size changed later (model_copy) no longer equals it, and is no longer "full".
    _full_size: int | None = PrivateAttr(None)

    @field_validator("batch_size", mode="wrap")
    @classmethod
    def _one_batch_size_error(cls, value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
        # The union reports one error per member; one line naming both forms reads better.
        try:
            return handler(value)
        except ValidationError:
            raise ValueError("must be a whole number greater than 0, or 'full'") from None

    @field_serializer("batch_size")
    def _dump_batch_size(self, value: int | str) -> int | str:
        # Dumped as given: settings validated again under other data settings (a sweep trial
        # with its own train_fraction) must resolve "full" afresh, not keep the old number.
        return "full" if self.is_full_batch() else value

    def is_full_batch(self) -> bool:
        """Whether batch_size was given as "full" (the whole training set every step)."""
        return self.batch_size == "full" or self.batch_size == self._full_size

    @model_validator(mode="after")
    def _check(self) -> TrainingConfig:
        if self.batch_size == "full" and self.gradient_accumulation != 1:
            raise KeyProblem(
                "training.batch_size",
                "'full' is the whole training set every step; it needs "
                f"training.gradient_accumulation = 1, got {self.gradient_accumulation}",
            )
        for i, beta in enumerate(self.betas):
            if not 0.0 <= beta < 1.0:
                raise KeyProblem("training.betas", f"betas[{i}] = {beta} must be in [0, 1)")
        if self.warmup_steps > self.steps:
            raise KeyProblem(
                "training.warmup_steps",
                f"{self.warmup_steps} exceeds training.steps = {self.steps}; allowed: 0..steps",
            )
        return self

    def effective_batch_size(self) -> int:
        """Sequences per optimizer step (of a config whose "full" batch is resolved)."""
        return self.batch_size * self.gradient_accumulation  # type: ignore[operator]


class DataConfig(Section):
    """`[data]`: the built-in modular-arithmetic task, or pre-tokenized uint16 files."""

    task: Literal["modular", "tokens"] = "modular"
    """modular: all pairs (a, b) mod p; tokens: train.bin/val.bin (uint16) in `path`."""
    operation: Literal[OPERATIONS] = "add"  # type: ignore[valid-type]
    """Modular task: the operation, one of add, sub, mul, div, x^2+y^2, x^3+xy, x^2+xy+y^2."""
    modulus: int = Field(97, ge=2)
    """Modular task: p; prime for div."""
    train_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    """Modular task: fraction of the table used for training (seeded split); the rest validates."""
    operation_token: bool = True
    """Modular task: an example is [a, op, b, =]; false: [a, b, =], as in Nanda et al. 2023.
    The answer is predicted at the "=" position either way."""
    epoch_batches: bool = False
    """Modular task: cut each epoch's shuffled training pairs into batches of batch_size, the
    last one smaller (torch.split, or a DataLoader without drop_last, as Grokfast's code does);
    false: every batch holds batch_size pairs, drawn on into the next epoch."""
    nonzero_b: bool = False
    """Modular task: leave b = 0 out of the table (b from 1, as Grokfast's code and Power et
    al.'s division tables); div always does."""
    split: Literal["random", "no_mirror"] = "random"
    """Modular task: how pairs are split. random: any pair on either side. no_mirror: (a, b) and
    (b, a) always on the same side. For a commutative operation a random split puts the mirror
    of many training pairs into validation, where they are answered by memory, so validation
    accuracy starts near the train fraction instead of chance; no_mirror removes that leak."""
    path: str | None = None
    """Tokens task: folder holding train.bin and val.bin (see `arbiter prepare-text`)."""

    @model_validator(mode="after")
    def _check(self) -> DataConfig:
        if self.task == "tokens" and not self.path:
            raise KeyProblem("data.path", "required for task = 'tokens' (a folder with train.bin)")
        if self.task == "modular" and self.path is not None:
            raise KeyProblem("data.path", "only applies to task = 'tokens'")
        if (
            self.task == "modular"
            and self.operation in PRIME_OPERATIONS
            and not _is_prime(self.modulus)
        ):
            raise KeyProblem(
                "data.modulus",
                f"{self.modulus} is not prime; operation '{self.operation}' needs a prime modulus",
            )
        return self

    def vocab_size(self) -> int | None:
        """The vocabulary the task implies, or None when it is the model's to say."""
        if self.task != "modular":
            return None
        # the residues 0..p-1, then the operation token (unless left out) and "="
        return self.modulus + (2 if self.operation_token else 1)

    def seq_len(self) -> int | None:
        """The sequence length the task implies, or None when training.seq_len says it."""
        if self.task != "modular":
            return None
        return 4 if self.operation_token else 3  # [a, op, b, =] or [a, b, =]

    def operand_positions(self) -> tuple[int, int]:
        """Where a and b are in the modular task's sequences (see `seq_len`)."""
        return (0, 2) if self.operation_token else (0, 1)

    def table_size(self) -> int:
        """Modular task: the number of pairs (a, b), p * p, or p * (p - 1) without b = 0."""
        p = self.modulus
        return p * (p - 1) if self.operation == "div" or self.nonzero_b else p * p

    def train_size(self) -> int:
        """Modular task: the number of training pairs, round(train_fraction * table_size())."""
        return round(self.train_fraction * self.table_size())


class CheckpointConfig(Section):
    """`[checkpoint]`: how often a run saves itself, and how many saves it keeps."""

    enable: bool = True
    """Write checkpoints (a sweep needs them to resume trials)."""
    interval: int = Field(1000, gt=0)
    """Optimizer steps between checkpoints; the final step is always checkpointed."""
    keep: int = Field(3, gt=0)
    """Newest checkpoints kept on disk; older ones are deleted (milestones excepted)."""
    milestone_interval: int = Field(0, ge=0)
    """Also keep every checkpoint whose step is a multiple of this, for good (0: none): a run
    that groks late can be analysed at its earlier points. A multiple of `interval`."""

    @model_validator(mode="after")
    def _check(self) -> CheckpointConfig:
        if self.milestone_interval % self.interval:
            raise KeyProblem(
                "checkpoint.milestone_interval",
                f"{self.milestone_interval} is not a multiple of checkpoint.interval = "
                f"{self.interval}",
            )
        return self

    def is_milestone(self, step: int) -> bool:
        return self.milestone_interval > 0 and step % self.milestone_interval == 0


class LoggingConfig(Section):
    """`[logging]`: metric reporting."""

    log_interval: int = Field(10, gt=0)
    """Optimizer steps between metric reports (each report is one Tune iteration in a sweep)."""
    enable_tensorboard: bool = True
    """Write TensorBoard event files next to metrics.jsonl."""
    trackers: list[Literal["mlflow", "wandb", "aim"]] = Field(default_factory=list)
    """Experiment trackers that get one run per trial of a sweep, its swept values as parameters
    and every reported metric, live: "mlflow" (a store in the experiment's mlflow/ folder unless
    MLFLOW_TRACKING_URI names a server), "wandb" (online with an API key, or WANDB_MODE=offline
    into the experiment's wandb/ folder), "aim" (a repo in the experiment's aim/ folder). Each
    needs its extra: `pip install 'arbiter[mlflow]'`."""

    @field_validator("trackers")
    @classmethod
    def _once_each(cls, trackers: list[str]) -> list[str]:
        repeated = sorted({t for t in trackers if trackers.count(t) > 1})
        if repeated:
            raise ValueError(f"{repeated[0]!r} is named twice; name each tracker once")
        return trackers


NOTIFY_EVENTS = ("grokked", "errored", "stalled", "finished")


class NotifyConfig(Section):
    """`[notify]`: messages about a sweep through Apprise (Slack, Discord, e-mail, ntfy, ...).
    Off until `urls` names a service; a message that cannot be sent is a warning, never a
    failure of the sweep."""

    urls: list[str] = Field(default_factory=list)
    """Apprise URLs, e.g. "ntfy://my-topic", "slack://TOKEN_A/TOKEN_B/TOKEN_C", "json://host/path"
    (see Apprise's list of services)."""
    on: list[Literal["grokked", "errored", "stalled", "finished"]] = Field(
        default_factory=lambda: list(NOTIFY_EVENTS)
    )
    """The events to send: a trial grokked (its `steps_to_grok`), errored (after its retries),
    stalled (the grokking scheduler's no-progress rule stopped it), and the sweep finished."""

    @field_validator("urls")
    @classmethod
    def _services(cls, urls: list[str]) -> list[str]:
        if urls:
            import apprise  # only for a template that notifies: it takes a while to import

            for url in urls:
                if not apprise.Apprise().add(url):
                    raise ValueError(
                        f"{url!r} is not the URL of a service Apprise knows; allowed: "
                        "SERVICE://..., e.g. ntfy://TOPIC, slack://..., json://HOST/PATH"
                    )
        return urls


class StopRule(Section):
    """`[sweep.stop]`: end a trial once a metric has held a target for `patience` evaluations."""

    metric: str | None = None
    """The metric to watch; defaults to sweep.metric."""
    threshold: float
    """The target: reached when metric >= threshold (mode max) or <= threshold (mode min)."""
    patience: int = Field(1, gt=0)
    """Consecutive evaluations at the target before the trial stops."""


class AshaOptions(Section):
    """`[sweep.asha]`: asynchronous successive halving, judged at rungs measured in steps."""

    grace_period: int = Field(1000, gt=0)
    """Steps every trial runs before it can be stopped."""
    reduction_factor: float = Field(4.0, gt=1.0)
    """Only the best 1/reduction_factor of trials go on at each rung."""


class PbtOptions(Section):
    """`[sweep.pbt]`: population based training over the swept keys."""

    perturbation_interval: int = Field(1000, gt=0)
    """Steps between exploit/explore decisions (a multiple of checkpoint.interval)."""
    quantile_fraction: float = Field(0.25, gt=0.0, le=0.5)
    """The bottom fraction copies the top fraction's checkpoints."""
    resample_probability: float = Field(0.25, ge=0.0, le=1.0)
    """Chance that an explored value is drawn afresh instead of perturbed."""


class MedianOptions(Section):
    """`[sweep.median]`: stop a trial whose metric is below the median of the others."""

    grace_period: int = Field(1000, gt=0)
    """Steps every trial runs before it can be stopped."""
    min_samples_required: int = Field(3, gt=0)
    """Trials that must have reported before the median is used."""


class GrokkingOptions(Section):
    """`[sweep.grokking]`: the grokking-aware scheduler. Unlike ASHA and median stopping it does not
    judge a trial by its early validation accuracy, which is low in every run that groks late.

    A trial stops once it has grokked (validation accuracy >= `threshold` for `patience`
    evaluations). Before `fit_budget` steps every trial runs. After it, a trial goes on while it
    makes progress over the last `window` steps: the norm of its decayed weights
    (`decayed_weight_norm`) fell by at least `min_norm_drop` (relative) or its validation accuracy
    rose by at least `min_val_gain`; a trial that has memorized and still shrinks its weights is
    on the way to grokking.
    """

    threshold: float = Field(0.99, gt=0.0, le=1.0)
    """Validation accuracy that counts as grokked."""
    patience: int = Field(2, gt=0)
    """Consecutive evaluations at the threshold before a grokked trial stops."""
    fit_budget: int = Field(2000, gt=0)
    """Steps every trial runs before it can be stopped for lack of progress."""
    window: int = Field(1000, gt=0)
    """Steps over which progress (a falling weight norm, a rising val accuracy) is judged."""
    min_norm_drop: float = Field(0.02, ge=0.0, lt=1.0)
    """Relative fall of `decayed_weight_norm` over `window` that counts as progress."""
    min_val_gain: float = Field(0.02, ge=0.0, le=1.0)
    """Rise of validation accuracy over `window` that counts as progress."""


class Budget(Section):
    """`[sweep.budget]`: every trial at one parameter budget, one size key derived per trial.

    The swept values are applied first; then `derive` is set to the value whose model has the
    parameter count (embeddings and output layer included, as `--dry-run` counts them) nearest
    `params`. `model.dim` steps by the head size and n_heads follows it (dim / head size);
    `model.n_layers` steps by one layer. A trial that lands further than `tolerance` from the
    budget is an error before the sweep starts. Depth against width at equal budgets: sweep
    `model.n_layers` and derive `model.dim`.
    """

    params: float = Field(gt=0)
    """The parameter budget, e.g. 25e6."""
    derive: Literal["model.dim", "model.n_layers"] = "model.dim"
    """The size key set per trial to meet the budget; it cannot also be swept."""
    head_size: int | None = Field(None, gt=0)
    """The head size a derived width keeps: dim is a multiple of it, n_heads = dim / head_size.
    Default: the trial's own dim / n_heads. A smaller one sizes small models more finely."""
    tolerance: float = Field(0.05, gt=0.0)
    """The largest relative distance from the budget a trial may land at (0.05: 5%)."""

    def deviation(self, params: int) -> float:
        """Relative distance of `params` from the budget: +0.02 is 2% over it."""
        return params / self.params - 1


# 1/K rounded down to Ray's resource unit (1/10,000) admits exactly K trials per GPU up to 99.
MAX_TRIALS_PER_GPU = 64


class SweepConfig(Section):
    """`[sweep]`: how a template becomes trials on Ray Tune."""

    metric: str = "val/accuracy"
    """The reported metric that ranks trials."""
    mode: Literal["max", "min"] = "max"
    """Whether a larger or a smaller metric is better."""
    strategy: Literal["grid", "random", "optuna"] = "grid"
    """grid: lists are grid axes, distributions drawn per point; random/optuna draw every axis."""
    scheduler: Literal["fifo", "asha", "pbt", "median", "grokking"] = "fifo"
    """Trial scheduler: fifo runs every trial to its end; the others stop or perturb trials
    (grokking: stops grokked trials and trials that stopped progressing, see [sweep.grokking])."""
    num_samples: int = Field(1, gt=0)
    """grid: repetitions of the whole grid; random/optuna: number of trials."""
    max_failures: int = Field(3, ge=0)
    """Retries of a failed trial from its last checkpoint."""
    trials_per_gpu: int | Literal["auto"] = 1
    """Trials sharing one GPU, each reserving 1/K of it (`--trials-per-gpu` wins); "auto": as
    many of the largest trial as fit in the smallest GPU's free memory, at most 16."""
    seed: int = Field(0, ge=0)
    """Seed for drawing random search points."""
    budget: Budget | None = None
    """Equal-budget trials: `{ params = 25e6, derive = "model.dim" }` sizes each trial to the
    budget (see [sweep.budget])."""
    stop: StopRule | None = None
    """Stop rule for each trial, e.g. `{ threshold = 0.99, patience = 3 }` (grokked and held)."""
    asha: AshaOptions = Field(default_factory=AshaOptions)
    pbt: PbtOptions = Field(default_factory=PbtOptions)
    median: MedianOptions = Field(default_factory=MedianOptions)
    grokking: GrokkingOptions = Field(default_factory=GrokkingOptions)
    space: dict[str, Any] = Field(default_factory=dict)
    """Swept keys: `"dotted.key" = [grid values]` or `"dotted.key" = { distribution = [args] }`."""

    @field_validator("trials_per_gpu", mode="before")
    @classmethod
    def _check_trials_per_gpu(cls, value: object) -> object:
        whole = isinstance(value, int) and not isinstance(value, bool)
        if value == "auto" or (whole and 1 <= value <= MAX_TRIALS_PER_GPU):
            return value
        raise ValueError(
            f"must be a whole number from 1 to {MAX_TRIALS_PER_GPU} or 'auto', got {value!r}"
        )

    @model_validator(mode="after")
    def _check_space(self) -> SweepConfig:
        self.axes()
        if self.budget and self.budget.derive in self.space:
            raise KeyProblem(
                "sweep.budget.derive",
                f"{self.budget.derive} is set by the budget and cannot also be swept; allowed: "
                "a size key the space leaves alone",
            )
        return self

    def axes(self) -> dict[str, Axis]:
        """The parsed axes of the space (kept raw above so the template round-trips)."""
        return parse_space(self.space, prefix="sweep.space")

    def points(self) -> list[dict[str, Any]]:
        """Every trial's swept values, in order (see `space.expand`)."""
        return expand(self.axes(), self.strategy, self.num_samples, self.seed)


class Config(Section):
    """A whole run (the `[sweep]` table only in templates)."""

    description: str = ""
    """One line saying what this configuration is for, shown by `arbiter templates`."""
    model: ModelConfig = Field(default_factory=ModelConfig)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    data: DataConfig = Field(default_factory=DataConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    sweep: SweepConfig | None = None

    @model_validator(mode="after")
    def _check(self) -> Config:
        self._check_derived("model.vocab_size", self.model.vocab_size, self.data.vocab_size())
        self._check_derived("training.seq_len", self.training.seq_len, self.data.seq_len())
        model = self.model
        if self.data.task == "tokens" and self.vocab_size() > MAX_TOKEN_VOCAB:
            raise KeyProblem(
                "model.vocab_size",
                f"{model.vocab_size} does not fit uint16 token files; "
                f"allowed: up to {MAX_TOKEN_VOCAB}",
            )
        if model.arch == "mlp":
            self._check_mlp()
        elif model.dim % model.n_heads:
            raise KeyProblem(
                "model.n_heads",
                f"model.dim = {model.dim} is not divisible by n_heads = {model.n_heads}",
            )
        elif model.positions == "rope" and (model.dim // model.n_heads) % 2:
            raise KeyProblem(
                "model.n_heads",
                f"head size dim / n_heads = {model.dim // model.n_heads} is odd; "
                "rotary embeddings need it even (model.positions = 'learned' does not)",
            )
        if self.training.is_full_batch():
            self._resolve_full_batch()
        if self.sweep is not None:
            for key in self.sweep.space:
                check_sweepable(key)
            self._check_scheduler(self.sweep)
        return self

    def _check_mlp(self) -> None:
        if self.data.task != "modular":
            raise KeyProblem(
                "model.arch",
                f"'mlp' predicts one answer per sequence and needs data.task = 'modular', not "
                f"'{self.data.task}'; allowed for '{self.data.task}': 'transformer'",
            )
        if self.model.mlp == "swiglu":
            raise KeyProblem(
                "model.mlp",
                "'swiglu' is not an activation of model.arch = 'mlp'; allowed: 'relu', 'gelu'",
            )
        if self.model.dropout:
            raise KeyProblem(
                "model.dropout",
                f"{self.model.dropout} does not apply to model.arch = 'mlp' (it has no dropout); "
                "allowed: 0",
            )
        if self.training.gradient_checkpointing:
            raise KeyProblem(
                "training.gradient_checkpointing",
                "does not apply to model.arch = 'mlp' (nothing worth recomputing); allowed: false",
            )

    def _resolve_full_batch(self) -> None:
        """batch_size = "full" becomes the number of training pairs, so that every reader of
        the config sees a number; dumps still say "full" (see TrainingConfig)."""
        if self.data.task != "modular":
            raise KeyProblem(
                "training.batch_size",
                f"'full' needs data.task = 'modular'; the '{self.data.task}' task has no fixed "
                "training set: give a number of sequences",
            )
        # At least 1: a fraction that leaves no training pairs is the data's error to report.
        size = max(self.data.train_size(), 1)
        # A copy: a TrainingConfig instance passed in by a caller is not changed under it.
        self.training = self.training.model_copy(update={"batch_size": size})
        self.training._full_size = size

    def _check_scheduler(self, sweep: SweepConfig) -> None:
        """Scheduler options must fit the run: rungs within its steps, checkpoints for PBT."""
        grace = {
            "asha": ("grace_period", sweep.asha.grace_period),
            "median": ("grace_period", sweep.median.grace_period),
            "grokking": ("fit_budget", sweep.grokking.fit_budget),
        }
        if sweep.scheduler in grace and grace[sweep.scheduler][1] > self.training.steps:
            name, value = grace[sweep.scheduler]
            raise KeyProblem(
                f"sweep.{sweep.scheduler}.{name}",
                f"{value} exceeds training.steps = {self.training.steps}",
            )
        if sweep.scheduler != "pbt":
            return
        if not self.checkpoint.enable:
            raise KeyProblem("checkpoint.enable", "scheduler 'pbt' needs checkpoints")
        if sweep.pbt.perturbation_interval % self.checkpoint.interval:
            raise KeyProblem(
                "sweep.pbt.perturbation_interval",
                f"{sweep.pbt.perturbation_interval} is not a multiple of checkpoint.interval = "
                f"{self.checkpoint.interval}",
            )
        if not sweep.space:
            raise KeyProblem("sweep.space", "scheduler 'pbt' needs swept keys to mutate")
        fixed = [key for key in sweep.space if key not in PBT_MUTABLE]
        if fixed:
            raise KeyProblem(
                f"sweep.space.{fixed[0]}",
                "scheduler 'pbt' cannot change it (an exploited trial continues from another "
                f"trial's checkpoint); PBT can mutate {', '.join(PBT_MUTABLE)}",
            )

    def _check_derived(self, key: str, given: int | None, implied: int | None) -> None:
        """A value the task implies may be omitted but not contradicted; else it is required."""
        if implied is None and given is None:
            raise KeyProblem(key, f"required for data.task = '{self.data.task}'")
        if implied is not None and given is not None and given != implied:
            raise KeyProblem(
                key,
                f"{given} contradicts data.task = '{self.data.task}', "
                f"which implies {implied}; omit it",
            )

    def vocab_size(self) -> int:
        """The vocabulary size: the task's when it implies one, else model.vocab_size."""
        return self.data.vocab_size() or self.model.vocab_size  # type: ignore[return-value]

    def seq_len(self) -> int:
        """The sequence length: the task's when it implies one, else training.seq_len."""
        return self.data.seq_len() or self.training.seq_len  # type: ignore[return-value]

    def run_settings(self) -> dict[str, Any]:
        """The run's settings as plain data, without `[sweep]` and the keys `model.preset`
        filled in (validating them fills them again): the base every trial overrides."""
        settings = self.model_dump(mode="json", exclude={"sweep"})
        for key in self.model._preset_keys:
            del settings["model"][key]
        return settings


def check_sweepable(dotted: str) -> None:
    """A swept key must name a run setting (not `[sweep]` itself, not a whole table)."""
    where = f'sweep.space."{dotted}"'
    parts = dotted.split(".")
    node: type[BaseModel] = Config
    for depth, part in enumerate(parts):
        fields = node.model_fields
        if part not in fields or part in ("sweep", "description", "notify"):
            allowed = ", ".join(f for f in fields if f not in ("sweep", "description", "notify"))
            prefix = ".".join(parts[:depth])
            raise KeyProblem(
                where,
                f"'{dotted}' is not a config key; "
                f"allowed under {prefix or 'the top level'}: {allowed}",
            )
        annotation = fields[part].annotation
        is_table = isinstance(annotation, type) and issubclass(annotation, BaseModel)
        last = depth == len(parts) - 1
        if is_table == last:
            what = "a whole table" if last else "not a table"
            raise KeyProblem(
                where, f"'{dotted}' is {what}; sweep one key such as 'training.weight_decay'"
            )
        if is_table:
            node = annotation


def _is_prime(n: int) -> bool:
    return n >= 2 and all(n % d for d in range(2, int(n**0.5) + 1))
