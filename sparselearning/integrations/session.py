"""One method's `Masking` driven by a trainer that owns `optimizer.step()` (Lightning, the Hugging Face Trainer).

In a hand-written loop `masking.step()` replaces `optimizer.step()`. A trainer calls `optimizer.step()` itself,
after its own backward pass, gradient unscaling, clipping and accumulation, so a session routes that call: while
it is active, the optimizer's `step` runs `masking.step()`, which masks gradients, steps the optimizer through its
original method and, on an update step, changes the masks instead (as RigL does). Whatever decides when the
optimizer steps (accumulation, a GradScaler skipping non-finite steps) therefore decides when masks advance, so
the masking counts optimizer steps, never micro-batches.

The framework callbacks (`sparselearning.integrations.lightning`, `sparselearning.integrations.hf`) are thin:
they build a session at the start of fitting, save its state with the framework's checkpoints and log
`metrics()`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from sparselearning import method_table, methods
from sparselearning.core import Masking
from sparselearning.counting.tracker import FlopsTracker, track_flops
from sparselearning.errors import SparseLearningError, first_line
from sparselearning.masking.observers import MaskObserver
from sparselearning.masking.topology import TopologyChange
from sparselearning.misuse import warn_user
from sparselearning.stats import itop_rate

STATE_VERSION = 1


def weight_fingerprint(masking: Masking) -> dict[str, float]:
    """Per masked weight, the float64 sum of its values: ties a saved masking state to the weights it was
    saved beside, so that masks are never restored onto another run's weights."""
    return {name: float(record.parameter.detach().double().sum()) for name, record in masking.records.items()}


@contextlib.contextmanager
def unchanged_by(model: nn.Module, optimizer: torch.optim.Optimizer) -> Iterator[None]:
    """Undo whatever the block does to the model's parameters and the optimizer's state tensors.

    Building a `Masking` draws initial masks and zeroes weights and momentum outside them; when a trainer has
    already restored a checkpoint's weights and optimizer state, those must survive until the saved masks are
    loaded in their place. Costs one copy of the parameters and the optimizer state, on resume only.
    """
    parameters = [(p, p.detach().clone()) for p in model.parameters()]
    state = [
        (value, value.detach().clone())
        for per_parameter in optimizer.state.values()
        for value in per_parameter.values()
        if isinstance(value, torch.Tensor)
    ]
    yield
    with torch.no_grad():
        for tensor, saved in parameters + state:
            tensor.copy_(saved)


class TopologyWatch(MaskObserver):
    """Notes when the masks changed: an update, a restore, a layer no longer masked.

    The density a trainer logs changes only then. `Masking.stats` re-checks every weight whenever the weights
    moved since the last read, which after an optimizer step means a full pass over the model. A trainer logs
    every step, so the session reads `stats` only after a change and never on the per-step path.
    """

    def __init__(self) -> None:
        self.changed = True

    def after_update(self, change: TopologyChange) -> None:
        self.changed = True

    def after_restore(self, masks: Any, step: int, saved: Any) -> None:
        self.changed = True

    def forget(self, name: str) -> None:
        self.changed = True


class RoutedStep:
    """Replaces `optimizer.step` on the instance so that a trainer's call runs `masking.step()`.

    Calls made by the masking itself (to step the optimizer for real) go to the original method. `remove()`
    puts the original back. A framework that temporarily patches `optimizer.step` and restores what it saw
    first (Accelerate under float16) can drop the routing: `ensure()` reinstalls it.
    """

    def __init__(self, masking: Masking) -> None:
        self.masking = masking
        self.optimizer = masking.optimizer
        self.original: Callable[..., Any] = self.optimizer.step
        self._inside = False
        self.optimizer_steps = 0
        self.ensure()

    def __call__(self, closure: Callable[[], Any] | None = None) -> Any:
        if self._inside:  # the masking stepping the optimizer
            return self.original() if closure is None else self.original(closure)
        loss = None
        if closure is not None:  # a trainer that runs forward and backward inside the step (Lightning)
            with torch.enable_grad():
                loss = closure()
        self._inside = True
        try:
            self.masking.step()
        finally:
            self._inside = False
        self.optimizer_steps += 1
        return loss

    def ensure(self) -> None:
        """Route `optimizer.step` through the masking (again, if something replaced the routing)."""
        if self.optimizer.__dict__.get("step") is not self:
            self.optimizer.step = self  # type: ignore[method-assign]

    def remove(self) -> None:
        """Give the optimizer its own `step` back."""
        if self.optimizer.__dict__.get("step") is self:
            del self.optimizer.step


class SparseSession:
    """A method from the method table, built on a trainer's model and optimizer when fitting starts.

    :param method: a name of `sparselearning.method_table` (`"RigL"`, `"SET"`, `"SNFS"`, `"Static"`, ...)
    :param density: the active fraction of the masked weights; None for methods without one (Dense)
    :param options: that method's options (`update_frequency`, `sparse_init`, `exclude`, `total_steps`, ...), as
        `sparselearning.methods.build` takes them
    """

    def __init__(self, method: str, density: float | None = None, **options: Any) -> None:
        entry = method_table.get(method)  # an unknown name is refused now, not when fitting starts
        self.method = entry.name
        self.density = density
        self.options = dict(options)
        self.masking: Masking | None = None
        self.routing: RoutedStep | None = None
        self.flops: FlopsTracker | None = None
        self._logged_step = -1
        self._watch = TopologyWatch()
        self._density = 0.0

    def start(
        self,
        model: nn.Module,
        optimizer: torch.optim.Optimizer,
        total_steps: int | None,
        saved: dict[str, Any] | None = None,
    ) -> Masking:
        """Build the masking on `model` and `optimizer` and route the optimizer's steps through it.

        :param total_steps: the trainer's number of optimizer steps (the `total_steps` option overrides it)
        :param saved: what `state_dict()` returned in the run being resumed: its masks replace the initial ones,
            and the model's weights and optimizer state (already restored by the trainer) are kept
        """
        if self.masking is not None:
            raise SparseLearningError("this sparse-training callback is already attached to a fit; use a new one")
        options = dict(self.options)
        if self.density is not None:
            options["density"] = self.density
        if options.get("total_steps") is None and total_steps is not None and total_steps > 0:
            options["total_steps"] = int(total_steps)
        if saved is None:
            masking = methods.build(self.method, model, optimizer, **options)
        else:
            check_saved(saved)
            with unchanged_by(model, optimizer):
                masking = methods.build(self.method, model, optimizer, **options)
            check_fingerprint(masking, saved)
            masking.load_state_dict(saved["masking"])
        masking.add_observer(self._watch)
        self.masking = masking
        self.routing = RoutedStep(masking)
        return masking

    def try_tracking_flops(self, example_input: torch.Tensor | None) -> None:
        """Count inference FLOPs on the first example of `example_input` from now on; when there is no input or
        the model does not take it positionally, warn once that FLOPs are not logged (never fail the fit)."""
        masking = self.started()
        if example_input is None:
            warn_user("sparse training: no example input to count FLOPs on; pass example_input= to log them")
            return
        try:
            self.flops = track_flops(masking, example_input[:1])
        except Exception as error:  # a model whose forward does not take one positional tensor
            warn_user(
                f"sparse training: FLOPs are not logged, the model did not run on the example input "
                f"({type(error).__name__}: {first_line(error)}); pass example_input="
            )

    def stop(self) -> None:
        """Give the optimizer its own `step` back (the masks stay as they are)."""
        if self.routing is not None:
            self.routing.remove()

    def state_dict(self) -> dict[str, Any]:
        """The masking's state and the fingerprint of the weights beside it (weights_only-safe)."""
        masking = self.started()
        return {
            "version": STATE_VERSION,
            "method": self.method,
            "masking": masking.state_dict(),
            "fingerprint": weight_fingerprint(masking),
        }

    def started(self) -> Masking:
        if self.masking is None:
            raise SparseLearningError("sparse training has not started: the masking is built when fitting starts")
        return self.masking

    def metrics(self) -> dict[str, float]:
        """Density, ITOP rate and (when tracked) inference FLOPs as a fraction of dense, for the trainer's logger."""
        masking = self.started()
        if self._watch.changed:  # density moves only when the masks do
            self._density = masking.stats.total_density
            self._watch.changed = False
        values = {"sparsity/density": self._density}
        itop = itop_rate(masking.ever_active_count, masking.total_params)
        if itop is not None:
            values["sparsity/itop_rate"] = itop
        if self.flops is not None:
            sparse, dense = self.flops.inference_flops()
            values["sparsity/inference_flops"] = sparse / dense if dense else 1.0
        values["sparsity/mask_step"] = float(masking.mask_step)
        return values

    def new_step(self) -> bool:
        """Whether the optimizer stepped since the last call (so metrics are logged once per optimizer step)."""
        step = self.started().mask_step
        fresh = step != self._logged_step
        self._logged_step = step
        return fresh


def first_tensor(batch: Any) -> torch.Tensor | None:
    """The tensor a batch leads with (the batch itself, the first of a sequence, the first value of a mapping)."""
    if isinstance(batch, torch.Tensor):
        return batch
    if isinstance(batch, (list, tuple)) and batch:
        return first_tensor(batch[0])
    if isinstance(batch, dict) and batch:
        return first_tensor(next(iter(batch.values())))
    return None


def check_saved(saved: Any) -> None:
    """Refuse, in one line, a saved session state that is not one."""
    if not isinstance(saved, dict) or not isinstance(saved.get("masking"), dict):
        raise SparseLearningError("not a sparse-training state: expected what SparseSession.state_dict() saves")
    if saved.get("version") != STATE_VERSION:
        raise SparseLearningError(
            f"sparse-training state version {saved.get('version')!r} is not supported; this version reads "
            f"{STATE_VERSION}"
        )


def check_fingerprint(masking: Masking, saved: dict[str, Any]) -> None:
    """Refuse to restore masks onto weights other than the ones they were saved with."""
    expected = saved.get("fingerprint")
    if not isinstance(expected, dict):
        raise SparseLearningError("sparse-training state has no weight fingerprint")
    found = weight_fingerprint(masking)
    if set(expected) != set(found):
        raise SparseLearningError(f"saved masks are for weights {sorted(expected)}, this model masks {sorted(found)}")
    differing = [name for name in found if found[name] != expected[name]]
    if differing:
        raise SparseLearningError(
            f"the saved masks belong to other weights than the checkpoint restored ({differing[0]} differs): "
            "resume from the masks saved with the same checkpoint"
        )
