"""FLOPs: what a model with its current masks costs at inference, and what a method costs to train."""

from sparselearning.counting.inference import InferenceFlops, count_inference_flops
from sparselearning.counting.tracker import FlopsTracker, track_flops
from sparselearning.counting.training import training_flops_fraction

__all__ = ["FlopsTracker", "InferenceFlops", "count_inference_flops", "track_flops", "training_flops_fraction"]
