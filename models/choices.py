"""The named choices of the model configs, as `Literal` types, and the check that a config's
value is one of them (a dataclass does not check its annotations by itself)."""

from __future__ import annotations

from typing import Any, Literal, get_args

Activation = Literal["swiglu", "gelu", "relu"]
MLPActivation = Literal["relu", "gelu"]  # the one-hot MLP's hidden layers are not gated
Norm = Literal["rmsnorm", "layernorm", "none"]
BlockKind = Literal["pre_norm", "norm_stream", "post_norm"]
Positions = Literal["rope", "learned", "sinusoidal"]
Init = Literal["gpt2", "nanda", "torch", "torch_linear"]


def check_choices(config: Any, **kinds: Any) -> None:
    """Raise ValueError unless each field named in `kinds` holds one of its Literal's values."""
    for name, kind in kinds.items():
        allowed = get_args(kind)
        value = getattr(config, name)
        if value not in allowed:
            listed = ", ".join(repr(a) for a in allowed)
            raise ValueError(f"{name} must be one of {listed}, got {value!r}")
