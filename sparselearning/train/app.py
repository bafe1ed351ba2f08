"""The Hydra application behind `sparselearning train`: compose the config, train, print the results."""

from __future__ import annotations

import sys
import warnings
from pathlib import Path
from typing import Any, NoReturn

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sparselearning.conf import schema
from sparselearning.errors import SparseLearningError, SparseLearningWarning, first_line, one_line, print_failure
from sparselearning.runs import naming
from sparselearning.train import distributed
from sparselearning.train.stopping import StopRequested

naming.register()  # ${sl_run_hash:} in the default run and sweep directories
schema.register()  # the typed settings, as schema/<group>/<option> in Hydra's ConfigStore


def _all_weights(summary: dict[str, Any]) -> str:
    """The nonzero fraction of every weight tensor of the model, masked or not (what `density` leaves out)."""
    fraction, nonzero, total = (summary.get(key) for key in ("weight_density", "weight_nonzero", "weight_total"))
    if not isinstance(fraction, (int, float)):
        return "not recorded"
    return f"{fraction:.4f} nonzero ({nonzero} of {total} weights in all weight tensors, masked or not)"


def _warn_in_one_line(message: Warning | str, category: type[Warning], *args: object, **kwargs: object) -> None:
    """Show a library warning as one `warning:` line on stderr (rank 0 only), not Python's two-line format."""
    if distributed.rank_and_world()[0] == 0:
        print(f"warning: {one_line(str(message))}", file=sys.stderr)


def format_results(summary: dict[str, Any], run_dir: Path, plots: bool = True) -> str:
    """The short table printed at the end of a run."""
    rows = [
        ("test accuracy", f"{summary['test_accuracy']:.4f}   (top-5 {summary['test_top5']:.4f})"),
        ("validation acc.", f"{summary['val_accuracy']:.4f}"),
        ("density", f"{summary['density']:.4f}   ({summary['active_weights']} of {summary['masked_weights']} weights)"),
        ("all weights", _all_weights(summary)),
        ("inference FLOPs", f"{summary['inference_flops']:.4f} of dense"),
        ("training FLOPs", f"{summary['train_flops']:.4f} of dense"),
        ("wall time", f"{summary['wall_time_s']:.1f} s over {summary['epochs']} epochs"),
        ("run directory", str(run_dir)),
    ]
    if plots:
        rows.append(("plots", f"{run_dir / 'plots' / 'training_curves.png'}, layer_density.png"))
    title = f"{summary['method']} on {summary['dataset']} / {summary['model']} (seed {summary['seed']})"
    return "\n".join([title, *(f"  {name:<17}{value}" for name, value in rows)])


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one configuration; returns the test accuracy (for Hydra sweepers)."""
    from sparselearning.train.loop import train
    from sparselearning.train.settings import check_config

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    joined = False
    rank = 0
    plots = True
    try:
        config = check_config(cfg)
        plots = config.plots
        joined = distributed.init_from_environment(config.distributed_timeout_s)
        rank = distributed.rank_and_world()[0]
        with warnings.catch_warnings():
            warnings.simplefilter("default", SparseLearningWarning)
            warnings.showwarning = _warn_in_one_line
            summary = train(cfg, run_dir)
    except SparseLearningError as error:
        _fail(str(error), 2)
    except StopRequested as stop:
        _fail(str(stop), stop.exit_status, prefix="stopped")
    except KeyboardInterrupt:
        _fail("interrupted (Ctrl-C) before the run could save; nothing after its last checkpoint is kept", 130)
    except OSError as error:  # an unwritable run directory, a full disk
        _fail(f"cannot write the run directory {run_dir}: {error.strerror or error}", 2)
    except RuntimeError as error:
        if not joined:
            raise
        # Under torchrun a lost rank surfaces as a collective that timed out or a closed connection.
        first = first_line(error, limit=None).split("] ", 1)[-1][:200]  # gloo prefixes its source location
        _fail(f"a collective operation failed (another process stopped or died?): {first}", 3)
    finally:
        if joined:
            distributed.shutdown()
    if rank == 0:
        print(format_results(summary, run_dir, plots=plots))
    return float(summary["test_accuracy"])


def _fail(message: str, status: int, prefix: str = "error") -> NoReturn:
    """Exit with `status` after one `<prefix>: ...` line on stderr (`stopped: ...` for a signal); the
    traceback instead with SPARSELEARNING_TRACEBACK=1. Called while handling the exception."""
    sys.exit(print_failure(message, status, prefix))
