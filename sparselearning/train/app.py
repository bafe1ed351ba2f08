"""The Hydra application behind `sparselearning train`: compose the config, train, print the results."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from sparselearning.errors import SparseLearningError
from sparselearning.train import distributed


def format_results(summary: dict[str, Any], run_dir: Path) -> str:
    """The short table printed at the end of a run."""
    rows = [
        ("test accuracy", f"{summary['test_accuracy']:.4f}   (top-5 {summary['test_top5']:.4f})"),
        ("validation acc.", f"{summary['val_accuracy']:.4f}"),
        ("density", f"{summary['density']:.4f}   ({summary['active_weights']} of {summary['masked_weights']} weights)"),
        ("inference FLOPs", f"{summary['inference_flops']:.4f} of dense"),
        ("training FLOPs", f"{summary['train_flops']:.4f} of dense"),
        ("wall time", f"{summary['wall_time_s']:.1f} s over {summary['epochs']} epochs"),
        ("run directory", str(run_dir)),
        ("plots", f"{run_dir / 'plots' / 'training_curves.png'}, layer_density.png"),
    ]
    title = f"{summary['method']} on {summary['dataset']} / {summary['model']} (seed {summary['seed']})"
    return "\n".join([title, *(f"  {name:<17}{value}" for name, value in rows)])


@hydra.main(config_path="../conf", config_name="config", version_base=None)
def hydra_main(cfg: DictConfig) -> float | None:
    """Train one configuration; returns the test accuracy (for Hydra sweepers)."""
    from sparselearning.train.loop import train

    run_dir = Path(HydraConfig.get().runtime.output_dir)
    joined = False
    rank = 0
    try:
        joined = distributed.init_from_environment()
        rank = distributed.rank_and_world()[0]
        summary = train(cfg, run_dir)
    except SparseLearningError as error:
        if os.environ.get("SPARSELEARNING_TRACEBACK"):
            raise
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except OSError as error:  # an unwritable run directory, a full disk
        print(f"error: cannot write the run directory {run_dir}: {error.strerror or error}", file=sys.stderr)
        sys.exit(2)
    finally:
        if joined:
            distributed.shutdown()
    if rank == 0:
        print(format_results(summary, run_dir))
    return float(summary["test_accuracy"])
