"""``SearchConfig``: which strategy searches, with what budget; and the budget rule.

Budgets. ``epochs`` is a one-shot supernet's training epochs; a multi-trial strategy gets
``trials`` architectures of ``trial_epochs`` epochs each. :func:`equal_budget` sizes a
multi-trial search to the same number of passes over the training data as a one-shot search.
:func:`searched_space` is the space a strategy samples from.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ser_space import SpaceConfig
from ser_space.dictconfig import DictConfig

from .. import compat
from .registry import get_strategy

__all__ = ["SearchConfig", "equal_budget", "searched_space", "ZERO_OP"]


@dataclass(frozen=True)
class SearchConfig(DictConfig):
    """How the architecture search runs (the strategy and its budget)."""

    strategy: str = "darts"  # registry name: darts, enas, gumbel_darts, random_oneshot, random, evolution, tpe, grid, policy_rl
    epochs: int = 50  # one-shot: supernet training epochs
    arc_learning_rate: float = 3e-4  # DARTS architecture (alpha) Adam learning rate
    gradient_clip: float | None = 5.0  # one-shot weight-step gradient clipping
    warmup_epochs: int = 0  # one-shot epochs before architecture updates start
    order: Literal["first", "second"] = "first"  # DARTS approximation order
    smoothing: float = 0.0  # darts: SDARTS-RS, the largest uniform perturbation of the architecture weights (after the softmax) in each weight step, ramped up from a tenth of it over the search (SDARTS: 0.3); 0 = plain DARTS
    candidates: int = 16  # random_oneshot: random paths scored on the validation split after each epoch; the best is kept
    genotype: Literal["best", "last"] = "last"  # one-shot: last epoch's architecture (DARTS) or best val UA (authors)
    arch_speakers: int | None = None  # speakers whose utterances steer the architecture (alphas, rewards, trial scores): None = the fold's validation speakers; more move seeded training speakers over from the weights (strategies.search.split)
    rotate_arch_speakers: bool = False  # one-shot: a different group of speakers (arch_speakers of them, or the fold's validation count) steers the architecture in each epoch, every non-test speaker in turn; the others train the weights
    channels: int | None = None  # supernet width C while searching (DARTS searches narrower than it retrains); None = the space's
    trials: int = 8  # multi-trial: architectures trained
    trial_epochs: int = 5  # multi-trial: epochs per architecture
    trial_concurrency: int = 1  # multi-trial: trials run at once
    training_service: str = "local"  # multi-trial: NNI training service, local or remote (others: training_service_config)
    trial_gpu_number: int = 0  # multi-trial: GPUs given to each trial (0 = CPU-only trials)
    remote_machines: tuple[str, ...] = ()  # remote: trial machines, each user@host:port
    remote_ssh_key: str | None = None  # remote: SSH private key file; None = ~/.ssh/id_rsa
    remote_python: str | None = None  # remote: Python interpreter path on the trial machines; None = this one's
    nni_manager_ip: str | None = None  # remote/cluster: this machine's address as trial machines reach it; None = auto
    training_service_config: str | None = None  # JSON/YAML file with an NNI training-service config (kubeflow, ...)
    port: int = 0  # NNI web UI port; 0 = a free port
    webui_host: str | None = None  # where the NNI manager listens: None = 127.0.0.1 (or what remote trials need); 0.0.0.0 = every interface, unauthenticated
    webui: bool = False  # one-shot: run the search as a trial of an NNI experiment, shown in the web UI (CLI: on)
    seed: int = 2  # seed of the run: the search (supernet weights, batch order, sampling) and, on the command line, both trainings too unless --search-train-seed or --retrain-seed says otherwise

    def __post_init__(self) -> None:
        get_strategy(self.strategy)
        if self.epochs < 1 or self.trials < 1 or self.trial_epochs < 1 or self.candidates < 1:
            raise ValueError("epochs, trials, trial_epochs and candidates must be >= 1")
        if self.channels is not None and (self.channels < 2 or self.channels % 2):
            raise ValueError(f"channels must be an even number >= 2 or None, got {self.channels}")
        if self.webui_host is not None:
            compat.check_manager_host(self.webui_host)
        if self.order not in ("first", "second"):
            raise ValueError(f"order must be 'first' or 'second', got {self.order!r}")
        if self.order == "second" and self.strategy != "darts":
            raise ValueError("order='second' is only available for the darts strategy")
        if isinstance(self.smoothing, bool) or not isinstance(self.smoothing, (int, float)) or not 0 <= self.smoothing < 1:
            raise ValueError(f"--smoothing must be a perturbation bound in [0, 1), got {self.smoothing!r}")
        if self.smoothing and self.strategy != "darts":
            raise ValueError(f"--smoothing (SDARTS-RS) is an option of the darts strategy, not {self.strategy}")
        if self.genotype not in ("best", "last"):
            raise ValueError(f"genotype must be 'best' or 'last', got {self.genotype!r}")
        if self.arch_speakers is not None and (isinstance(self.arch_speakers, bool) or not isinstance(
                self.arch_speakers, int) or self.arch_speakers < 1):
            raise ValueError(f"--arch-speakers must be a whole number of speakers >= 1, got {self.arch_speakers!r}")
        if self.rotate_arch_speakers and get_strategy(self.strategy).kind != "oneshot":
            raise ValueError(f"--rotate-arch-speakers: {self.strategy} trains one architecture per trial, scored once; "
                             f"a rotation needs a one-shot strategy (darts, gumbel_darts, enas, random_oneshot)")
        self._check_training_service()

    def _check_training_service(self) -> None:
        from ..training_service import PLATFORMS, parse_machine

        # JSON round trips give lists; keep the field a tuple (hashable, as typed)
        object.__setattr__(self, "remote_machines", tuple(self.remote_machines or ()))
        if self.trial_concurrency < 1:
            raise ValueError(f"trial_concurrency must be >= 1, got {self.trial_concurrency}")
        if self.trial_gpu_number < 0:
            raise ValueError(f"trial_gpu_number must be >= 0, got {self.trial_gpu_number}")
        if self.training_service_config is None and self.training_service not in PLATFORMS:
            raise ValueError(f"training_service {self.training_service!r}: choose local or remote, or give "
                             f"training_service_config (a JSON/YAML NNI training-service config file)")
        if self.training_service == "remote" and self.training_service_config is None and not self.remote_machines:
            raise ValueError("training_service 'remote' needs remote_machines (user@host:port,...)")
        for machine in self.remote_machines:
            parse_machine(machine)


def equal_budget(config: SearchConfig, trial_epochs: int | None = None) -> SearchConfig:
    """A multi-trial config with as many training passes as ``config.epochs`` one-shot epochs.

    A DARTS epoch makes one weight pass over the training split and one architecture pass
    over the validation split through a supernet that evaluates every candidate; counting
    it as two passes, ``trials * trial_epochs ~= 2 * epochs``.
    """
    per_trial = trial_epochs or config.trial_epochs
    return config.replace(trial_epochs=per_trial, trials=max(1, round(2 * config.epochs / per_trial)))


ZERO_OP = "none"


def searched_space(space_config: SpaceConfig, strategy: str) -> SpaceConfig:
    """The space a strategy samples from: without the zero op, unless it is differentiable.

    The zero op (``none``) is DARTS's relaxation device: a supernet weight for "no edge",
    never part of a found network (the DARTS derivation skips it). A strategy that samples
    whole architectures (ENAS, Random, evolution, TPE) would otherwise pick it as an op, and an
    edge set to zero can cut a cell, or the sequence part, off the classifier: on EmoDB, ENAS
    exported such networks and they tested at chance. Without it every strategy chooses from
    the same final networks. The labels stay the same, so what is found is a point of the
    full space and validates against it.
    """
    spec = get_strategy(strategy)
    if spec.kind == "oneshot" and not spec.sampling:
        return space_config
    changes = {name: tuple(op for op in getattr(space_config, name) if op != ZERO_OP)
               for name in ("cnn_ops", "seq_ops") if ZERO_OP in getattr(space_config, name)}
    return space_config.replace(**changes) if changes else space_config
