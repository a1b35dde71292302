"""Training: the loop (TrainState, run_epoch, train) and its data, checkpoints and progress."""
