"""Sparse training inside the trainers people use, where the framework owns `optimizer.step()`.

- `sparselearning.integrations.lightning.SparseTraining`: a PyTorch Lightning callback (extra `lightning`);
- `sparselearning.integrations.hf.SparseTrainingCallback`: a Hugging Face `Trainer` callback (extra `hf`);
- `sparselearning.integrations.session.SparseSession`: what both share, for any other trainer.

Importing this package needs neither framework; each callback module imports its own.
"""
