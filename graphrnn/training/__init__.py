"""Training: the loop, data and checkpoints, optimizers, losses and the bundled tasks."""
